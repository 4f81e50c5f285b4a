"""Table tests of the pure batch decisions (rules.reconcile, poll, abandoned, submit): no I/O.

Each row is one branch; each test compares the whole verdict, events included.
"""

from __future__ import annotations

from typing import Literal

import msgspec
import pytest

from commands.errors import GatewayError
from commands.gemini.port import BatchStats, RemoteBatch
from commands.rules.abandoned import (
    LATE_WINDOW_HOURS,
    AbandonedBatch,
    AbandonedVerdict,
    judge_abandoned,
)
from commands.rules.poll import (
    PollVerdict,
    judge_poll,
)
from commands.rules.reconcile import (
    LookupWindow,
    Reconciled,
    reconcile,
)
from commands.rules.submit import (
    CreateOutcome,
    CreateVerdict,
    OpenIntent,
    judge_create_error,
    submit_goes_on,
)
from eventlog.events import (
    AbandonedBatchClosed,
    BatchCleared,
    BatchFailed,
    BatchProgressObserved,
    BatchStateObserved,
    BatchSubmissionAbandoned,
    BatchSubmitted,
    BatchSucceeded,
    Event,
)
from eventlog.states import JobState

BATCH = "batches/b1"
NAME = "gb-run1-001"
SUBMITTED_AT = "2026-01-01T00:00:00.000000Z"

#: Every state the SDK's JobState knows, by its short name, and one it does not.
PENDING, QUEUED, RUNNING = "JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_RUNNING"
SUCCEEDED, FAILED = "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED"
CANCELLED, EXPIRED = "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"
CANCELLING, PAUSED = "JOB_STATE_CANCELLING", "JOB_STATE_PAUSED"
UPDATING, UNSPECIFIED = "JOB_STATE_UPDATING", "JOB_STATE_UNSPECIFIED"
UNKNOWN = "JOB_STATE_SOMETHING_NEW"
PARTIAL = "JOB_STATE_PARTIALLY_SUCCEEDED"
NOT_FOUND = JobState.NOT_FOUND
NOT_RUNNING_STATES = [CANCELLING, PAUSED, UPDATING, UNSPECIFIED, UNKNOWN]
#: Of those, the ones this tool knows as waiting (issue 11: under the stuck-job policy).
KNOWN_WAITING = {CANCELLING, PAUSED, UPDATING}


class Active(msgspec.Struct, frozen=True):
    """An active batch as polling knows it."""

    batch_id: str
    state: str
    submitted_at: str = SUBMITTED_AT
    succeeded: int = 0
    failed: int = 0
    pending: int = 0


def job(
    state: str,
    result_file: str | None = "files/results-1",
    name: str = BATCH,
    stats: BatchStats | None = None,
) -> RemoteBatch:
    return RemoteBatch(
        name=name, display_name=NAME, state=state, result_file=result_file, stats=stats
    )


def error(code: int | None, transient: bool) -> GatewayError:
    """A GatewayError as the SDK adapter's translation builds it."""
    return GatewayError(f"get {BATCH}: {code} boom", code=code, transient=transient)


# --- reconcile -----------------------------------------------------------------------------------

INTENT = OpenIntent(NAME, "models/gemini-x", "files/requests-1", ["a/p1", "a/p2"])


