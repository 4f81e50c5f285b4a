"""``submission_intents``: batches about to be created, not yet confirmed by the service.

An intent is appended before ``batches.create``; ``BatchSubmitted`` (or an abandonment, or an
operator's ``clear-batch`` naming the display name) closes it. An open intent after a crash means
"look for a job under this display name before submitting anything again".
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    BatchCleared,
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class SubmissionIntent(msgspec.Struct, array_like=True, gc=False):
    display_name: str
    model: str
    record_count: int
    input_file: str
    intended_seq: int
    intended_at: str
    transport: str = "file_api"
    #: Tokens estimated for the batch (its intent's ``estimated_tokens``).
    estimated_tokens: int = 0
    #: The project (API key) it is created with.
    project: str = DEFAULT_PROJECT


SPEC = TableSpec(
    "submission_intents",
    SubmissionIntent,
    pk=("display_name",),
    refuse_hint=(
        "to give up an open submission run `python -m commands clear-batch <display_name>` "
        "(it keeps the tables in step with the log)"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionIntended, t: Tables, rec: Recorded) -> None:
    t.put(
        SPEC,
        SubmissionIntent(
            e.display_name,
            e.model,
            len(e.record_keys),
            e.input_file,
            rec.seq,
            rec.ts,
            e.transport,
            e.estimated_tokens,
            e.project,
        ),
    )


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.display_name,))


@apply.register(BatchSubmissionAbandoned)
@apply.register(BatchSubmissionDeferred)
def _(e: BatchSubmissionAbandoned | BatchSubmissionDeferred, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.display_name,))


@apply.register
def _(e: BatchCleared, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.batch_id,))
