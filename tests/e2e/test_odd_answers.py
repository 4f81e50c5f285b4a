"""Issue 12: odd answers of the Batch API on the poll and submit paths, through the real SDK
over HTTP against the emulator (its ``answers`` policy bends the batch resources it sends).
Each is a recorded, explained outcome, never an exception out of the cycle; the other batches
are still polled and the run goes on to the end."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from commands.gemini.port import MAX_SERVICE_COUNT
from commands.worker.session import run
from eventlog.events import (
    BatchCleared,
    BatchCompleted,
    BatchProgressObserved,
    BatchResultsUnavailable,
    BatchStateObserved,
    BatchSubmitted,
    LateResultsAdopted,
)
from gemini_emulator import Emulator
from tests.e2e.test_reliability import KEYS, setup
from tests.pipeline import API_KEY, check_final_state, cycles, events

FIRST = "gb-*-001"  # the first batch's display name


@pytest.mark.parametrize(
    "stats",
    [
        {"requestCount": float("inf"), "pendingRequestCount": float("nan")},
        {"requestCount": "-3", "successfulRequestCount": 1e300, "failedRequestCount": "many"},
        {"requestCount": "9" * 5000, "pendingRequestCount": [1], "failedRequestCount": True},
        "not an object",
    ],
    ids=["inf-nan", "negative-huge-text", "long-list-bool", "not-an-object"],
)
def test_odd_batch_stats_are_clamped_and_the_run_goes_on(
    tmp_path: Path, emulator: Emulator, stats: Any
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {
            "timing": {"pending_seconds": 0, "running_seconds": 0.3},
            "answers": [{"endpoint": "batches.get", "metadata": {"batchStats": stats}}],
        },
        batching={"batch_size": 3},
    )
    run(config, until_idle=True, max_cycles=40, api_key=API_KEY)
    for e in events(config):
        if isinstance(e, BatchProgressObserved):
            for n in (e.requests, e.succeeded, e.failed, e.pending):
                assert isinstance(n, int) and 0 <= n <= MAX_SERVICE_COUNT
    assert len([e for e in events(config) if isinstance(e, BatchCompleted)]) == 2
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


@pytest.mark.parametrize(
    "state", [7, {"an": "object"}, ["BATCH_STATE_SUCCEEDED"]], ids=["number", "object", "list"]
)
def test_a_state_that_is_not_text_is_unreadable_then_bounded_by_the_stuck_policy(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture, state: Any
) -> None:
    config = setup(
        tmp_path, emulator, {}, batching={"batch_size": 3, "stuck_pending_hours": 0.0003}
    )  # ~1 s
    cycles(config, 1)  # two batches submitted
    first, second = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    emulator.policy = {"answers": [{"match": first.display_name, "metadata": {"state": state}}]}
    with caplog.at_level(logging.WARNING):
        cycles(config, 1)  # polled: the first one's state is unreadable
    log = events(config)
    observed = [(e.batch_id, e.state) for e in log if isinstance(e, BatchStateObserved)]
    assert (first.batch_id, "JOB_STATE_UNREADABLE") in observed
    assert (
        f"Batch {first.batch_id} reports a state this tool does not know: JOB_STATE_UNREADABLE"
        in caplog.text
    )
    # The other batch was polled and collected all the same.
    assert [e.batch_id for e in log if isinstance(e, BatchCompleted)] == [second.batch_id]
    time.sleep(1.2)
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    [cleared] = [e for e in events(config) if isinstance(e, BatchCleared)]
    assert cleared.batch_id == first.batch_id and "JOB_STATE_UNREADABLE" in cleared.reason
    # Once the service answers readably again, the job given up on is settled (its late
    # results discarded: every page was written meanwhile) and its files deleted.
    emulator.policy = {}
    run(config, until_idle=True, max_cycles=5, api_key=API_KEY)
    assert [e for e in events(config) if isinstance(e, LateResultsAdopted)]
    # The cleared job had succeeded on the service: it was billed, and its records again.
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}


@pytest.mark.parametrize(
    "output",
    [None, {"somethingElse": 1}, "a string", {"responsesFile": 7}],
    ids=["no-dest", "dest-naming-neither", "dest-string", "file-not-text"],
)
def test_a_succeeded_job_whose_dest_names_no_results_frees_its_records(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture, output: Any
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"answers": [{"match": FIRST, "metadata": {"output": output, "x": None}}]},
        batching={"batch_size": 3},
    )
    with caplog.at_level(logging.WARNING):
        cycles(config, 2)
    log = events(config)
    first, second = [e for e in log if isinstance(e, BatchSubmitted)][:2]
    [gone] = [e for e in log if isinstance(e, BatchResultsUnavailable)]
    assert gone.batch_id == first.batch_id and "names no result file" in gone.message
    assert f"Batch {first.batch_id}: its results cannot be downloaded" in caplog.text
    assert [e.batch_id for e in log if isinstance(e, BatchCompleted)] == [second.batch_id]
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}


@pytest.mark.parametrize(
    "garbage",
    [[], ["a string", 7, None, {"name": 5}, {"metadata": "m"}, {"metadata": {"state": {}}}]],
    ids=["clean-list", "garbage-in-the-list"],
)
def test_a_create_answer_without_a_name_is_looked_up_by_its_display_name(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture, garbage: list[Any]
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {
            "answers": [
                {"endpoint": "batches.create", "drop_name": True, "times": 1},
                {"endpoint": "batches.list", "garbage": garbage},
            ]
        },
    )
    with caplog.at_level(logging.WARNING):
        cycles(config, 1)  # created, but the answer names no job: unanswered
        assert not [e for e in events(config) if isinstance(e, BatchSubmitted)]
        assert "unreadable answer (it names no job)" in caplog.text
        cycles(config, 1)  # looked up by its display name and adopted
    [submitted] = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert submitted.batch_id.startswith("batches/")
    if garbage:
        assert "skipped 6 entr(ies) of the service's batch list" in caplog.text
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert max(emulator.service.creates.values()) == 1
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
