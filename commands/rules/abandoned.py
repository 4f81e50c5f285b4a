"""Batches given up on (failed, cancelled, expired, cleared or stuck) whose late results are still
watched for: closed, adopted late, or watched again (pure, no I/O)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from commands.errors import GatewayError
from eventlog.events import AbandonedBatchClosed, Event
from eventlog.states import FAILED_STATES, SUCCESS_STATES, JobState

if TYPE_CHECKING:
    from commands.gemini.port import RemoteBatch

__all__ = ["LATE_WINDOW_HOURS", "AbandonedBatch", "AbandonedVerdict", "judge_abandoned"]

#: The service expires a batch 48 h after it was created; past this, nothing can arrive.
LATE_WINDOW_HOURS = 49.0


class AbandonedBatch(msgspec.Struct, frozen=True):
    """A batch given up on whose late results are still watched for.

    ``terminal``: it was given up on because the service reported it ended (FAILED, CANCELLED,
    EXPIRED), as opposed to cleared by an operator or as stuck.
    """

    batch_id: str
    terminal: bool


class AbandonedVerdict(msgspec.Struct, frozen=True):
    """What to do with a batch given up on, this cycle.

    ``expired``: past the late window, closed without asking the service. ``look``: ask the
    service (judge again with its answer). ``not_found``: closed, the service answered 404.
    ``ended``: closed, it ended ``state`` without results. ``adopt``: it succeeded (or partially
    succeeded), adopt its late results. ``watch``: nothing yet, check again next cycle.
    ``unreachable``: the get failed; check again next cycle.
    """

    outcome: Literal["expired", "look", "not_found", "ended", "adopt", "watch", "unreachable"]
    events: list[Event] = []


_PAST_WINDOW = "past the service's 48 h window"
_NO_RESULTS = "ended without results"


def judge_abandoned(
    batch: AbandonedBatch,
    answer: RemoteBatch | GatewayError | None,
    age_hours: float,
    abandoned_hours: float,
    grace_hours: float,
) -> AbandonedVerdict:
    """Whether ``batch`` is closed, adopted late or still watched.

    ``answer`` is the service's job or the get's error, ``None`` before the service was asked
    (the verdict is then ``expired`` or ``look``). ``age_hours`` counts from its submission,
    ``abandoned_hours`` from when it was given up on. Past ``LATE_WINDOW_HOURS`` it is closed
    whatever the answer. A batch seen ended is closed at once unless it was given up on
    because it ended: then only once ``abandoned_hours > grace_hours`` (results seen late).
    """
    batch_id = batch.batch_id
    if age_hours > LATE_WINDOW_HOURS:
        return AbandonedVerdict("expired", [_close(batch_id, JobState.EXPIRED, _PAST_WINDOW)])
    if answer is None:
        return AbandonedVerdict("look")
    if isinstance(answer, GatewayError):
        if answer.code == 404:
            return AbandonedVerdict(
                "not_found", [_close(batch_id, JobState.NOT_FOUND, str(answer))]
            )
        return AbandonedVerdict("unreachable")
    if answer.state in SUCCESS_STATES:
        return AbandonedVerdict("adopt")
    if answer.state in FAILED_STATES and (not batch.terminal or abandoned_hours > grace_hours):
        return AbandonedVerdict("ended", [_close(batch_id, answer.state, _NO_RESULTS)])
    return AbandonedVerdict("watch")


def _close(batch_id: str, state: str, reason: str) -> AbandonedBatchClosed:
    return AbandonedBatchClosed(batch_id=batch_id, state=state, reason=reason)
