"""``abandoned_batches``: batches the system stopped waiting for (failed, cleared by an operator,
cancelled as stuck) that may still bring results. The worker keeps polling them: a late success
is adopted (first result per record wins), anything else closes them.

Folded before ``active_batches`` (see ``PROJECTIONS``): it reads the active row the same event
is about to remove.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    AbandonedBatchClosed,
    BatchCleared,
    BatchFailed,
    Event,
    LateResultsAdopted,
)
from eventlog.states import JobState
from eventlog.store import Recorded
from projections import active_batches
from projections.tables import Tables, TableSpec


class AbandonedBatch(msgspec.Struct, array_like=True, gc=False):
    batch_id: str
    display_name: str
    model: str
    reason: str
    #: 1 when the service had already reported a terminal state (FAILED, CANCELLED, EXPIRED).
    terminal: int
    submitted_seq: int
    submitted_at: str
    abandoned_seq: int
    abandoned_at: str
    #: The project (API key) it belongs to.
    project: str = DEFAULT_PROJECT


SPEC = TableSpec("abandoned_batches", AbandonedBatch, pk=("batch_id",), indexes=("display_name",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


def _abandon(t: Tables, rec: Recorded, batch_id: str, reason: str, terminal: bool) -> None:
    active = t.get(active_batches.SPEC, (batch_id,))
    if active is None:
        return
    t.put(
        SPEC,
        AbandonedBatch(
            batch_id,
            active.display_name,
            active.model,
            reason,
            int(terminal),
            active.submitted_seq,
            active.submitted_at,
            rec.seq,
            rec.ts,
            active.project,
        ),
    )


@apply.register
def _(e: BatchFailed, t: Tables, rec: Recorded) -> None:
    if e.state != JobState.NOT_FOUND:  # a job that is gone brings nothing
        _abandon(t, rec, e.batch_id, e.state, terminal=True)


@apply.register
def _(e: BatchCleared, t: Tables, rec: Recorded) -> None:
    _abandon(t, rec, e.batch_id, f"cleared: {e.reason}" if e.reason else "cleared", terminal=False)


@apply.register(LateResultsAdopted)
@apply.register(AbandonedBatchClosed)
def _(e: LateResultsAdopted | AbandonedBatchClosed, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.batch_id,))
