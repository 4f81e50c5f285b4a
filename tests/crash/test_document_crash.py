"""A ``run --loop`` SIGKILLed in the middle of a PDF document (while one of its pages is cut,
some of its pages already on their way) and restarted: no page lost, none billed twice."""

from __future__ import annotations

import signal
from pathlib import Path

from commands.config import load_config
from eventlog.events import BatchSubmissionIntended
from gemini_emulator import Emulator
from projections import open_store
from tests.commands.test_documents import document
from tests.crash.test_kill_and_restart import worker
from tests.pipeline import check_final_state, keys_for, make_dataset, write_config

IMAGES = keys_for(1, 1, 1, 3)
PAGES = 12
DOCUMENT = [f"State0:School0:2021:{i}" for i in range(1, PAGES + 1)]


def test_a_loop_killed_while_cutting_a_document_loses_and_double_bills_no_page(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 0.3, "running_seconds": 0.3}}
    make_dataset(tmp_path / "input", IMAGES)
    (tmp_path / "input" / "State0" / "School0" / "2021.pdf").write_bytes(document(PAGES))
    config = write_config(
        tmp_path, emulator.url, batching={"batch_size": 4, "max_active_batches": 3}
    )
    # Each page is cut twice (its route, then its line): the first cycle fills the 3 batch
    # slots (the images and the document's pages 1 to 9: 18 cuts); the 20th cut is in a later
    # cycle, with the last pages' chunk (10 to 12) being made.
    first = worker(config, "run", "--loop", crash_at="after_document_page_cut", nth=20)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    store = open_store(load_config(config).log_location)
    try:
        reserved = {
            key
            for r in store.read()
            if isinstance(r.event, BatchSubmissionIntended)
            for key in r.event.record_keys
        }
    finally:
        store.close()
    on_their_way = reserved & set(DOCUMENT)
    assert on_their_way and set(DOCUMENT) - on_their_way, reserved  # in the middle of it
    second = worker(config, "run", "--until-idle")
    assert second.returncode == 0, second.stderr[-2000:]
    keys = [*IMAGES, *DOCUMENT]
    assert check_final_state(load_config(config), emulator, keys) == {"written": len(keys)}
