"""``finished_jobs``: completed batches (or ones whose results were gone) whose job is still on
the service (one row each until a ``BatchJobDeleted``); the worker deletes them once their results
are durable, with the key of their project. Folded before ``active_batches``: it reads the active
row (its project) that the same event removes."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    BatchCompleted,
    BatchJobDeleted,
    BatchResultsUnavailable,
    Event,
)
from eventlog.store import Recorded
from projections import active_batches
from projections.tables import Tables, TableSpec


class FinishedJob(msgspec.Struct, array_like=True, gc=False):
    batch_id: str
    completed_seq: int
    completed_at: str
    #: The project (API key) whose job it is.
    project: str = DEFAULT_PROJECT


SPEC = TableSpec("finished_jobs", FinishedJob, pk=("batch_id",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register(BatchCompleted)
@apply.register(BatchResultsUnavailable)
def _(e: BatchCompleted | BatchResultsUnavailable, t: Tables, rec: Recorded) -> None:
    active = t.get(active_batches.SPEC, (e.batch_id,))
    project = active.project if active is not None else DEFAULT_PROJECT
    t.put(SPEC, FinishedJob(e.batch_id, rec.seq, rec.ts, project))


@apply.register
def _(e: BatchJobDeleted, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.batch_id,))
