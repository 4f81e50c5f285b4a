"""Admission per project under a race: another worker's intent lands between this worker's
admission (the plan of its next chunks from the room left) and its own intent. The room is read
again inside the intent's own write transaction, so the project's limit holds over the whole log:
this worker's intent is not appended, its request file is deleted, and its pages wait for the
next cycle."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.config import load_config
from eventlog.events import BatchSubmissionIntended
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT
from tests.pipeline import keys_for, make_dataset, peak_project_loads, write_config
from tests.postgres import new_schema_url

KEY = "admission-race-key-0123456789"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_intent_of_another_worker_before_this_ones_leaves_this_one_unappended(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    keys = keys_for(states=1, schools=1, years=1, pages=10)
    make_dataset(tmp_path / "input", keys)
    database = (
        {"url": new_schema_url(request.getfixturevalue("postgres_server"))}
        if backend == "postgresql"
        else {}
    )
    with Emulator({}, api_key=KEY) as emu:
        config_path = write_config(
            tmp_path,
            emu.url,
            batching={"batch_size": 10, "max_active_batches": 1},
            database=database,
        )
        done = subprocess.run(
            [
                *(sys.executable, str(ROOT / "tests/crash/worker.py")),
                *("--config", str(config_path), "run", "--once"),
            ],
            env={
                **os.environ,
                "E2E_GEMINI_KEY": KEY,
                "PYTHONPATH": str(ROOT),
                "INTENT_AT": "after_request_file_active",
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "filled up meanwhile" in done.stderr, done.stderr[-3000:]
        left = sorted(f.display_name or f.id for f in emu.service.files.values())
    store = open_store(load_config(config_path).log_location)
    try:
        records = list(store.read())
    finally:
        store.close()
    intents = [r.event for r in records if isinstance(r.event, BatchSubmissionIntended)]
    assert [i.display_name for i in intents] == ["gb-other-worker-001"]
    assert peak_project_loads(records) == {"default": 1}
    assert left == [], left  # this worker's request file was deleted, not left for a sweep