def _adopted(batch_id: str, state: str, matches: int, result_file: str | None = None) -> Reconciled:
    submitted = BatchSubmitted(
        batch_id=batch_id,
        display_name=NAME,
        model="models/gemini-x",
        record_keys=["a/p1", "a/p2"],
        input_file="files/requests-1",
        state=state,
    )
    events: list[Event] = [submitted]
    if result_file is not None:  # done already when adopted: its result file recorded at once
        events.append(BatchSucceeded(batch_id=batch_id, result_file=result_file, state=state))
    return Reconciled("adopted", events, batch_id=batch_id, matches=matches)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(
            [],
            Reconciled(
                "not_created",
                [
                    BatchSubmissionAbandoned(
                        display_name=NAME,
                        error_type="not_created",
                        message="the service has no batch under this display name",
                    )
                ],
            ),
            id="none_found_never_created",
        ),
        pytest.param(
            [job(PENDING, None, "batches/only")],
            _adopted("batches/only", PENDING, 1),
            id="one_found_adopted",
        ),
        pytest.param(
            [job(RUNNING, None, "batches/only")],
            _adopted("batches/only", RUNNING, 1),
            id="one_found_adopted_in_its_state",
        ),
        pytest.param(
            [job(PENDING, None, "batches/first"), job(SUCCEEDED, None, "batches/last")],
            _adopted("batches/last", SUCCEEDED, 2, result_file=""),
            id="several_found_last_adopted",
        ),
        pytest.param(
            [job(SUCCEEDED, "files/results-9", "batches/done")],
            _adopted("batches/done", SUCCEEDED, 1, result_file="files/results-9"),
            id="found_done_adopted_with_its_result_file",
        ),
        pytest.param(
            [job(PARTIAL, "files/results-8", "batches/part")],
            _adopted("batches/part", PARTIAL, 1, result_file="files/results-8"),
            id="found_partly_done_adopted_with_its_result_file",
        ),
    ],
)
def test_reconcile(found: list[RemoteBatch], expected: Reconciled) -> None:
    assert reconcile(INTENT, found) == expected


# --- judge_poll ----------------------------------------------------------------------------------

LIMIT = 36.0


def _observed(state: str, outcome: Literal["changed", "unknown_state"] = "changed") -> PollVerdict:
    return PollVerdict(outcome, [BatchStateObserved(batch_id=BATCH, state=state)], state=state)


def _failed(state: str) -> PollVerdict:
    return PollVerdict(
        "failed",
        [BatchFailed(batch_id=BATCH, state=state, submitted_at=SUBMITTED_AT)],
        state=state,
    )


def _stuck(state: str, reason: str) -> PollVerdict:
    return PollVerdict(
        "stuck", [BatchCleared(batch_id=BATCH, reason=reason)], state=state, reason=reason
    )


def _row(
    case: str, known: str, answer: RemoteBatch | GatewayError, age: float, limit: float, v: object
) -> object:
    return pytest.param(known, answer, age, limit, v, id=case)


