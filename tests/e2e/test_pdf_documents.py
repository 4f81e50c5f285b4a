"""PDF documents (``<Year>.pdf``) through the real SDK and the emulator: each page goes as the
one-page PDF cut from its document and is written once; a damaged document and a page given
twice are each one line and a recorded rejection while the rest is done; a document changed
after some of its pages were written is said in ``status``, its written pages kept and its new
page sent."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import pytest

from commands.cli.render import status_text
from commands.config import Config, load_config
from commands.views.status import status
from commands.worker import documents
from commands.worker.dataset import file_stamp
from commands.worker.session import run
from eventlog.events import DocumentSeen, InputRejected
from gemini_emulator import Emulator
from projections import open_store
from tests.commands.test_documents import document
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config

IMAGES = keys_for(1, 1, 1, 4)  # State0:School0:2020:1..4, image pages
SCHOOL = ("State0", "School0")
#: The valid pages of the documents: 2021.pdf (5 pages, its page 3 also given as 2021/3.png)
#: and 2022.pdf (one page); 2023.pdf is damaged.
DOCUMENT_PAGES = [f"State0:School0:2021:{i}" for i in (1, 2, 4, 5)] + ["State0:School0:2022:1"]


def dataset(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "input", IMAGES)
    school = tmp_path / "input" / "State0" / "School0"
    (school / "2021.pdf").write_bytes(document(5))
    (school / "2022.pdf").write_bytes(document(1))
    (school / "2023.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ntruncated")
    (school / "2021").mkdir()
    (school / "2021" / "3.png").write_bytes((school / "2020" / "1.png").read_bytes())
    return school


def rejections(config: Config) -> dict[str, str]:
    store = open_store(config.log_location)
    try:
        return {
            Path(r.event.path).name: r.event.reason
            for r in store.read()
            if isinstance(r.event, InputRejected)
        }
    finally:
        store.close()


def cut_sha(school: Path, key: str) -> str:
    year, page = key.split(":")[2:]
    path = str(school / f"{year}.pdf")
    return hashlib.sha256(documents.cut(path, file_stamp(path) or (0, 0), int(page))).hexdigest()


@pytest.mark.parametrize("transport", ["inline", "file_api"])
def test_documents_pages_are_written_once_and_bad_inputs_are_each_one_line(
    tmp_path: Path, emulator: Emulator, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}
    school = dataset(tmp_path)
    config = load_config(
        write_config(tmp_path, emulator.url, uploads={"image_transport": transport})
    )
    with caplog.at_level(logging.WARNING):
        result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok"
    written = [*IMAGES, *DOCUMENT_PAGES]
    assert check_final_state(config, emulator, written) == {"written": len(written)}
    sent = {b.key: (b.transport, b.image_sha256) for b in emulator.service.billed}
    assert set(sent) == set(written)  # nothing else went: not the duplicate, not the damaged
    for key in DOCUMENT_PAGES:  # each page as the one-page PDF cut from its document
        assert sent[key] == (transport, cut_sha(school, key))
    assert set(rejections(config)) == {"3.png", "2023.pdf"}
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    twice = [line for line in lines if "given twice" in line]
    damaged = [line for line in lines if "2023.pdf" in line]
    assert len(twice) == 1 and len(damaged) == 1, lines
    assert str(school / "2021" / "3.png") in twice[0] and str(school / "2021.pdf") in twice[0]
    assert "a damaged PDF" in damaged[0]


def test_a_document_changed_after_pages_were_written_is_said_and_only_its_new_page_goes(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}
    school = dataset(tmp_path)
    config = load_config(write_config(tmp_path, emulator.url))
    assert run(config, until_idle=True, max_cycles=20, api_key=API_KEY).outcome == "ok"
    before = hashlib.sha256((school / "2021.pdf").read_bytes()).hexdigest()
    (school / "2021.pdf").write_bytes(document(6, first=3))  # a new version, one page more
    second = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert second.outcome == "ok" and second.report_path is not None
    written = [*IMAGES, *DOCUMENT_PAGES, "State0:School0:2021:6"]
    assert check_final_state(config, emulator, written) == {"written": len(written)}
    billed = [b.key for b in emulator.service.billed]
    assert billed.count("State0:School0:2021:6") == 1
    assert all(billed.count(key) == 1 for key in DOCUMENT_PAGES)  # kept, not sent again
    store = open_store(config.log_location)
    try:
        seen = [r.event for r in store.read() if isinstance(r.event, DocumentSeen)]
        now = status(store, config, scan=False)
    finally:
        store.close()
    changed = [e for e in seen if e.previous_sha256]
    assert [(e.pages, e.previous_sha256, e.pages_written) for e in changed] == [(6, before, 4)]
    assert [(d.path, d.pages_written) for d in now.changed_documents] == [
        (str(school / "2021.pdf"), 4)
    ]
    said = status_text(now)
    assert "changed       1 PDF document(s) changed after some of their pages" in said
    assert f"  {school / '2021.pdf'}: 4 page(s) written before" in said
    report = second.report_path.read_text()
    assert "## PDF documents changed under written pages" in report
    assert f"`{school / '2021.pdf'}`: 4 page(s) written from the earlier version" in report
