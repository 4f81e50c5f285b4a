"""Issue 11, the polling side, through the real SDK over HTTP against the emulator: every job
state (PARTIALLY_SUCCEEDED collected, a never-seen state bounded by the stuck policy), the jobs'
request counts (``batchStats``) in ``status --json``, and finished jobs deleted from the service."""

from __future__ import annotations

import json
import time
from pathlib import Path

from commands.worker.session import run
from eventlog.events import (
    BatchCleared,
    BatchCompleted,
    BatchJobDeleted,
    BatchProgressObserved,
    BatchStateObserved,
    BatchSucceeded,
)
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import run_cli
from tests.e2e.test_reliability import KEYS, setup
from tests.pipeline import API_KEY, check_final_state, cycles, events


def test_a_partially_succeeded_job_is_collected_and_its_missing_lines_fail(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {
            "jobs": [{"nth": 1, "outcome": "PARTIALLY_SUCCEEDED"}],
            "records": [{"match": KEYS[0], "outcome": "missing_line", "times": 1}],
        },
    )
    cycles(config, 3)
    log = events(config)
    succeeded = [e for e in log if isinstance(e, BatchSucceeded)]
    assert [e.state for e in succeeded][:1] == ["JOB_STATE_PARTIALLY_SUCCEEDED"]
    store = open_store(config.paths.database)
    failures = list(store.query("SELECT record_key, error_type FROM failure_logs"))
    store.close()
    assert failures == [(KEYS[0], "missing_line")]
    # The page without a line is resubmitted and written; nothing is billed twice.
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


def test_a_state_never_seen_before_is_recorded_then_bounded_by_the_stuck_policy(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"jobs": [{"nth": 1, "outcome": "LIMBO"}]},
        batching={"batch_size": 10, "stuck_pending_hours": 0.0003},
    )  # ~1 s
    cycles(config, 2)  # submitted, then polled: the new state is recorded, not yet stuck
    observed = [e.state for e in events(config) if isinstance(e, BatchStateObserved)]
    assert observed == ["JOB_STATE_LIMBO"]
    assert not [e for e in events(config) if isinstance(e, BatchCleared)]
    time.sleep(1.2)
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    cleared = [e for e in events(config) if isinstance(e, BatchCleared)]
    assert len(cleared) == 1
    assert "in a state this tool does not know (JOB_STATE_LIMBO)" in cleared[0].reason
    assert emulator.policy.calls("batches.cancel") == 1
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


def test_batch_stats_are_polled_and_shown_by_status_json(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {"timing": {"pending_seconds": 0, "running_seconds": 3600}})
    cycles(config, 1)  # submitted
    emulator.service.advance(1800)  # half its run time: 3 of 6 requests answered
    cycles(config, 1)  # polled
    progress = [e for e in events(config) if isinstance(e, BatchProgressObserved)]
    assert [(e.requests, e.succeeded, e.failed, e.pending) for e in progress] == [(6, 3, 0, 3)]
    path = tmp_path / "gemini_batches.toml"
    r = run_cli("--config", str(path), "status", "--json")
    [batch] = json.loads(r.out)["active_batches"]
    assert (batch["state"], batch["done"], batch["failed"], batch["pending"]) == (
        "JOB_STATE_RUNNING",
        3,
        0,
        3,
    )
    text = run_cli("--config", str(path), "status").out
    assert "3 done / 0 failed / 3 pending" in text


def test_finished_jobs_and_their_files_are_deleted_after_collection(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {}, batching={"batch_size": 2})
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}  # no file left
    log = events(config)
    completed = {e.batch_id for e in log if isinstance(e, BatchCompleted)}
    deleted = {e.batch_id: e.outcome for e in log if isinstance(e, BatchJobDeleted)}
    assert len(completed) == 3 and deleted == dict.fromkeys(completed, "deleted")
    assert emulator.service.live_jobs() == []  # the service keeps no history of them
    assert emulator.policy.calls("batches.delete") == 3
    store = open_store(config.paths.database)
    left = list(store.query("SELECT batch_id FROM finished_jobs"))
    store.close()
    assert left == []


def test_finished_jobs_stay_when_deleting_is_off(tmp_path: Path, emulator: Emulator) -> None:
    config = setup(
        tmp_path, emulator, {}, batching={"batch_size": 3, "delete_finished_jobs": False}
    )
    assert config.batching.delete_finished_jobs is False
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}  # files still go
    assert emulator.policy.calls("batches.delete") == 0
    assert len(emulator.service.live_jobs()) == 2
    assert not [e for e in events(config) if isinstance(e, BatchJobDeleted)]


def test_a_finished_job_that_cannot_be_deleted_yet_is_tried_again_next_cycle(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"faults": [{"endpoint": "batches.delete", "calls": [1, 2, 3], "status": 503}]},
        network={"api_retry_attempts": 3, "api_retry_backoff_seconds": 0.0},
    )
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    assert [e for e in events(config) if isinstance(e, BatchJobDeleted)] == []
    assert len(emulator.service.live_jobs()) == 1
    cycles(config, 1)  # the next cycle deletes it
    assert [e.outcome for e in events(config) if isinstance(e, BatchJobDeleted)] == ["deleted"]
    assert emulator.service.live_jobs() == []