POLL_ROWS = [
    # Every service state, seen for the first time on a batch known RUNNING, young.
    _row("pending_new", RUNNING, job(PENDING), 1.0, LIMIT, _observed(PENDING)),
    _row("queued_new", RUNNING, job(QUEUED), 1.0, LIMIT, _observed(QUEUED)),
    _row("running_new", PENDING, job(RUNNING), 1.0, LIMIT, _observed(RUNNING)),
    _row(
        "succeeded_first_time",
        RUNNING,
        job(SUCCEEDED),
        1.0,
        LIMIT,
        PollVerdict(
            "succeeded",
            [BatchSucceeded(batch_id=BATCH, result_file="files/results-1")],
            state=SUCCEEDED,
        ),
    ),
    _row(
        "succeeded_first_time_inline",
        RUNNING,
        job(SUCCEEDED, result_file=None),
        1.0,
        LIMIT,
        PollVerdict("succeeded", [BatchSucceeded(batch_id=BATCH, result_file="")], state=SUCCEEDED),
    ),
    _row(
        "succeeded_again",
        SUCCEEDED,
        job(SUCCEEDED),
        1.0,
        LIMIT,
        PollVerdict("succeeded", [], state=SUCCEEDED),
    ),
    _row("failed", RUNNING, job(FAILED), 1.0, LIMIT, _failed(FAILED)),
    _row("cancelled", RUNNING, job(CANCELLED), 1.0, LIMIT, _failed(CANCELLED)),
    _row("expired", RUNNING, job(EXPIRED), 1.0, LIMIT, _failed(EXPIRED)),
    *(
        _row(
            f"{s.removeprefix('JOB_STATE_').lower()}_new_unknown_state",
            RUNNING,
            job(s),
            1.0,
            LIMIT,
            v,
        )
        for s, v in (
            (s, _observed(s, "changed" if s in KNOWN_WAITING else "unknown_state"))
            for s in NOT_RUNNING_STATES
        )
    ),
    # The same state again: nothing to record.
    _row(
        "pending_unchanged",
        PENDING,
        job(PENDING),
        1.0,
        LIMIT,
        PollVerdict("unchanged", state=PENDING),
    ),
    _row(
        "queued_unchanged", QUEUED, job(QUEUED), 1.0, LIMIT, PollVerdict("unchanged", state=QUEUED)
    ),
    _row(
        "running_unchanged",
        RUNNING,
        job(RUNNING),
        1.0,
        LIMIT,
        PollVerdict("unchanged", state=RUNNING),
    ),
    *(
        _row(
            f"{s.removeprefix('JOB_STATE_').lower()}_unchanged",
            s,
            job(s),
            1.0,
            LIMIT,
            PollVerdict("unchanged", state=s),
        )
        for s in NOT_RUNNING_STATES
    ),
    # The stuck window, at its edges; only states waiting to start can be stuck.
    _row(
        "pending_just_under_limit",
        PENDING,
        job(PENDING),
        35.99,
        LIMIT,
        PollVerdict("unchanged", state=PENDING),
    ),
    _row(
        "pending_at_limit_stuck",
        PENDING,
        job(PENDING),
        36.0,
        LIMIT,
        _stuck(PENDING, "stuck 36.0 h waiting to start (limit 36 h); cancelled"),
    ),
    _row(
        "pending_just_over_limit_stuck",
        PENDING,
        job(PENDING),
        36.06,
        LIMIT,
        _stuck(PENDING, "stuck 36.1 h waiting to start (limit 36 h); cancelled"),
    ),
    _row(
        "queued_over_limit_stuck",
        QUEUED,
        job(QUEUED),
        40.0,
        LIMIT,
        _stuck(QUEUED, "stuck 40.0 h waiting to start (limit 36 h); cancelled"),
    ),
    _row(
        "queued_new_over_limit_stuck",
        PENDING,
        job(QUEUED),
        47.5,
        1.5,
        _stuck(QUEUED, "stuck 47.5 h waiting to start (limit 1.5 h); cancelled"),
    ),
    _row("queued_just_under_limit_new", PENDING, job(QUEUED), 35.99, LIMIT, _observed(QUEUED)),
    _row(
        "running_over_limit_not_stuck",
        RUNNING,
        job(RUNNING),
        40.0,
        LIMIT,
        PollVerdict("unchanged", state=RUNNING),
    ),
    _row(
        "running_new_over_limit_not_stuck", PENDING, job(RUNNING), 40.0, LIMIT, _observed(RUNNING)
    ),
    _row(
        "paused_over_limit_stuck",
        RUNNING,
        job(PAUSED),
        40.0,
        LIMIT,
        _stuck(PAUSED, "stuck 40.0 h waiting to start (limit 36 h); cancelled"),
    ),
    _row(
        "cancelling_at_limit_stuck",
        CANCELLING,
        job(CANCELLING),
        36.0,
        LIMIT,
        _stuck(CANCELLING, "stuck 36.0 h waiting to start (limit 36 h); cancelled"),
    ),
    _row(
        "updating_just_under_limit_unchanged",
        UPDATING,
        job(UPDATING),
        35.99,
        LIMIT,
        PollVerdict("unchanged", state=UPDATING),
    ),
    # A state this tool does not know: recorded, then bounded by the same policy.
    _row(
        "unknown_just_under_limit_unchanged",
        UNKNOWN,
        job(UNKNOWN),
        35.99,
        LIMIT,
        PollVerdict("unchanged", state=UNKNOWN),
    ),
    _row(
        "unknown_at_limit_stuck",
        UNKNOWN,
        job(UNKNOWN),
        36.0,
        LIMIT,
        _stuck(
            UNKNOWN,
            f"stuck 36.0 h in a state this tool does not know ({UNKNOWN}) (limit 36 h); cancelled",
        ),
    ),
    _row(
        "unknown_new_over_limit_stuck",
        RUNNING,
        job(UNSPECIFIED),
        40.0,
        LIMIT,
        _stuck(
            UNSPECIFIED,
            f"stuck 40.0 h in a state this tool does not know ({UNSPECIFIED}) (limit 36 h); "
            "cancelled",
        ),
    ),
    _row(
        "limit_off_unknown_old",
        UNKNOWN,
        job(UNKNOWN),
        1000.0,
        0.0,
        PollVerdict("unchanged", state=UNKNOWN),
    ),
    # PARTIALLY_SUCCEEDED is collected like SUCCEEDED.
    _row(
        "partially_succeeded_first_time",
        RUNNING,
        job(PARTIAL),
        1.0,
        LIMIT,
        PollVerdict(
            "succeeded",
            [BatchSucceeded(batch_id=BATCH, result_file="files/results-1", state=PARTIAL)],
            state=PARTIAL,
        ),
    ),
    _row(
        "partially_succeeded_again",
        PARTIAL,
        job(PARTIAL),
        1.0,
        LIMIT,
        PollVerdict("succeeded", [], state=PARTIAL),
    ),
    _row(
        "partially_succeeded_over_limit",
        PENDING,
        job(PARTIAL),
        40.0,
        LIMIT,
        PollVerdict(
            "succeeded",
            [BatchSucceeded(batch_id=BATCH, result_file="files/results-1", state=PARTIAL)],
            state=PARTIAL,
        ),
    ),
    _row("failed_over_limit", PENDING, job(FAILED), 40.0, LIMIT, _failed(FAILED)),
    _row(
        "succeeded_over_limit",
        PENDING,
        job(SUCCEEDED),
        40.0,
        LIMIT,
        PollVerdict(
            "succeeded",
            [BatchSucceeded(batch_id=BATCH, result_file="files/results-1")],
            state=SUCCEEDED,
        ),
    ),
    # stuck_pending_hours = 0 turns the stuck check off.
    _row(
        "limit_off_pending_old",
        PENDING,
        job(PENDING),
        1000.0,
        0.0,
        PollVerdict("unchanged", state=PENDING),
    ),
    _row("limit_off_queued_new_old", PENDING, job(QUEUED), 1000.0, 0.0, _observed(QUEUED)),
    _row(
        "limit_off_pending_at_zero_age",
        PENDING,
        job(PENDING),
        0.0,
        0.0,
        PollVerdict("unchanged", state=PENDING),
    ),
    # A failed get.
    _row(
        "get_404_not_found",
        RUNNING,
        error(404, False),
        1.0,
        LIMIT,
        PollVerdict(
            "not_found",
            [
                BatchFailed(
                    batch_id=BATCH,
                    state=NOT_FOUND,
                    message=f"get {BATCH}: 404 boom",
                    submitted_at=SUBMITTED_AT,
                )
            ],
            state=NOT_FOUND,
        ),
    ),
    _row("get_500_unreachable", RUNNING, error(500, True), 1.0, LIMIT, PollVerdict("unreachable")),
    _row("get_429_unreachable", RUNNING, error(429, True), 1.0, LIMIT, PollVerdict("unreachable")),
    _row(
        "get_timeout_unreachable",
        PENDING,
        error(None, True),
        40.0,
        LIMIT,
        PollVerdict("unreachable"),
    ),
    _row("get_403_unreachable", RUNNING, error(403, False), 1.0, LIMIT, PollVerdict("unreachable")),
]


