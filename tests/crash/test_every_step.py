"""SIGKILL the worker at every side-effect boundary of a cycle (a real subprocess, a point named
to the test harness), restart it until the work is done, and check that nothing was lost,
nothing is half-written, the projections equal the log, and no record was billed twice.

Each point is run in both image transports: ``auto`` with images of two sizes (so a batch carries
inline images and uploaded ones, and the upload points are still reached) and ``file_api``."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from commands.config import Config, load_config
from commands.integrations.demo import png
from commands.schema import PageExtraction
from commands.worker.dataset import output_path
from eventlog.events import (
    BatchResultsUnavailable,
    BatchSubmitted,
    RecordDeadLettered,
    RecordValidated,
)
from gemini_emulator import Emulator
from projections import open_store, verify
from tests.crash.test_kill_and_restart import worker
from tests.pipeline import keys_for, make_dataset, write_config

KEYS = keys_for(states=1, schools=2, years=1, pages=9)  # 18 pages, batches of 6
#: In ``auto``, every third page is above ``inline_image_max_bytes`` and goes by the File API.
BIG, BIG_IMAGE, INLINE_MAX = KEYS[::3], png(200, 200, 3), 200
TRANSPORTS = ["auto", "file_api"]
CLEAN = {
    "timing": {"pending_seconds": 0.0, "running_seconds": 0.2},
    "jobs": [{"nth": 1, "outcome": "FAILED"}],
}

POINTS = [
    ("after_image_upload", 3),
    ("after_upload_events", 2),
    ("after_request_file_upload", 1),
    ("after_request_file_active", 1),
    ("after_intent", 2),
    ("after_create_before_event", 2),
    ("after_submitted_event", 1),
    ("after_state_observed", 1),
    ("after_failed_event", 1),
    ("after_succeeded_event", 1),
    ("during_result_download", 2),
    ("after_output_write", 1),
    ("after_result_events", 2),
    ("after_completed_event", 1),
    ("after_scan_events", 2),
    ("during_projection_update", 12),
    ("after_file_delete", 1),
    ("after_job_delete", 1),
    ("after_append:BatchJobDeleted", 1),
    ("after_append:RunStarted", 1),
    ("after_append:FileUploaded", 4),
    ("after_append:BatchSubmitted", 2),
    ("after_append:BatchSucceeded", 1),
    ("after_append:RecordValidated", 1),
]


#: A quota storm on create (two 429s) and request files PROCESSING for a moment: the create
#: path's own steps.
QUOTA = {
    **CLEAN,
    "files": [{"match": "gb-*-requests", "processing_seconds": 0.1}],
    "faults": [{"endpoint": "batches.create", "status": 429, "times": 2}],
}
QUOTA_POINTS = [
    ("after_request_file_active", 2),
    ("after_deferred_event", 1),
    ("after_deferred_event", 2),
    ("after_deferred_lookup", 1),
    ("after_append:BatchSubmissionDeferred", 1),
    ("after_append:DeferredSubmissionChecked", 1),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(("point", "nth"), POINTS, ids=[p for p, _ in POINTS])
def test_kill_at_every_step_then_restart_until_done(
    tmp_path: Path, emulator: Emulator, point: str, nth: int, transport: str
) -> None:
    _kill_restart_and_check(tmp_path, emulator, point, nth, CLEAN, transport)


@pytest.mark.parametrize(("point", "nth"), QUOTA_POINTS, ids=[f"{p}-{n}" for p, n in QUOTA_POINTS])
def test_kill_at_every_step_of_a_quota_storm_then_restart_until_done(
    tmp_path: Path, emulator: Emulator, point: str, nth: int
) -> None:
    _kill_restart_and_check(tmp_path, emulator, point, nth, QUOTA, "auto")


#: The second job succeeds naming a result file that is already gone: its batch ends with
#: ``BatchResultsUnavailable`` and its records are submitted again (so they are billed twice).
GONE = {**CLEAN, "jobs": [*CLEAN["jobs"], {"nth": 2, "outcome": "RESULTS_GONE"}]}
GONE_POINTS = [("after_results_unavailable", 1), ("after_append:BatchResultsUnavailable", 1)]


@pytest.mark.parametrize(("point", "nth"), GONE_POINTS, ids=[p for p, _ in GONE_POINTS])
def test_kill_when_results_are_gone_then_restart_until_done(
    tmp_path: Path, emulator: Emulator, point: str, nth: int
) -> None:
    """The billing check of the others cannot hold here (the gone job was billed, its records
    are billed again); what holds: every page written exactly once, nothing written twice, the
    gone job's records billed twice and no other record more than once."""
    config = _kill_and_restart(tmp_path, emulator, point, nth, GONE, "auto")
    store = open_store(config.paths.database)
    assert verify(store) is None
    statuses = Counter(r[0] for r in store.query("SELECT status FROM record_status"))
    log = [r.event for r in store.read()]
    store.close()
    assert statuses == {"written": len(KEYS)}
    written = Counter(e.record_key for e in log if isinstance(e, RecordValidated))
    assert written == Counter(KEYS)  # every page validated exactly once
    assert not [e for e in log if isinstance(e, RecordDeadLettered)]
    gone = [e for e in log if isinstance(e, BatchResultsUnavailable)]
    assert len(gone) == 1, gone
    submitted = {e.batch_id: e.record_keys for e in log if isinstance(e, BatchSubmitted)}
    freed = set(submitted[gone[0].batch_id])
    assert len(freed) == 6
    billed = Counter(b.key for b in emulator.service.ledger())
    assert set(billed) == set(KEYS)
    assert {k for k, n in billed.items() if n == 2} == freed and max(billed.values()) == 2
    assert max(emulator.service.creates.values()) == 1
    assert not emulator.service.files


