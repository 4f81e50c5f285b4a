"""``workers``: each worker that ever held a lease, its run, its last renewal and when it lapses
(a worker whose ``expires_at`` has passed is dead or cut off: its partitions are up for grabs)."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, LeaseRenewed
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class WorkerRow(msgspec.Struct, array_like=True, gc=False):
    worker: str
    run_id: str
    first_seen_at: str
    renewed_at: str
    expires_at: str


SPEC = TableSpec("workers", WorkerRow, pk=("worker",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: LeaseRenewed, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.worker,))
    first = row.first_seen_at if row is not None else rec.ts
    t.put(SPEC, WorkerRow(e.worker, e.run_id, first, rec.ts, e.expires_at))