STATS = BatchStats(requests=10, succeeded=4, failed=1, pending=5)
PROGRESS = BatchProgressObserved(batch_id=BATCH, requests=10, succeeded=4, failed=1, pending=5)


@pytest.mark.parametrize(
    ("known", "answer", "expected"),
    [
        pytest.param(
            Active(BATCH, RUNNING),
            job(RUNNING, stats=STATS),
            PollVerdict("progressed", [PROGRESS], state=RUNNING),
            id="new_counts_progressed",
        ),
        pytest.param(
            Active(BATCH, RUNNING, succeeded=4, failed=1, pending=5),
            job(RUNNING, stats=STATS),
            PollVerdict("unchanged", state=RUNNING),
            id="same_counts_unchanged",
        ),
        pytest.param(
            Active(BATCH, RUNNING, succeeded=4, failed=1, pending=5),
            job(RUNNING),
            PollVerdict("unchanged", state=RUNNING),
            id="no_counts_unchanged",
        ),
        pytest.param(
            Active(BATCH, PENDING),
            job(RUNNING, stats=STATS),
            PollVerdict(
                "changed",
                [BatchStateObserved(batch_id=BATCH, state=RUNNING), PROGRESS],
                state=RUNNING,
            ),
            id="new_state_and_counts_changed",
        ),
        pytest.param(
            Active(BATCH, UNKNOWN),
            job(UNKNOWN, stats=STATS),
            PollVerdict("progressed", [PROGRESS], state=UNKNOWN),
            id="unknown_state_new_counts_progressed",
        ),
        pytest.param(
            Active(BATCH, RUNNING),
            job(SUCCEEDED, stats=STATS),
            PollVerdict(
                "succeeded",
                [BatchSucceeded(batch_id=BATCH, result_file="files/results-1")],
                state=SUCCEEDED,
            ),
            id="succeeded_counts_not_recorded",
        ),
    ],
)
def test_judge_poll_counts(known: Active, answer: RemoteBatch, expected: PollVerdict) -> None:
    """``batchStats`` changes are recorded while the batch waits or runs."""
    assert judge_poll(known, answer, 1.0, LIMIT) == expected