def _kill_and_restart(
    tmp_path: Path,
    emulator: Emulator,
    point: str,
    nth: int,
    policy: dict[str, Any],
    transport: str,
) -> Config:
    """Run the worker killed at ``point`` (its ``nth`` time), again, then to the end; check
    every output is whole and valid. Returns the config."""
    emulator.policy = policy
    make_dataset(tmp_path / "input", KEYS)
    for key in BIG:
        state, school, year, page = key.split(":")
        (tmp_path / "input" / state / school / year / f"{page}.png").write_bytes(BIG_IMAGE)
    config_path = write_config(
        tmp_path,
        emulator.url,
        batching={
            "batch_size": 6,
            "max_active_batches": 2,
            "quota_backoff_seconds": 0.1,
            "quota_backoff_max_seconds": 0.2,
        },
        uploads={
            "request_file_active_poll_seconds": 0.05,
            "image_transport": transport,
            "inline_image_max_bytes": INLINE_MAX,
        },
    )
    first = worker(config_path, "run", "--until-idle", crash_at=point, nth=nth)
    assert first.returncode == -signal.SIGKILL, (point, first.stderr[-1500:])
    again = worker(config_path, "run", "--until-idle", crash_at=point)  # killed again if reached
    assert again.returncode in (0, -signal.SIGKILL), again.stderr[-1500:]
    final = worker(config_path, "run", "--until-idle")
    assert final.returncode == 0, final.stderr[-1500:]

    config = load_config(config_path)
    for key in KEYS:  # every page written, and every output parses and matches the schema
        PageExtraction.model_validate_json(output_path(config.paths.output_root, key).read_bytes())
    assert not list(config.paths.output_root.rglob(".*.tmp"))  # no half-written file left
    return config


def _kill_restart_and_check(
    tmp_path: Path,
    emulator: Emulator,
    point: str,
    nth: int,
    policy: dict[str, Any],
    transport: str,
) -> None:
    config = _kill_and_restart(tmp_path, emulator, point, nth, policy, transport)
    store = open_store(config.paths.database)
    assert verify(store) is None
    statuses = Counter(r[0] for r in store.query("SELECT status FROM record_status"))
    store.close()
    assert statuses == {"written": len(KEYS)}
    # Each record billed in at most one succeeded job, and every created job created once.
    billed = Counter(b.key for b in emulator.service.ledger())
    assert set(billed) == set(KEYS) and max(billed.values()) == 1, billed
    # Each page answered from its own image, sent the way its size and the transport say.
    sent = {b.key: b.transport for b in emulator.service.ledger()}
    assert sent == {
        k: "file_api" if transport == "file_api" or k in BIG else "inline" for k in KEYS
    }
    assert max(emulator.service.creates.values()) == 1
    assert not emulator.service.files  # nothing left behind on the File API
    # Every collected job deleted from the service (only the FAILED one is left there).
    assert [j.state for j in emulator.service.live_jobs()] == ["FAILED"]
