"""Exactly-once submission, late results, stuck jobs, damaged results, and the file quota."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from commands.actions.clear_batch import clear_batch
from commands.config import Config
from commands.worker.session import run
from eventlog.events import (
    AbandonedBatchClosed,
    BatchCleared,
    BatchFailed,
    BatchStateObserved,
    BatchSubmitted,
    FileDeleted,
    LateResultsAdopted,
    RecordValidated,
    ResultDiscarded,
    ResultLinesIgnored,
)
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import (
    API_KEY,
    check_final_state,
    configured,
    cycles,
    events,
    keys_for,
)
from tests.reads import scalar

KEYS = keys_for(1, 1, 1, 6)


def setup(
    tmp_path: Path, emulator: Emulator, policy: dict[str, Any], **sections: dict[str, Any]
) -> Config:
    return configured(tmp_path, emulator, policy, KEYS, 10, **sections)


def test_an_unanswered_create_stays_reserved_until_the_service_can_say(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {
            "faults": [
                {"endpoint": "batches.create", "calls": [1], "status": 503, "after": True},
                {"endpoint": "batches.list", "calls": list(range(1, 7)), "status": 503},
            ]
        },
        network={"api_retry_attempts": 2},
    )
    cycles(config, 1)  # the create happened, its answer was lost
    for _ in range(3):  # the service cannot say whether it exists: no resubmission
        cycles(config, 1)
        store = open_store(config.paths.database)
        reserved = scalar(store, "SELECT count(*) FROM inflight_records WHERE batch_id IS NULL")
        intents = scalar(store, "SELECT count(*) FROM submission_intents")
        store.close()
        assert (reserved, intents) == (len(KEYS), 1)
        assert sum(emulator.service.creates.values()) == 1
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    adopted = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert len(adopted) == 1 and sum(emulator.service.creates.values()) == 1


def test_files_nobody_will_use_are_deleted(tmp_path: Path, emulator: Emulator) -> None:
    config = setup(
        tmp_path,
        emulator,
        {
            # An upload whose answer is lost leaves a file the log never heard of; a refused create
            # leaves a request file and images no batch will use.
            "faults": [
                {
                    "endpoint": "files.upload_bytes",
                    "match": KEYS[0],
                    "times": 1,
                    "status": 503,
                    "after": True,
                },
                {"endpoint": "batches.create", "calls": [1], "status": 400},
            ]
        },
    )
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    deleted = [e for e in events(config) if isinstance(e, FileDeleted)]
    uploads = emulator.policy.calls("files.upload")  # images and request files, all of them
    assert len(deleted) == uploads + 1  # ... and the result file
    assert not emulator.service.files


def test_late_results_of_a_cleared_batch_are_adopted_and_not_billed_again(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {"timing": {"pending_seconds": 0.5}})
    cycles(config, 1)
    store = open_store(config.paths.database)
    [batch] = [r[0] for r in store.query("SELECT batch_id FROM active_batches")]
    clear_batch(store, batch, reason="looks stuck", actor="operator:test clear-batch")
    store.close()
    time.sleep(0.6)  # the cleared job finishes on the service before the next cycle
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    log = events(config)
    adopted = [e for e in log if isinstance(e, LateResultsAdopted)]
    assert [(e.batch_id, e.adopted, e.ignored) for e in adopted] == [(batch, len(KEYS), 0)]
    assert {e.batch_id for e in log if isinstance(e, RecordValidated)} == {batch}
    assert len([e for e in log if isinstance(e, BatchSubmitted)]) == 1  # nothing resubmitted
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    assert Counter(b.key for b in emulator.service.ledger()) == dict.fromkeys(KEYS, 1)


def _submit_then_clear(
    tmp_path: Path, emulator: Emulator, *, first_takes: float, second_takes: float
) -> tuple[Config, str]:
    """One cycle submits a batch, which an operator then clears (its job still runs on the
    service); the next submission's job takes ``second_takes`` seconds."""
    config = setup(
        tmp_path,
        emulator,
        {
            "timing": {"pending_seconds": first_takes},
            "jobs": [{"nth": 2, "pending_seconds": second_takes}],
        },
    )
    cycles(config, 1)
    store = open_store(config.paths.database)
    [first] = [r[0] for r in store.query("SELECT batch_id FROM active_batches")]
    clear_batch(store, first, reason="give up", actor="operator:test clear-batch")
    store.close()
    return config, first


def test_when_late_results_race_a_resubmission_the_first_result_wins(
    tmp_path: Path, emulator: Emulator
) -> None:
    # The first job finishes after 0.3 s, the resubmitted one only after 1.5 s.
    config, first = _submit_then_clear(tmp_path, emulator, first_takes=0.3, second_takes=1.5)
    cycles(config, 1)  # the pages are resubmitted in a second batch at once
    time.sleep(0.4)
    run(config, until_idle=True, max_cycles=40, api_key=API_KEY)
    log = events(config)
    second = [e.batch_id for e in log if isinstance(e, BatchSubmitted)][-1]
    assert {e.batch_id for e in log if isinstance(e, RecordValidated)} == {first}
    discarded = [e for e in log if isinstance(e, ResultDiscarded)]
    assert {e.batch_id for e in discarded} == {second} and len(discarded) == len(KEYS)
    assert all(f"already written from {first}" == e.reason for e in discarded)
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}
    # Both jobs ran (the second was submitted before the first's results came back): each page
    # was paid twice, and the log accounts for both answers; nothing was submitted a third time.
    assert Counter(b.key for b in emulator.service.ledger()) == dict.fromkeys(KEYS, 2)
    assert sum(emulator.service.creates.values()) == 2