@pytest.mark.parametrize(
    ("created_after", "times", "stops_at"),
    [
        pytest.param("", ["2026-01-01T00:00:00Z"] * 3, None, id="no_time_never_stops"),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-02T05:00:00Z", "2026-01-02T00:30:00Z", "2026-01-01T23:30:00Z"],
            None,
            id="within_margin_reads_on",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-02T05:00:00Z", "2026-01-01T23:00:00Z", "2026-01-01T22:59:59Z"],
            2,
            id="past_margin_stops",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-01T20:00:00Z", "2026-01-01T10:00:00Z", "2026-01-02T05:00:00Z"],
            1,
            id="older_first_stops_once_the_order_shows",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-01T23:30:00Z", "2026-01-02T05:00:00Z", "2026-01-01T10:00:00Z"],
            None,
            id="oldest_first_never_stops",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-02T05:00:00Z", "", "2026-01-01T10:00:00Z"],
            None,
            id="a_job_without_time_never_stops",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-02T05:00:00+00:00", "2026-01-01T10:00:00.123+00:00"],
            1,
            id="offsets_and_fractions",
        ),
        pytest.param("not a time", ["2026-01-01T10:00:00Z"], None, id="unreadable_never_stops"),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-01T10:00:00Z", "2026-01-01T11:00:00Z", "2026-01-02T05:00:00Z"],
            None,
            id="oldest_first_old_history_never_stops",
        ),
        pytest.param(
            "2026-01-02T00:00:00.000000Z",
            ["2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z"],
            None,
            id="equal_times_show_no_order",
        ),
    ],
)
def test_lookup_window(created_after: str, times: list[str], stops_at: int | None) -> None:
    window = LookupWindow(created_after)
    said = [window.past(t) for t in times]
    assert (said.index(True) if True in said else None) == stops_at


@pytest.mark.parametrize(("known", "answer", "age", "limit", "expected"), POLL_ROWS)
def test_judge_poll(
    known: str,
    answer: RemoteBatch | GatewayError,
    age: float,
    limit: float,
    expected: PollVerdict,
) -> None:
    assert judge_poll(Active(BATCH, known), answer, age, limit) == expected


@pytest.mark.parametrize(
    ("verdict", "collect", "cancel"),
    [
        pytest.param(PollVerdict("succeeded"), True, False, id="succeeded_collects"),
        pytest.param(PollVerdict("stuck"), False, True, id="stuck_cancels"),
        *(
            pytest.param(PollVerdict(o), False, False, id=f"{o}_neither")
            for o in ("failed", "not_found", "changed", "unknown_state", "unchanged", "unreachable")
        ),
    ],
)
def test_poll_verdict_actions(verdict: PollVerdict, collect: bool, cancel: bool) -> None:
    assert (verdict.collect, verdict.cancel) == (collect, cancel)


