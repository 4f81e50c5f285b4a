"""The create path through the real SDK and the emulator: a 429 storm on ``batches.create`` (known
not to have made a job: deferred, held back, images reused), a request file PROCESSING for a
while, and a create answered 400 FAILED_PRECONDITION."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from commands.cli import cli
from commands.config import Config
from commands.worker.session import run
from eventlog.events import (
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmitted,
    DeferredSubmissionChecked,
    RecordFailed,
)
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import (
    API_KEY,
    FILE_API,
    check_final_state,
    configured,
    cycles,
    events,
    keys_for,
)
from tests.reads import scalar

KEYS = keys_for(1, 1, 1, 8)


def setup(
    tmp_path: Path, emulator: Emulator, policy: dict[str, Any], **sections: dict[str, Any]
) -> Config:
    return configured(tmp_path, emulator, policy, KEYS, 8, **sections)


def status_json(config: Config) -> dict[str, Any]:
    result = CliRunner().invoke(
        cli, ["--config", str(config.source), "status", "--json", "--no-scan"]
    )
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_a_429_storm_on_create_holds_the_pages_back_then_writes_them_once(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"faults": [{"endpoint": "batches.create", "status": 429, "times": 3}]},
        batching={"batch_size": 8, "quota_backoff_seconds": 0.4, "quota_backoff_max_seconds": 2},
        uploads=FILE_API,  # the images go by the File API, so their reuse can be counted
    )
    cycles(config, 1)  # the first create answers 429: deferred, held back
    held = status_json(config)["quota_hold"]
    assert held is not None and held["halvings"] == 1
    text = CliRunner().invoke(cli, ["--config", str(config.source), "status", "--no-scan"])
    assert "held back by the service's quota since" in text.output
    store = open_store(config.paths.database)
    assert scalar(store, "SELECT count(*) FROM inflight_records") == 0  # the records are free
    assert scalar(store, "SELECT count(*) FROM submission_intents") == 0
    store.close()

    run(config, until_idle=True, max_cycles=200, api_key=API_KEY)

    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    log = events(config)
    deferred = [e for e in log if isinstance(e, BatchSubmissionDeferred)]
    assert len(deferred) == 3 and all(e.reason == "quota" for e in deferred)
    assert [e.halvings for e in deferred] == [1, 2, 3]
    # Each deferred name was looked up once before its pages went out again.
    checked = [e.display_name for e in log if isinstance(e, DeferredSubmissionChecked)]
    assert sorted(checked) == sorted(e.display_name for e in deferred)
    # No failure counted, no dead letter, nothing abandoned.
    assert not [e for e in log if isinstance(e, RecordFailed | BatchSubmissionAbandoned)]
    # Smaller batches after the storm: 8 >> 3 = 1 page, growing back one halving per success.
    sizes = [len(e.record_keys) for e in log if isinstance(e, BatchSubmitted)]
    assert sizes[0] == 1 and sum(sizes) == len(KEYS)
    # Every image was uploaded once: the deferred submissions' uploads were reused.
    uploads = emulator.service.uploaded
    assert all(uploads[k] == 1 for k in KEYS), {k: uploads[k] for k in KEYS}
    assert status_json(config)["quota_hold"] is None
    report = CliRunner().invoke(cli, ["--config", str(config.source), "report"])
    assert report.exit_code == 0, report.output
    assert "Held back by the service's quota since" in report.output


def test_a_request_file_processing_for_a_while_is_waited_for(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"files": [{"match": "gb-*-requests", "processing_seconds": 0.5}]},
        uploads={"request_file_active_poll_seconds": 0.1, "request_file_active_timeout_seconds": 5},
    )
    run(config, until_idle=True, max_cycles=50, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    assert emulator.service.policy.calls("files.get") >= 2
    assert sum(emulator.service.creates.values()) == 1


def test_a_create_answered_failed_precondition_is_made_again_after_the_wait(
    tmp_path: Path, emulator: Emulator
) -> None:
    # The first create is answered 400 FAILED_PRECONDITION, as the service answers one made
    # before its request file is ACTIVE: no job was made, so it is made again after the wait.
    config = setup(
        tmp_path,
        emulator,
        {
            "faults": [
                {
                    "endpoint": "batches.create",
                    "status": 400,
                    "error_status": "FAILED_PRECONDITION",
                    "times": 1,
                    "message": "The input file is not in an ACTIVE state.",
                }
            ]
        },
        uploads={"request_file_active_poll_seconds": 0.05},
    )
    run(config, until_idle=True, max_cycles=50, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    log = events(config)
    assert not [e for e in log if isinstance(e, BatchSubmissionAbandoned | BatchSubmissionDeferred)]
    assert len([e for e in log if isinstance(e, BatchSubmitted)]) == 1
    assert emulator.service.policy.calls("batches.create") == 2
    assert emulator.service.policy.calls("files.get") >= 1


def test_a_request_file_that_failed_defers_its_batch(tmp_path: Path, emulator: Emulator) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"files": [{"match": "gb-*-001-requests", "state": "FAILED"}]},
    )
    run(config, until_idle=True, max_cycles=50, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    assert Counter(type(e).__name__ for e in events(config))["BatchSubmitted"] == 1
