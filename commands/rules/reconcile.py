"""Reconciling submissions left open: what the jobs found under a display name mean (pure).

* :func:`reconcile` -- an open submission intent and the jobs the service has under its display
  name: none means it was never created (abandoned, records free); otherwise the job is adopted.
* :func:`judge_unanswered_lookup` -- the same for an intent whose create went unanswered this
  run: absent again and again, the creates back off (the service keeps failing them).
* :func:`judge_deferred_lookup` -- a deferred submission's display name looked up once.
* :class:`LookupWindow` -- whether a display-name lookup may stop reading the service's list.

Never creates anything: an intent is resolved by what the service has, so a batch is submitted
at most once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import msgspec

from commands.rules.admission import MAX_HALVINGS, quota_backoff_seconds
from commands.rules.submit import CreateContext, OpenIntent, deferred, submitted
from eventlog.events import (
    BatchSubmissionAbandoned,
    BatchSucceeded,
    DeferredSubmissionChecked,
    Event,
)
from eventlog.states import SUCCESS_STATES
from eventlog.timestamps import format_ts

if TYPE_CHECKING:
    from commands.gemini.port import RemoteBatch

__all__ = [
    "LOOKUP_MARGIN_HOURS",
    "LookupWindow",
    "Reconciled",
    "judge_deferred_lookup",
    "judge_unanswered_lookup",
    "reconcile",
]

#: How far the service's clock may be behind ours when a lookup decides it is past an intent.
LOOKUP_MARGIN_HOURS = 1.0


class Reconciled(msgspec.Struct, frozen=True):
    """What an open intent resolves to.

    ``not_created``: the service has no job under the name (the intent is abandoned).
    ``deferred``: no job either, but its create went unanswered again and again: the intent is
    closed as deferred (``service_unavailable``) and the creates back off.
    ``adopted``: the job ``batch_id`` is recorded as submitted; ``matches`` > 1 means the name
    was not unique on the service, which should never happen (the worker logs it as an error).
    """

    outcome: Literal["not_created", "adopted", "deferred"]
    events: list[Event]
    batch_id: str = ""
    matches: int = 0


def reconcile(intent: OpenIntent, found: Sequence[RemoteBatch]) -> Reconciled:
    """Resolve ``intent`` from the jobs ``found`` under its display name, in the service's order.

    Never creates anything: an intent is resolved by what the service has, so a batch is
    submitted at most once. Of several matches the last is adopted.
    """
    if not found:
        abandoned = BatchSubmissionAbandoned(
            display_name=intent.display_name,
            error_type="not_created",
            message="the service has no batch under this display name",
        )
        return Reconciled("not_created", [abandoned])
    job = found[-1]
    events: list[Event] = [submitted(intent, job.name, job.state)]
    if job.state in SUCCESS_STATES:  # done already: its result file is recorded now, as a
        # poll records it when it sees the success (it records a change of state only)
        events.append(
            BatchSucceeded(batch_id=job.name, result_file=job.result_file or "", state=job.state)
        )
    return Reconciled("adopted", events, batch_id=job.name, matches=len(found))


def judge_unanswered_lookup(
    intent: OpenIntent, found: Sequence[RemoteBatch], in_a_row: int, context: CreateContext
) -> Reconciled:
    """An intent whose create went unanswered, looked up by its display name. A job found is
    adopted. None found: the first time in a row (``in_a_row`` counts this one) it is abandoned
    as ``not_created``, as any intent found absent; from the second, the service keeps failing
    its creates: the intent is closed as deferred (``service_unavailable``, no failure counted:
    the outage is the service's), and the creates back off as after a 429."""
    verdict = reconcile(intent, found)
    if verdict.outcome == "adopted" or in_a_row <= 1:
        return verdict
    halvings = min(MAX_HALVINGS, context.halvings + 1)
    wait = quota_backoff_seconds(halvings, context.backoff_seconds, context.backoff_max_seconds)
    message = f"its create went unanswered ({in_a_row} in a row) and made no job"
    retry_after = format_ts(context.now + timedelta(seconds=wait))
    closed = deferred(
        context.intent, "service_unavailable", message, halvings, retry_after=retry_after
    )
    return Reconciled("deferred", [closed])


def judge_deferred_lookup(intent: OpenIntent, found: Sequence[RemoteBatch]) -> Reconciled:
    """A deferred submission looked up once: no job under its name is ``not_created``
    (``DeferredSubmissionChecked``: its pages may go out again); a job found after all is
    adopted (``BatchSubmitted``), so even a 429 that did make a job is never billed twice."""
    verdict = reconcile(intent, found)
    if verdict.outcome == "not_created":
        return Reconciled(
            "not_created", [DeferredSubmissionChecked(display_name=intent.display_name)]
        )
    return verdict


class LookupWindow:
    """Whether a lookup of the jobs under an intent's display name has read far enough.

    The intent is appended before its create, so its job cannot have been created (by the
    service's clock) much before ``created_after``. Fed the create times of the listed jobs in
    the service's order, :meth:`past` says True once the list has shown itself newest first (at
    least one step down, none up) and has reached a job created ``LOOKUP_MARGIN_HOURS`` before
    that: every later job is older.
    Any job out of that order, or without a time, means the order is not to be relied on: it
    then never says stop (the whole list is read). No ``created_after``: never stops.
    """

    def __init__(self, created_after: str, margin_hours: float = LOOKUP_MARGIN_HOURS) -> None:
        cutoff = _moment(created_after)
        self._cutoff = cutoff - timedelta(hours=margin_hours) if cutoff is not None else None
        self._previous: datetime | None = None
        self._ordered = cutoff is not None
        self._descended = False

    def past(self, create_time: str) -> bool:
        """Record the next listed job's create time; True if the rest need not be read."""
        if not self._ordered or self._cutoff is None:
            return False
        moment = _moment(create_time)
        previous, self._previous = self._previous, moment
        if moment is None or (previous is not None and moment > previous):
            self._ordered = False
            return False
        if previous is not None and moment < previous:
            self._descended = True
        return self._descended and moment < self._cutoff


def _moment(text: str) -> datetime | None:
    """RFC 3339 text as an aware datetime; None if empty or unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