# --- judge_abandoned -----------------------------------------------------------------------------

GRACE = 1.0
EXPIRED_CLOSE = AbandonedVerdict(
    "expired",
    [
        AbandonedBatchClosed(
            batch_id=BATCH, state="JOB_STATE_EXPIRED", reason="past the service's 48 h window"
        )
    ],
)


def _ended(state: str) -> AbandonedVerdict:
    return AbandonedVerdict(
        "ended",
        [AbandonedBatchClosed(batch_id=BATCH, state=state, reason="ended without results")],
    )


def _arow(
    case: str,
    terminal: bool,
    answer: RemoteBatch | GatewayError | None,
    age: float,
    abandoned: float,
    v: AbandonedVerdict,
) -> object:
    return pytest.param(terminal, answer, age, abandoned, v, id=case)


ABANDONED_ROWS = [
    # The late window, before the service is asked and whatever it would answer.
    _arow("window_just_under_look", True, None, 48.99, 0.5, AbandonedVerdict("look")),
    _arow("window_equal_look", True, None, LATE_WINDOW_HOURS, 0.5, AbandonedVerdict("look")),
    _arow("window_just_over_expired", True, None, 49.01, 0.5, EXPIRED_CLOSE),
    _arow("window_over_cleared_expired", False, None, 60.0, 20.0, EXPIRED_CLOSE),
    _arow("window_over_despite_success", False, job(SUCCEEDED), 49.01, 0.5, EXPIRED_CLOSE),
    _arow("window_over_despite_404", True, error(404, False), 49.01, 0.5, EXPIRED_CLOSE),
    _arow(
        "window_equal_succeeded_adopt", True, job(SUCCEEDED), 49.0, 0.5, AbandonedVerdict("adopt")
    ),
    # A failed get.
    _arow(
        "get_404_not_found",
        True,
        error(404, False),
        10.0,
        0.5,
        AbandonedVerdict(
            "not_found",
            [
                AbandonedBatchClosed(
                    batch_id=BATCH, state=NOT_FOUND, reason=f"get {BATCH}: 404 boom"
                )
            ],
        ),
    ),
    _arow(
        "get_500_unreachable", True, error(500, True), 10.0, 0.5, AbandonedVerdict("unreachable")
    ),
    _arow(
        "get_timeout_unreachable",
        False,
        error(None, True),
        10.0,
        5.0,
        AbandonedVerdict("unreachable"),
    ),
    _arow(
        "get_403_unreachable", False, error(403, False), 10.0, 5.0, AbandonedVerdict("unreachable")
    ),
    # Late results.
    _arow("succeeded_terminal_adopt", True, job(SUCCEEDED), 10.0, 0.5, AbandonedVerdict("adopt")),
    _arow("partial_terminal_adopt", True, job(PARTIAL), 10.0, 0.5, AbandonedVerdict("adopt")),
    _arow("partial_cleared_adopt", False, job(PARTIAL), 10.0, 5.0, AbandonedVerdict("adopt")),
    _arow("succeeded_cleared_adopt", False, job(SUCCEEDED), 10.0, 5.0, AbandonedVerdict("adopt")),
    _arow(
        "succeeded_inline_adopt", False, job(SUCCEEDED, None), 10.0, 5.0, AbandonedVerdict("adopt")
    ),
    # Ended without results: a cleared batch is closed at once ...
    _arow("failed_cleared_closed", False, job(FAILED), 10.0, 0.0, _ended(FAILED)),
    _arow("cancelled_cleared_closed", False, job(CANCELLED), 10.0, 0.0, _ended(CANCELLED)),
    _arow("expired_cleared_closed", False, job(EXPIRED), 10.0, 0.0, _ended(EXPIRED)),
    # ... one given up on because it ended, only past the grace window.
    _arow(
        "failed_terminal_grace_just_under", True, job(FAILED), 10.0, 0.99, AbandonedVerdict("watch")
    ),
    _arow("failed_terminal_grace_equal", True, job(FAILED), 10.0, GRACE, AbandonedVerdict("watch")),
    _arow("failed_terminal_grace_just_over", True, job(FAILED), 10.0, 1.01, _ended(FAILED)),
    _arow("cancelled_terminal_grace_over", True, job(CANCELLED), 10.0, 2.0, _ended(CANCELLED)),
    _arow("expired_terminal_grace_under", True, job(EXPIRED), 10.0, 0.5, AbandonedVerdict("watch")),
    _arow("expired_terminal_grace_over", True, job(EXPIRED), 10.0, 2.0, _ended(EXPIRED)),
    # Any other state: keep watching (a cleared batch may still run and succeed).
    *(
        _arow(
            f"{s.removeprefix('JOB_STATE_').lower()}_{t}_watch",
            t == "terminal",
            job(s),
            10.0,
            5.0,
            AbandonedVerdict("watch"),
        )
        for s in (PENDING, QUEUED, RUNNING, *NOT_RUNNING_STATES)
        for t in ("terminal", "cleared")
    ),
]


