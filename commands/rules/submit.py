"""Submitting a batch: its intent, its create, and what a failed create means (pure, no I/O).

* :func:`intended` -- the ``BatchSubmissionIntended`` appended before ``batches.create`` (the
  unique display name that makes a submission exactly-once); :func:`submitted` -- the
  ``BatchSubmitted`` once the service made the job (or it is adopted by its display name).
* :func:`judge_create_error` -- what a failed ``batches.create`` means (a refusal counts a
  failure of each page; a 429 defers the pages and backs the admission off), and
  :func:`submit_goes_on` whether the submit loop tries the cycle's next chunk.

Every verdict carries an ``outcome`` naming the branch taken (the worker logs by it and reaches
its crash points by it) and the complete list of ``events`` to append, possibly empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from commands.errors import GatewayError
from commands.rules.admission import MAX_HALVINGS, quota_backoff_seconds
from commands.rules.retry import dead_letter
from eventlog.events import (
    DEFAULT_PROJECT,
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    RecordFailed,
)
from eventlog.timestamps import format_ts

__all__ = [
    "CREATE_REFUSED",
    "STOP_CODES",
    "CreateContext",
    "CreateOutcome",
    "CreateVerdict",
    "OpenIntent",
    "deferred",
    "intended",
    "judge_create_error",
    "submit_goes_on",
    "submitted",
]

#: How one create attempt of the submit loop ended: ``submitted``; ``deferred`` (the request
#: file could not be uploaded or never became ACTIVE: nothing was asked); ``quota`` (429
#: RESOURCE_EXHAUSTED: closed as deferred, the admission backs off); ``full`` (the project
#: filled up before the intent was appended); or a create error (:class:`CreateVerdict`).
CreateOutcome = Literal["submitted", "deferred", "quota", "unanswered", "refused", "full"]

#: The ``error_type`` of a page's failure when the service refused the create of its batch.
CREATE_REFUSED = "batch_create_refused"
#: Create refusals no page can cure: the API key (401, 403) or the model's name (404).
STOP_CODES = frozenset({401, 403, 404})


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


def intended(
    intent: OpenIntent,
    *,
    files: Sequence[str],
    estimated_input_tokens: int,
    partition: str,
) -> BatchSubmissionIntended:
    """The intent appended before the create: the pages it reserves, the request file and the
    uploaded images it uses (``files``), its estimate, its project and partition."""
    return BatchSubmissionIntended(
        display_name=intent.display_name,
        model=intent.model,
        record_keys=intent.record_keys,
        input_file=intent.input_file,
        files=list(files),
        transport=intent.transport,
        estimated_tokens=intent.estimated_tokens,
        estimated_input_tokens=estimated_input_tokens,
        project=intent.project,
        partition=partition,
    )


def submitted(intent: OpenIntent, batch_id: str, state: str) -> BatchSubmitted:
    """The submission of ``intent`` as the job ``batch_id`` (now in ``state``)."""
    return BatchSubmitted(
        batch_id=batch_id,
        display_name=intent.display_name,
        model=intent.model,
        record_keys=intent.record_keys,
        input_file=intent.input_file,
        state=state,
        transport=intent.transport,
        estimated_tokens=intent.estimated_tokens,
        project=intent.project,
    )


class CreateContext(msgspec.Struct, frozen=True):
    """What judging a create error needs beyond the error: the intent, the clock, the quota's
    back-off, and which attempt at a request file not yet ACTIVE this was."""

    intent: OpenIntent
    now: datetime
    #: The admission's current back-off (:func:`~commands.rules.admission.admission_halvings`).
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
    (:func:`~commands.rules.admission.pages_alone`).
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
        retry_after = format_ts(context.now + timedelta(seconds=wait))
        return CreateVerdict(
            "quota",
            [deferred(context.intent, "quota", str(error), halvings, retry_after=retry_after)],
        )
    if context is not None and error.code == 400 and error.status == "FAILED_PRECONDITION":
        if context.precondition_attempt < context.precondition_attempts:
            return CreateVerdict("precondition")
        message = (
            f"the request file was still not ACTIVE after {context.precondition_attempts} "
            f"creates: {error}"
        )
        return CreateVerdict(
            "deferred", [deferred(context.intent, "not_active", message, context.halvings)]
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
        dead = dead_letter(key, context.failures.get(key, 0) + 1, context.max_retries)
        if dead is not None:
            out.append(dead)
    return out


def deferred(
    intent: OpenIntent, reason: str, message: str, halvings: int, *, retry_after: str = ""
) -> BatchSubmissionDeferred:
    """The intent closed without a job (``reason``: ``quota``, ``not_active``,
    ``service_unavailable``); its pages wait until ``retry_after`` ("" : no wait)."""
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


def submit_goes_on(outcome: CreateOutcome) -> bool:
    """Whether the submit loop tries the cycle's next chunk after a create attempt ended so.

    Not after a create error: an unanswered create is looked up next cycle before anything else
    is created, a refusing service would waste the next chunk's uploads, and a quota answer
    holds every page back until its window has passed.
    """
    return outcome in ("submitted", "deferred")