def test_late_results_that_arrive_after_the_resubmission_finished_are_not_adopted(
    tmp_path: Path, emulator: Emulator
) -> None:
    # The reverse race: the cleared job finishes after 1.5 s, its resubmission after 0.3 s.
    config, first = _submit_then_clear(tmp_path, emulator, first_takes=1.5, second_takes=0.3)
    run(config, until_idle=True, max_cycles=40, api_key=API_KEY)  # the resubmission completes
    written = {p: p.read_bytes() for p in config.paths.output_root.rglob("*.json")}
    assert len(written) == len(KEYS)
    time.sleep(1.6)  # now the cleared job succeeds on the service
    run(config, until_idle=True, max_cycles=40, api_key=API_KEY)
    log = events(config)
    second = [e.batch_id for e in log if isinstance(e, BatchSubmitted)][-1]
    assert second != first
    assert {e.batch_id for e in log if isinstance(e, RecordValidated)} == {second}
    adopted = [e for e in log if isinstance(e, LateResultsAdopted)]
    assert [(e.batch_id, e.adopted, e.ignored) for e in adopted] == [(first, 0, len(KEYS))]
    discarded = [e for e in log if isinstance(e, ResultDiscarded)]
    assert {e.batch_id for e in discarded} == {first} and len(discarded) == len(KEYS)
    assert all(e.reason == "late result not adopted: already written" for e in discarded)
    # The outputs are the first results written, untouched by the late ones.
    assert {p: p.read_bytes() for p in config.paths.output_root.rglob("*.json")} == written
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}
    assert Counter(b.key for b in emulator.service.ledger()) == dict.fromkeys(KEYS, 2)


def test_a_batch_seen_failed_then_found_succeeded_is_adopted(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {"jobs": [{"nth": 1, "outcome": "FAILED_THEN_SUCCEEDED"}]})
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    log = events(config)
    assert [type(e) for e in log if isinstance(e, BatchFailed | LateResultsAdopted)] == [
        BatchFailed,
        LateResultsAdopted,
    ]
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    assert Counter(b.key for b in emulator.service.ledger()) == dict.fromkeys(KEYS, 1)


def test_a_job_stuck_pending_is_cancelled_and_its_pages_resubmitted(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"jobs": [{"nth": 1, "outcome": "STUCK"}]},
        batching={"batch_size": 10, "stuck_pending_hours": 0.0003},
    )  # ~1 s
    cycles(config, 1)
    time.sleep(1.2)
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    log = events(config)
    cleared = [e for e in log if isinstance(e, BatchCleared)]
    assert len(cleared) == 1 and cleared[0].reason.startswith("stuck ")
    assert emulator.policy.calls("batches.cancel") == 1
    closed = [e for e in log if isinstance(e, AbandonedBatchClosed)]
    assert [(e.batch_id, e.state) for e in closed] == [(cleared[0].batch_id, "JOB_STATE_CANCELLED")]
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


def test_a_truncated_result_file_loses_nothing(tmp_path: Path, emulator: Emulator) -> None:
    config = setup(tmp_path, emulator, {"jobs": [{"nth": 1, "outcome": "TRUNCATED"}]})
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    store = open_store(config.paths.database)
    errors = [r[0] for r in store.query("SELECT error_type FROM failure_logs")]
    store.close()
    assert errors == ["unparseable_line"]  # the cut line's record, retried afterwards
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}
    # The service billed the line it cut; that record alone was paid for twice.
    billed = Counter(b.key for b in emulator.service.ledger())
    assert sorted(billed.values()) == [1] * (len(KEYS) - 1) + [2]


def test_duplicate_and_stray_keys_are_ignored_and_never_become_paths(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"jobs": [{"nth": 1, "outcome": "DUPLICATES"}, {"nth": 2, "outcome": "EXTRA_KEYS"}]},
        batching={"batch_size": 3},
    )
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    ignored = [e for e in events(config) if isinstance(e, ResultLinesIgnored)]
    assert sorted(len(e.duplicates) for e in ignored) == [0, 3]
    assert sorted(len(e.unknown_keys) for e in ignored) == [0, 3]
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    # The first line per record won (the copies were not JSON), and no stray key left a file.
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert len(files) == len(KEYS) and all(str(p).startswith("output/") for p in files)
    assert not list(tmp_path.parent.rglob("passwd*")) and not (tmp_path / "Nowhere").exists()


def test_an_unknown_job_state_is_recorded_and_polled_again(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {"jobs": [{"nth": 1, "outcome": "ODD_STATE"}]})
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    observed = [e.state for e in events(config) if isinstance(e, BatchStateObserved)]
    assert observed == ["JOB_STATE_MYSTERY"]
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