@pytest.mark.parametrize(("terminal", "answer", "age", "abandoned", "expected"), ABANDONED_ROWS)
def test_judge_abandoned(
    terminal: bool,
    answer: RemoteBatch | GatewayError | None,
    age: float,
    abandoned: float,
    expected: AbandonedVerdict,
) -> None:
    batch = AbandonedBatch(BATCH, terminal)
    assert judge_abandoned(batch, answer, age, abandoned, GRACE) == expected


def test_judge_abandoned_grace_zero_closes_once_any_time_passed() -> None:
    batch = AbandonedBatch(BATCH, terminal=True)
    assert judge_abandoned(batch, job(FAILED), 10.0, 0.0, 0.0) == AbandonedVerdict("watch")
    assert judge_abandoned(batch, job(FAILED), 10.0, 0.01, 0.0) == _ended(FAILED)


# --- judge_create_error, submit_goes_on ----------------------------------------------------------


def _create_error(code: int | None, transient: bool, detail: str) -> GatewayError:
    return GatewayError(f"create {NAME}: {detail}", code=code, transient=transient)


@pytest.mark.parametrize(
    "err",
    [
        pytest.param(_create_error(500, True, "500 INTERNAL"), id="http_500"),
        pytest.param(_create_error(502, True, "502 BAD_GATEWAY"), id="http_502"),
        pytest.param(_create_error(503, True, "503 UNAVAILABLE"), id="http_503"),
        pytest.param(_create_error(504, True, "504 DEADLINE_EXCEEDED"), id="http_504"),
        pytest.param(_create_error(429, True, "429 RESOURCE_EXHAUSTED"), id="http_429"),
        pytest.param(_create_error(408, True, "408 REQUEST_TIMEOUT"), id="http_408"),
        pytest.param(_create_error(None, True, "timed out (ReadTimeout)"), id="timeout"),
        pytest.param(_create_error(None, True, "connection error (ConnectError)"), id="connection"),
    ],
)
def test_a_transient_create_error_is_unanswered(err: GatewayError) -> None:
    assert judge_create_error(NAME, err) == CreateVerdict("unanswered", [])


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 422], ids=lambda c: f"http_{c}")
def test_a_4xx_create_error_is_refused(code: int) -> None:
    err = _create_error(code, False, f"{code} REFUSED: no")
    assert judge_create_error(NAME, err) == CreateVerdict(
        "refused",
        [
            BatchSubmissionAbandoned(
                display_name=NAME,
                error_type=f"http_{code}",
                message=f"create {NAME}: {code} REFUSED: no",
            )
        ],
    )


@pytest.mark.parametrize(
    ("outcome", "goes_on"),
    [
        pytest.param("submitted", True, id="submitted_next_chunk"),
        pytest.param("deferred", True, id="request_file_deferred_next_chunk"),
        pytest.param("unanswered", False, id="unanswered_stops"),
        pytest.param("refused", False, id="refused_stops"),
    ],
)
def test_submit_goes_on(outcome: CreateOutcome, goes_on: bool) -> None:
    assert submit_goes_on(outcome) is goes_on
