"""A shared-mode worker's partition leases (``[workers] mode = "shared"``): the I/O around
:mod:`commands.rules.leases`.

* :meth:`LeaseKeeper.rebalance` runs the pure decision inside one write transaction, against the
  ``leases`` and ``workers`` tables read in that same transaction, with the log's clock: two
  workers can never both take a partition (SQLite serialises write transactions; a PostgreSQL
  store serialises them the same way).
* :meth:`LeaseKeeper.owns` is the check before each side effect on a partition: the lease is
  this worker's and has a third of ``lease_seconds`` left (renewals come every third, so a live
  holder always passes it, and a cut-off one stops acting before anyone may take over).
* :meth:`LeaseKeeper.append` is the fenced append: the lease is checked again inside the write
  transaction, so a worker whose lease was taken over cannot record anything for the partition
  (:class:`~commands.errors.LeaseLost`).
* :meth:`LeaseKeeper.sleep` sleeps in slices of a third of a lease, renewing between them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from commands.config import Config
from commands.errors import LeaseLost
from commands.rules import leases as rules
from eventlog.actors import run_actor
from eventlog.events import Event, LeaseAcquired, LeaseReleased, LeaseRenewed, LeaseTakenOver
from eventlog.store import EventStore, Recorded
from projections import queries

log = logging.getLogger("commands.leases")
#: Between renewals, how often a worker looks whether a rebalance would change anything.
PEEK_SECONDS = 1.0


def default_worker_id() -> str:
    """``host:pid``: unique among the workers running at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """The leases of worker ``worker_id`` (run ``run_id``) on ``store``."""

    def __init__(
        self,
        store: EventStore,
        config: Config,
        worker_id: str,
        run_id: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.config = store, config
        self.workers = config.workers
        self.me, self.run_id = worker_id, run_id
        self.actor = run_actor(run_id)
        self._sleep = sleep
        self._last_renewal: datetime | None = None
        self._last_peek: datetime | None = None
        #: The partitions there were at the last rebalance (a look between renewals uses them).
        self._known: list[str] = []
        #: What this worker held after its last rebalance (for logging what changed).
        self.held: set[str] = set()

    # --- partitions ---------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        """Every partition there is: the State folders, or the ``partitions`` hash buckets."""
        w = self.workers
        if w.partition_by == "school_hash":
            return rules.hash_partitions(w.partitions)
        root = self.config.paths.input_root
        try:
            return sorted(
                e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
            )
        except OSError:
            return []

    def partition_of_key(self, key: str) -> str:
        w = self.workers
        return rules.partition_of_key(key, by=w.partition_by, partitions=w.partitions)

    def partition_of(self, state: str, school: str) -> str:
        w = self.workers
        return rules.partition_of(state, school, by=w.partition_by, partitions=w.partitions)

    def legacy_partition(self) -> str:
        """Who looks after submissions recorded without a partition (made in single mode): the
        holder of the first partition."""
        parts = self.partitions()
        return parts[0] if parts else ""

    # --- deciding -----------------------------------------------------------------------------

    def rebalance(self, before: Sequence[Event] = ()) -> list[Recorded]:
        """Renew, release and take leases in one write transaction (``before``: events to
        append first, in the same transaction, such as ``RunStarted``)."""
        partitions = self._known = self.partitions()
        with self.store.write() as tx:
            now = self.store.clock()
            events = rules.decide(
                queries.leases(self.store),
                queries.workers(self.store),
                me=self.me,
                run_id=self.run_id,
                partitions=partitions,
                now=now,
                lease_seconds=self.workers.lease_seconds,
                ended_runs=queries.ended_worker_runs(self.store),
            )
            recorded = tx.append([*before, *events], actor=self.actor)
        self._last_renewal = self._last_peek = now
        self._note(events)
        return recorded

    def _note(self, events: Sequence[Event]) -> None:
        held = set(self.held)
        # Let go of on purpose (more than a fair share, or the partition is gone): not "lost".
        released = {e.partition for e in events if isinstance(e, LeaseReleased)}
        for e in events:
            if isinstance(e, LeaseRenewed):
                lost = held - set(e.partitions) - released
                for p in sorted(lost):
                    log.warning("Lease on partition %s lost: stopped touching it", p)
                held = set(e.partitions)
            elif isinstance(e, LeaseAcquired):
                held.add(e.partition)
                log.info("Lease acquired: partition %s by worker %s", e.partition, self.me)
            elif isinstance(e, LeaseTakenOver):
                held.add(e.partition)
                log.warning(
                    "Lease taken over: partition %s from worker %s (its lease lapsed)",
                    e.partition,
                    e.from_worker,
                )
            elif isinstance(e, LeaseReleased):
                held.discard(e.partition)
                log.info("Lease released: partition %s", e.partition)
        self.held = held

    def announce(self) -> None:
        """Say this worker is live (holding nothing yet) before it takes partitions: workers
        starting together then share from their first rebalance."""
        now = self.store.clock()
        event = rules.announce(self.me, self.run_id, now, self.workers.lease_seconds)
        self.store.append([event], actor=self.actor)

    def renew_if_due(self) -> None:
        """Rebalance when a third of a lease has passed since the last renewal, or sooner when
        a look at the leases (at most every :data:`PEEK_SECONDS`) says it would change who holds
        what: a worker joined, or a partition came free."""
        now = self.store.clock()
        if rules.renewal_due(self._last_renewal, now, self.workers.lease_seconds):
            self.rebalance()
            return
        if self._last_peek is not None and (now - self._last_peek).total_seconds() < PEEK_SECONDS:
            return
        self._last_peek = now
        worth = rules.worth_rebalancing(
            queries.leases(self.store),
            queries.workers(self.store),
            me=self.me,
            partitions=self._known,  # as listed at the last rebalance: no listing a second
            now=now,
            ended_runs=queries.ended_worker_runs(self.store),
        )
        if worth:
            self.rebalance()

    def release_all(self, after: Sequence[Event] = ()) -> None:
        """Let every partition go (the run is ending): the others take them at once. ``after``
        (the run's ``RunFinished``) goes in the same transaction: from then on nobody counts
        this worker as live, so the next one takes every partition, not a share."""
        with self.store.write() as tx:
            released = rules.release_all(queries.leases(self.store), self.me)
            tx.append([*released, *after], actor=self.actor)
        self.held = set()

    # --- acting -------------------------------------------------------------------------------

    def owns(self, partition: str) -> bool:
        """Whether this worker may act on ``partition`` now (renewing first if due)."""
        self.renew_if_due()
        margin = self.workers.lease_seconds / 3
        lease = queries.lease_of(self.store, partition)
        ok = rules.holds(lease, self.me, self.store.clock(), margin)
        if not ok and partition in self.held:
            self.held.discard(partition)
            log.warning(
                "Lease on partition %s lost (%s): stopped touching it",
                partition,
                f"held by {lease.worker}, until {lease.expires_at}"
                if lease is not None
                else "released",
            )
        return ok

    def append(
        self, events: Sequence[Event], partition: str, admit: Callable[[], bool] | None = None
    ) -> list[Recorded]:
        """Append ``events`` if, inside the write transaction, this worker still holds
        ``partition``'s lease (else :class:`LeaseLost`) and ``admit`` (if given) answers True
        (else ``[]``); nothing is appended otherwise."""
        if not events:
            return []
        with self.store.write() as tx:
            lease = queries.lease_of(self.store, partition)
            if not rules.holds(lease, self.me, self.store.clock()):
                raise LeaseLost(partition, lease.worker if lease else "")
            if admit is not None and not admit():
                return []
            return tx.append(events, actor=self.actor)

    def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, renewing at least every third of a lease meanwhile."""
        step, left = min(self.workers.lease_seconds / 3, PEEK_SECONDS), seconds
        while left > 0:
            self.renew_if_due()
            self._sleep(min(left, step))
            left -= step
