"""Polling an active batch: what a job state (or a failed get) means (pure, no I/O).

:func:`judge_poll` turns the service's answer and the batch's age into a :class:`PollVerdict`:
collect its results, free its records (it ended without results, or was not found), cancel it
(stuck waiting past ``stuck_pending_hours``), or record a new state or new request counts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from commands.errors import GatewayError
from eventlog.events import (
    BatchCleared,
    BatchFailed,
    BatchProgressObserved,
    BatchStateObserved,
    BatchSucceeded,
    Event,
)
from eventlog.states import FAILED_STATES, SUCCESS_STATES, WAITING_STATES, JobState

if TYPE_CHECKING:
    from commands.gemini.port import RemoteBatch

__all__ = ["PollVerdict", "PolledBatch", "judge_poll"]


class PolledBatch(Protocol):
    """What judging a poll needs of an active batch (any struct with these fields)."""

    @property
    def batch_id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def submitted_at(self) -> str: ...

    @property
    def succeeded(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def pending(self) -> int: ...


class PollVerdict(msgspec.Struct, frozen=True):
    """What one poll of an active batch means.

    ``succeeded``: collect its results, SUCCEEDED or PARTIALLY_SUCCEEDED (``events`` holds
    ``BatchSucceeded`` only the first time). ``failed``: it ended ``state`` without results;
    ``not_found``: the service answered 404. ``stuck``: waiting (or in a state this tool does
    not know) past the limit; cancel it (``reason`` says why) and clear it.
    ``changed`` / ``unknown_state``: a new state this tool knows / does not know.
    ``progressed``: the same state, new request counts (``batchStats``).
    ``unchanged``: nothing to record. ``unreachable``: the get failed; poll again next cycle.
    A new state and new counts both go in ``events`` (``BatchStateObserved`` first).
    """

    outcome: Literal[
        "succeeded",
        "failed",
        "not_found",
        "stuck",
        "changed",
        "unknown_state",
        "progressed",
        "unchanged",
        "unreachable",
    ]
    events: list[Event] = []
    state: str = ""
    reason: str = ""

    @property
    def collect(self) -> bool:
        """Whether the batch's results are to be collected now."""
        return self.outcome == "succeeded"

    @property
    def cancel(self) -> bool:
        """Whether the batch is to be cancelled on the service (before its events are appended)."""
        return self.outcome == "stuck"


def judge_poll(
    batch: PolledBatch,
    answer: RemoteBatch | GatewayError,
    age_hours: float,
    stuck_pending_hours: float,
) -> PollVerdict:
    """What ``answer`` (the job the service returned, or the get's error) means for ``batch``.

    ``age_hours`` is the time since it was submitted. A batch waiting (PENDING, QUEUED, PAUSED,
    UPDATING, CANCELLING) or in a state this tool does not know at ``age_hours >=
    stuck_pending_hours`` is stuck; ``stuck_pending_hours = 0`` turns that off. RUNNING is not
    bounded here (the service expires a job at 48 h).
    """
    batch_id = batch.batch_id
    if isinstance(answer, GatewayError):
        if answer.code == 404:
            failed = BatchFailed(
                batch_id=batch_id,
                state=JobState.NOT_FOUND,
                message=str(answer),
                submitted_at=batch.submitted_at,
            )
            return PollVerdict("not_found", [failed], state=JobState.NOT_FOUND)
        return PollVerdict("unreachable")
    state = answer.state
    if state in SUCCESS_STATES:
        events: list[Event] = []
        if batch.state not in SUCCESS_STATES:
            events.append(
                BatchSucceeded(batch_id=batch_id, result_file=answer.result_file or "", state=state)
            )
        return PollVerdict("succeeded", events, state=state)
    if state in FAILED_STATES:
        failed = BatchFailed(batch_id=batch_id, state=state, submitted_at=batch.submitted_at)
        return PollVerdict("failed", [failed], state=state)
    known = state in WAITING_STATES or state == JobState.RUNNING
    if state != JobState.RUNNING and 0 < stuck_pending_hours <= age_hours:
        where = "waiting to start" if known else f"in a state this tool does not know ({state})"
        reason = f"stuck {age_hours:.1f} h {where} (limit {stuck_pending_hours:g} h); cancelled"
        cleared = BatchCleared(batch_id=batch_id, reason=reason)
        return PollVerdict("stuck", [cleared], state=state, reason=reason)
    events = []
    if state != batch.state:
        events.append(BatchStateObserved(batch_id=batch_id, state=state))
    progress = _progress(batch, answer)
    if progress is not None:
        events.append(progress)
    if state != batch.state:
        return PollVerdict("changed" if known else "unknown_state", events, state=state)
    if events:
        return PollVerdict("progressed", events, state=state)
    return PollVerdict("unchanged", state=state)


def _progress(batch: PolledBatch, answer: RemoteBatch) -> BatchProgressObserved | None:
    """The answer's request counts, if it has them and they differ from the batch's known ones."""
    stats = answer.stats
    if stats is None:
        return None
    if (stats.succeeded, stats.failed, stats.pending) == (
        batch.succeeded,
        batch.failed,
        batch.pending,
    ):
        return None
    return BatchProgressObserved(
        batch_id=batch.batch_id,
        requests=stats.requests,
        succeeded=stats.succeeded,
        failed=stats.failed,
        pending=stats.pending,
    )
