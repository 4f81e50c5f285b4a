"""``leases``: which worker holds each dataset partition, and until when (``[workers] mode =
"shared"``). The decisions (who may take what) are :mod:`commands.rules.leases`'; this table is
what they are taken against, read again inside the write transaction that appends them."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, LeaseAcquired, LeaseReleased, LeaseRenewed, LeaseTakenOver
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class Lease(msgspec.Struct, array_like=True, gc=False):
    partition: str
    worker: str
    acquired_at: str
    renewed_at: str
    expires_at: str


SPEC = TableSpec("leases", Lease, pk=("partition",), indexes=("worker",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: LeaseAcquired, t: Tables, rec: Recorded) -> None:
    t.put(SPEC, Lease(e.partition, e.worker, rec.ts, rec.ts, e.expires_at))


@apply.register
def _(e: LeaseTakenOver, t: Tables, rec: Recorded) -> None:
    t.put(SPEC, Lease(e.partition, e.to_worker, rec.ts, rec.ts, e.expires_at))


@apply.register
def _(e: LeaseRenewed, t: Tables, rec: Recorded) -> None:
    for partition in e.partitions:
        row = t.get(SPEC, (partition,))
        if row is not None and row.worker == e.worker:  # a lease lost meanwhile stays lost
            t.put(SPEC, msgspec.structs.replace(row, renewed_at=rec.ts, expires_at=e.expires_at))


@apply.register
def _(e: LeaseReleased, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.partition,))
    if row is not None and row.worker == e.worker:
        t.delete(SPEC, (e.partition,))
