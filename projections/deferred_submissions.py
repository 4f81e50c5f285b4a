"""``deferred_submissions``: creates the service answered "not now" (``BatchSubmissionDeferred``).

A row keeps the deferred display name (looked up once before its pages go out again:
``checked`` turns 1 on ``DeferredSubmissionChecked``, the row goes on ``BatchSubmitted`` when a
job was found after all and adopted) and, while it exists, the page images it referenced are
not garbage: the next submission reuses them while they are young.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    BatchSubmissionDeferred,
    BatchSubmitted,
    DeferredSubmissionChecked,
    Event,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class DeferredSubmission(msgspec.Struct, array_like=True, gc=False):
    display_name: str
    model: str
    input_file: str
    #: The records it had reserved, newline-separated (for an adoption after the lookup).
    record_keys: str
    reason: str
    checked: int
    deferred_seq: int
    deferred_at: str
    #: The project (API key) whose create was deferred (its lookup uses that key).
    project: str = DEFAULT_PROJECT


SPEC = TableSpec("deferred_submissions", DeferredSubmission, pk=("display_name",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionDeferred, t: Tables, rec: Recorded) -> None:
    t.put(
        SPEC,
        DeferredSubmission(
            e.display_name,
            e.model,
            e.input_file,
            "\n".join(e.record_keys),
            e.reason,
            0,
            rec.seq,
            rec.ts,
            e.project,
        ),
    )


@apply.register
def _(e: DeferredSubmissionChecked, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.display_name,))
    if row is not None:
        t.put(SPEC, msgspec.structs.replace(row, checked=1))


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.display_name,))
