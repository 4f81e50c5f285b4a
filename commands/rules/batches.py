"""Judging batches: pure functions from what the log knows and what the service answered to the
events to append and a verdict the worker acts on. No I/O here: no clock (ages come in as hours),
no gateway (answers and errors come in as values), no store (the caller appends the events).

* :func:`reconcile` -- an open submission intent and the jobs the service has under its display
  name: none means it was never created (abandoned, records free); otherwise the job is adopted.
* :class:`LookupWindow` -- whether a display-name lookup may stop reading the service's list.
* :func:`judge_poll` -- what a polled job state (or a failed get) means for an active batch.
* :func:`judge_abandoned` -- whether a batch given up on is closed, adopted late, or watched.
* :func:`judge_create_error` -- what a failed ``batches.create`` means (a refusal counts a
  failure of each page), and :func:`submit_goes_on` whether the submit loop tries the cycle's
  next chunk; :func:`pages_alone`, :func:`refused_last` and :func:`next_chunk` put a page
  refused again in a batch of its own; :func:`judge_unanswered_lookup` backs off creates the
  service keeps leaving unanswered.
* :func:`admission_halvings`, :func:`admitted_batch_size`, :func:`quota_backoff_seconds`,
  :func:`held_back`, :func:`hold_persists` -- the admission's back-off after 429
  RESOURCE_EXHAUSTED answers (and creates left unanswered again and again).
* :func:`judge_deferred_lookup` -- a deferred submission's display name looked up once.
* :func:`image_reusable_since` -- how young an uploaded image must be to be referenced again.

Every verdict carries an ``outcome`` naming the branch taken (the worker logs by it and reaches
its crash points by it) and the complete list of ``events`` to append, possibly empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from commands.errors import GatewayError
from commands.rules.retry import backoff_delay
from eventlog.events import (
    DEFAULT_PROJECT,
    AbandonedBatchClosed,
    BatchCleared,
    BatchFailed,
    BatchProgressObserved,
    BatchStateObserved,
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmitted,
    BatchSucceeded,
    DeferredSubmissionChecked,
    Event,
    RecordDeadLettered,
    RecordFailed,
)
from eventlog.states import FAILED_STATES, SUCCESS_STATES, WAITING_STATES, JobState
from eventlog.timestamps import format_ts, parse_ts

if TYPE_CHECKING:
    from commands.gemini.port import RemoteBatch

__all__ = [
    "ALONE_AFTER_FAILURES",
    "CREATE_REFUSED",
    "IMAGE_REUSE_HOURS",
    "LATE_WINDOW_HOURS",
    "LOOKUP_MARGIN_HOURS",
    "MAX_HALVINGS",
    "AbandonedBatch",
    "AbandonedVerdict",
    "CreateContext",
    "CreateOutcome",
    "CreateVerdict",
    "LookupWindow",
    "OpenIntent",
    "PollVerdict",
    "PolledBatch",
    "Reconciled",
    "admission_halvings",
    "admitted_batch_size",
    "has_room",
    "held_back",
    "hold_persists",
    "image_reusable_since",
    "judge_abandoned",
    "judge_create_error",
    "judge_deferred_lookup",
    "judge_poll",
    "judge_unanswered_lookup",
    "next_chunk",
    "pages_alone",
    "quota_backoff_seconds",
    "reconcile",
    "refused_last",
    "submit_goes_on",
]

#: The service expires a batch 48 h after it was created; past this, nothing can arrive.
LATE_WINDOW_HOURS = 49.0
#: How far the service's clock may be behind ours when a lookup decides it is past an intent.
LOOKUP_MARGIN_HOURS = 1.0


# --- 0. open submission intents ------------------------------------------------------------------


class OpenIntent(msgspec.Struct, frozen=True):
    """A submission intent with no outcome yet, and the records it still holds reserved."""

    display_name: str
    model: str
    input_file: str
    record_keys: list[str]
    transport: str = "file_api"
    #: The intent's token estimate, carried onto the adopted batch.
    estimated_tokens: int = 0
    #: The project (API key) it was created with, carried onto the adopted batch.
    project: str = DEFAULT_PROJECT


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
    submitted = BatchSubmitted(
        batch_id=job.name,
        display_name=intent.display_name,
        model=intent.model,
        record_keys=intent.record_keys,
        input_file=intent.input_file,
        state=job.state,
        transport=intent.transport,
        estimated_tokens=intent.estimated_tokens,
        project=intent.project,
    )
    return Reconciled("adopted", [submitted], batch_id=job.name, matches=len(found))


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


# --- 1. polling active batches -------------------------------------------------------------------


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


# --- 2. batches given up on ----------------------------------------------------------------------


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


# --- 4. creating a batch -------------------------------------------------------------------------

#: How one create attempt of the submit loop ended: ``submitted``; ``deferred`` (the request
#: file could not be uploaded or never became ACTIVE: nothing was asked); ``quota`` (429
#: RESOURCE_EXHAUSTED: closed as deferred, the admission backs off); or a create error
#: (:class:`CreateVerdict`).
CreateOutcome = Literal["submitted", "deferred", "quota", "unanswered", "refused", "full"]

#: The most the admission halves the batch size after 429s in a row (1/64 of it).
MAX_HALVINGS = 6
#: An uploaded image is referenced again only while younger than this: the File API deletes it
#: 48 h after its upload, and the batch that references it must still find it.
IMAGE_REUSE_HOURS = 24.0


class CreateContext(msgspec.Struct, frozen=True):
    """What judging a create error needs beyond the error: the intent, the clock, the quota's
    back-off, and which attempt at a request file not yet ACTIVE this was."""

    intent: OpenIntent
    now: datetime
    #: The admission's current back-off (:func:`admission_halvings`).
    halvings: int = 0
    backoff_seconds: float = 60.0
    backoff_max_seconds: float = 1800.0
    precondition_attempt: int = 1
    precondition_attempts: int = 3
    #: A refused create counts a failure of each of the intent's pages towards this (0: it
    #: counts none, as before); ``failures`` are their counts before it.
    max_retries: int = 0
    failures: dict[str, int] = {}


class CreateVerdict(msgspec.Struct, frozen=True):
    """What a failed create means.

    ``unanswered`` (a transient error: 5xx, 408, a timeout or a lost connection; and 429 when
    judged without a :class:`CreateContext`): the service may have created the batch, so the
    intent stays open, its records reserved, and the next cycle looks the display name up.
    ``quota`` (429 RESOURCE_EXHAUSTED, with a context): known not to have made a job; the intent
    is closed as deferred (no failure counted), the next create waits ``retry_after``.
    ``precondition`` (400 FAILED_PRECONDITION, the request file not ACTIVE yet): wait for it and
    create again (the same intent; a 400 made no job); past the last attempt it is ``deferred``.
    ``refused`` (any other error): the intent is abandoned as ``http_<code>``, records free;
    with a context's ``max_retries`` each of its pages also fails (``RecordFailed``,
    ``CREATE_REFUSED``, the service's message), so a page the service keeps refusing is
    dead-lettered, and once refused again the next batch holding it holds it alone
    (:func:`pages_alone`).
    ``stop`` (401, 403, 404: the key or the model, with a context): the operator's to fix, not
    the pages': the intent is abandoned with no page failure and the run stops with one line.
    """

    outcome: Literal["unanswered", "quota", "precondition", "deferred", "refused", "stop"]
    events: list[Event] = []


def judge_create_error(
    display_name: str, error: GatewayError, context: CreateContext | None = None
) -> CreateVerdict:
    """The verdict on the create of the intent ``display_name`` failing with ``error``.

    Without ``context`` a 429 is only transient (unanswered) and a 400 is refused, as before
    the quota rules: the context is what lets a 429 or a 400 FAILED_PRECONDITION be closed.
    """
    if context is not None and error.code == 429:
        halvings = min(MAX_HALVINGS, context.halvings + 1)
        wait = quota_backoff_seconds(halvings, context.backoff_seconds, context.backoff_max_seconds)
        return CreateVerdict(
            "quota",
            [
                _deferred(
                    context,
                    "quota",
                    str(error),
                    retry_after=format_ts(context.now + timedelta(seconds=wait)),
                    halvings=halvings,
                )
            ],
        )
    if context is not None and error.code == 400 and error.status == "FAILED_PRECONDITION":
        if context.precondition_attempt < context.precondition_attempts:
            return CreateVerdict("precondition")
        message = (
            f"the request file was still not ACTIVE after {context.precondition_attempts} "
            f"creates: {error}"
        )
        return CreateVerdict(
            "deferred", [_deferred(context, "not_active", message, halvings=context.halvings)]
        )
    if error.transient:
        return CreateVerdict("unanswered")
    abandoned = BatchSubmissionAbandoned(
        display_name=display_name, error_type=f"http_{error.code}", message=str(error)
    )
    if context is not None and error.code in STOP_CODES:
        return CreateVerdict("stop", [abandoned])
    events: list[Event] = [abandoned]
    if context is not None and context.max_retries:
        events += _refusal_failures(context, str(error))
    return CreateVerdict("refused", events)


#: Create refusals no page can cure: the API key (401, 403) or the model's name (404).
STOP_CODES = frozenset({401, 403, 404})


#: The ``error_type`` of a page's failure when the service refused the create of its batch.
CREATE_REFUSED = "batch_create_refused"


def _refusal_failures(context: CreateContext, message: str) -> list[Event]:
    """A ``RecordFailed`` per page of a refused create (after its ``BatchSubmissionAbandoned``,
    which freed them), and a ``RecordDeadLettered`` for each that reaches ``max_retries``."""
    intent = context.intent
    out: list[Event] = []
    for key in intent.record_keys:
        out.append(
            RecordFailed(
                record_key=key,
                batch_id=intent.display_name,
                error_type=CREATE_REFUSED,
                message=f"the service refused the create of {intent.display_name}: {message}",
                model=intent.model,
            )
        )
        count = context.failures.get(key, 0) + 1
        if count >= context.max_retries:
            out.append(
                RecordDeadLettered(record_key=key, failures=count, max_retries=context.max_retries)
            )
    return out


#: A page whose last failure was a refused create goes in a batch of its own once it has failed
#: this many times: a batch refused once is tried whole again (a refusal may be a fluke, and
#: splitting a batch of N makes N jobs); refused again, its pages are isolated.
ALONE_AFTER_FAILURES = 2


def pages_alone(refusals: Mapping[str, int]) -> dict[str, int]:
    """Of the pages whose last failure was a refused create (their failure counts), those the
    next batches hold one by one: failed at least ``ALONE_AFTER_FAILURES`` times."""
    return {k: n for k, n in refusals.items() if n >= ALONE_AFTER_FAILURES}


def refused_last(keys: Sequence[str], refusals: Mapping[str, int]) -> list[str]:
    """``keys`` in the order the submit loop takes them: those whose last failure was not a
    refused create first, in their order; then the refused, fewest failures first (a page
    refused once because of a neighbour goes before the page that was refused again)."""
    clean = [k for k in keys if k not in refusals]
    refused = sorted((k for k in keys if k in refusals), key=lambda k: (refusals[k], k))
    return clean + refused


def next_chunk(keys: Sequence[str], refusals: Mapping[str, int], size: int) -> int:
    """How many of ``keys`` (ordered by :func:`refused_last`) the next batch takes, at most
    ``size``: a page whose last failure was a refused create goes alone (so one bad page is
    isolated and the rest of its old batch goes through); else the pages before the first such."""
    if not keys or size <= 0:
        return 0
    if keys[0] in refusals:
        return 1
    taken = 0
    for key in keys[:size]:
        if key in refusals:
            break
        taken += 1
    return taken


def _deferred(
    context: CreateContext, reason: str, message: str, *, retry_after: str = "", halvings: int
) -> BatchSubmissionDeferred:
    intent = context.intent
    return BatchSubmissionDeferred(
        display_name=intent.display_name,
        reason=reason,
        message=message,
        model=intent.model,
        input_file=intent.input_file,
        record_keys=intent.record_keys,
        retry_after=retry_after,
        halvings=halvings,
        project=intent.project,
    )


def has_room(
    batches: int, tokens: int, max_batches: int, max_tokens: int, estimated_tokens: int
) -> bool:
    """Whether a project with ``batches`` active batches and open intents and ``tokens``
    estimated in flight takes one more batch of ``estimated_tokens`` under its limits
    (``max_tokens`` 0: no token limit; with nothing in flight a batch goes even when bigger than
    the limit, as :func:`~commands.rules.tokens.admitted_pages` lets a lone page through).
    Decided again inside the transaction that appends the intent, so workers deciding at once
    never go over the limit together (outcome ``full``)."""
    if batches >= max_batches:
        return False
    return not max_tokens or tokens <= 0 or tokens + estimated_tokens <= max_tokens


def submit_goes_on(outcome: CreateOutcome) -> bool:
    """Whether the submit loop tries the cycle's next chunk after a create attempt ended so.

    Not after a create error: an unanswered create is looked up next cycle before anything else
    is created, a refusing service would waste the next chunk's uploads, and a quota answer
    holds every page back until its window has passed.
    """
    return outcome in ("submitted", "deferred")


# --- 4b. the quota's back-off -------------------------------------------------------------------


def admission_halvings(halvings: int, successes_since: int) -> int:
    """The back-off in force: the last deferral's ``halvings``, less one per batch submitted
    since (the admission grows back after successes), never below 0."""
    return max(0, halvings - successes_since)


def admitted_batch_size(batch_size: int, halvings: int) -> int:
    """The batch size the admission allows: ``batch_size`` halved ``halvings`` times, at least 1."""
    return max(1, batch_size >> max(0, halvings))


def quota_backoff_seconds(halvings: int, base_seconds: float, max_seconds: float) -> float:
    """How long the creates wait after the ``halvings``-th 429 in a row: ``base_seconds``
    doubled for each one after the first, at most ``max_seconds``."""
    return min(max_seconds, backoff_delay(base_seconds, max(1, halvings)))


def held_back(retry_after: str, now: datetime) -> bool:
    """Whether the creates still wait (``retry_after`` a stored timestamp; '' is no wait)."""
    return bool(retry_after) and now < parse_ts(retry_after)


def hold_persists(halvings: int) -> bool:
    """Whether a hold has lasted as long as the back-off goes (``MAX_HALVINGS`` deferrals in a
    row, none submitted since): ``run --until-idle`` then ends instead of waiting for ever."""
    return halvings >= MAX_HALVINGS


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
    deferred = _deferred(
        context,
        "service_unavailable",
        message,
        retry_after=format_ts(context.now + timedelta(seconds=wait)),
        halvings=halvings,
    )
    return Reconciled("deferred", [deferred])


class ProjectRoom(msgspec.Struct, frozen=True):
    """One project's room for another batch this moment: free batch slots, free estimated
    tokens (None: no token limit) and whether its quota back-off holds its creates."""

    name: str
    batches_free: int
    tokens_free: int | None = None
    held: bool = False


def pick_project(rooms: Sequence[ProjectRoom]) -> str | None:
    """The project the next batch goes to: of those not held with a batch slot free and token
    room left, the one with the most free slots, then the most free tokens (no limit counts as
    the most), then the first configured. None: every project is full or held."""
    best: ProjectRoom | None = None

    def rank(r: ProjectRoom) -> tuple[int, float]:
        return (r.batches_free, math.inf if r.tokens_free is None else r.tokens_free)

    for room in rooms:
        if (
            room.held
            or room.batches_free <= 0
            or (room.tokens_free is not None and room.tokens_free <= 0)
        ):
            continue
        if best is None or rank(room) > rank(best):
            best = room
    return None if best is None else best.name


def image_reusable_since(now: datetime) -> str:
    """The oldest upload time (a stored timestamp) of an image that may be referenced again."""
    return format_ts(now - timedelta(hours=IMAGE_REUSE_HOURS))


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
