"""Partition leases for several workers on one log: pure decisions, no I/O.

A dataset partition is a State (``partition_by = "state"``) or a stable hash of State/School
(``"school_hash"``: crc32 mod ``partitions``, the same on every machine and Python, unlike
``hash()``). A worker holds a partition's lease until ``expires_at`` and renews it every cycle;
:func:`decide` is run inside the append transaction against the folded ``leases`` and
``workers`` tables, so two workers never both hold a partition:

* a worker keeps (renews) what it holds, up to its fair share, ``ceil(partitions / live
  workers)`` (a live worker: its row has not expired and its run has not ended; the deciding
  worker always counts), and releases the rest, the last partitions first;
* with room left, it takes free partitions (never held, or released), then lapsed ones (their
  holder's lease expired: killed, or cut off from the log) as ``LeaseTakenOver``;
* every decision carries a ``LeaseRenewed`` for the worker (even with no partition): that is
  how the others count it as live; a worker starting says so first (:func:`announce`), before
  it takes anything, and :func:`worth_rebalancing` tells a worker between renewals that a
  rebalance would change something (a worker joined, or a partition came free).

:func:`holds` is the check a worker makes before each side effect on a partition: the lease is
its own and still has ``margin`` seconds to run.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

from eventlog.events import Event, LeaseAcquired, LeaseReleased, LeaseRenewed, LeaseTakenOver
from eventlog.timestamps import format_ts


class Lease(Protocol):
    """What a decision reads of a ``leases`` row."""

    @property
    def partition(self) -> str: ...
    @property
    def worker(self) -> str: ...
    @property
    def expires_at(self) -> str: ...


class WorkerRow(Protocol):
    """What a decision reads of a ``workers`` row."""

    @property
    def worker(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def expires_at(self) -> str: ...


__all__ = [
    "Lease",
    "PartitionBy",
    "WorkerRow",
    "announce",
    "decide",
    "fair_share",
    "hash_partitions",
    "holds",
    "is_live",
    "partition_of",
    "partition_of_key",
    "release_all",
    "renewal_due",
    "worth_rebalancing",
]

PartitionBy = Literal["state", "school_hash"]


def partition_of(state: str, school: str, *, by: PartitionBy, partitions: int) -> str:
    """The partition of a State/School folder: the State's name, or crc32 of ``State/School``
    mod ``partitions``, zero-padded so that names sort as numbers."""
    if by == "state":
        return state
    return _bucket(zlib.crc32(f"{state}/{school}".encode()) % partitions, partitions)


def _bucket(n: int, partitions: int) -> str:
    return f"{n:0{len(str(partitions - 1))}d}"


def hash_partitions(partitions: int) -> list[str]:
    """Every partition name of ``school_hash`` with ``partitions`` buckets, in order."""
    return [_bucket(n, partitions) for n in range(partitions)]


def partition_of_key(key: str, *, by: PartitionBy, partitions: int) -> str:
    """The partition of a record key ``State:School:Year:Page`` (or an image's display name)."""
    state, _, rest = key.partition(":")
    school = rest.partition(":")[0]
    return partition_of(state, school, by=by, partitions=partitions)


def fair_share(partitions: int, live_workers: int) -> int:
    """The most partitions one worker takes while ``live_workers`` share ``partitions``."""
    return math.ceil(partitions / max(1, live_workers))


def is_live(worker: WorkerRow, now: str, ended_runs: Collection[str] = ()) -> bool:
    """Whether ``worker`` still counts at ``now`` (a stored timestamp): its last renewal has not
    lapsed, and its run has not ended (``ended_runs``: the runs with a ``RunFinished``; a worker
    that finished released its leases on the way out, so it is gone before its renewal lapses)."""
    return worker.expires_at > now and worker.run_id not in ended_runs


def _live(workers: Iterable[WorkerRow], me: str, now: str, ended_runs: Collection[str]) -> set[str]:
    return {w.worker for w in workers if is_live(w, now, ended_runs)} | {me}


def decide(
    leases: Sequence[Lease],
    workers: Sequence[WorkerRow],
    *,
    me: str,
    run_id: str,
    partitions: Sequence[str],
    now: datetime,
    lease_seconds: float,
    ended_runs: Collection[str] = (),
) -> list[Event]:
    """The lease events worker ``me`` appends at ``now`` (the log's clock), given the folded
    tables read in the same write transaction. ``partitions``: every partition there is;
    ``ended_runs``: the runs that finished (their workers are not live)."""
    now_ts = format_ts(now)
    expires = format_ts(now + timedelta(seconds=lease_seconds))
    known = set(partitions)
    held = {lease.partition: lease for lease in leases}
    share = fair_share(len(known), len(_live(workers, me, now_ts, ended_runs)))
    mine = sorted(p for p, lease in held.items() if lease.worker == me and p in known)
    keep, release = mine[:share], mine[share:]
    room = share - len(keep)
    taken: list[Event] = []
    for p in sorted(p for p in known if p not in held):
        if room <= 0:
            break
        taken.append(LeaseAcquired(partition=p, worker=me, expires_at=expires))
        room -= 1
    for p in sorted(known):
        lease = held.get(p)
        if room <= 0:
            break
        if lease is not None and lease.worker != me and lease.expires_at <= now_ts:
            taken.append(
                LeaseTakenOver(
                    partition=p, from_worker=lease.worker, to_worker=me, expires_at=expires
                )
            )
            room -= 1
    # Leases on partitions that no longer exist (a State folder removed) are let go.
    gone = sorted(p for p, lease in held.items() if lease.worker == me and p not in known)
    return [
        LeaseRenewed(worker=me, partitions=keep, expires_at=expires, run_id=run_id),
        *(LeaseReleased(partition=p, worker=me) for p in [*release, *gone]),
        *taken,
    ]


def announce(me: str, run_id: str, now: datetime, lease_seconds: float) -> LeaseRenewed:
    """Worker ``me`` says it is live before it takes any partition (a renewal of none): the
    others count it in their fair shares from then on, so workers that start together share
    the partitions from their first cycle instead of the first one taking them all."""
    expires = format_ts(now + timedelta(seconds=lease_seconds))
    return LeaseRenewed(worker=me, partitions=[], expires_at=expires, run_id=run_id)


def worth_rebalancing(
    leases: Sequence[Lease],
    workers: Sequence[WorkerRow],
    *,
    me: str,
    partitions: Sequence[str],
    now: datetime,
    ended_runs: Collection[str] = (),
) -> bool:
    """Whether a rebalance by ``me`` now would change who holds what (:func:`decide` would take
    or let go of a partition: a worker joined, or one came free or lapsed). Read often between
    renewals, so a joining worker gets its share within a renewal interval, not a lease
    period; it appends nothing itself."""
    events = decide(
        leases,
        workers,
        me=me,
        run_id="",
        partitions=partitions,
        now=now,
        lease_seconds=0,
        ended_runs=ended_runs,
    )
    return any(not isinstance(e, LeaseRenewed) for e in events)


def release_all(leases: Sequence[Lease], me: str) -> list[Event]:
    """Every lease ``me`` holds, let go (its run is ending): the others take them at once."""
    return [
        LeaseReleased(partition=lease.partition, worker=me)
        for lease in leases
        if lease.worker == me
    ]


def holds(lease: Lease | None, me: str, now: datetime, margin_seconds: float = 0.0) -> bool:
    """Whether ``me`` holds ``lease`` with at least ``margin_seconds`` left at ``now``."""
    if lease is None or lease.worker != me:
        return False
    return lease.expires_at > format_ts(now + timedelta(seconds=margin_seconds))


def renewal_due(last_renewal: datetime | None, now: datetime, lease_seconds: float) -> bool:
    """A renewal is due a third of a lease after the last one (or when there was none)."""
    return last_renewal is None or (now - last_renewal).total_seconds() >= lease_seconds / 3
