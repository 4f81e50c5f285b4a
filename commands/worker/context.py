"""What every stage of a worker cycle shares: the config, the log, the Gemini ports (one per
project: a batch or file is reached only with its project's key), the run, the pools its I/O
runs on, and what the run remembers from one cycle to the next."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field

from pydantic import BaseModel

from commands.config import Config
from commands.errors import GatewayError, LeaseLost
from commands.gemini.port import GeminiPort
from commands.worker.leases import LeaseKeeper
from commands.worker.pools import Pools
from commands.worker.progress import NoProgress, Progress
from eventlog.actors import run_actor
from eventlog.events import Event
from eventlog.store import EventStore, Recorded
from eventlog.timestamps import hours_between
from projections import queries

log = logging.getLogger("commands.leases")

#: The partition the current flow acts for (inside :meth:`Worker.acting_for`). A context
#: variable: each flow (an asyncio task) has its own, so flows of different partitions may run
#: side by side and each append is fenced by its own partition's lease.
_ACTING: ContextVar[str | None] = ContextVar("acting_for", default=None)


@dataclass
class Memory:
    """What a run remembers between its cycles (the log holds everything else)."""

    #: Batches named so far (``gb-<run>-<n>``: the display names stay unique in the run).
    batches_named: int = 0
    #: Intents whose create went unanswered this run, and per project how many in a row were
    #: then found never created (:func:`commands.rules.reconcile.judge_unanswered_lookup`).
    unanswered: set[str] = field(default_factory=set)
    absent_in_a_row: dict[str, int] = field(default_factory=dict)
    #: When the service's files were last listed for leftovers (``time.monotonic``).
    last_sweep: float | None = None

    def next_name(self, run_id: str) -> str:
        """A new batch display name, unique in the run."""
        self.batches_named += 1
        return f"gb-{run_id}-{self.batches_named:03d}"


@dataclass
class Worker:
    config: Config
    store: EventStore
    gateway: GeminiPort
    run_id: str
    schema: type[BaseModel]
    #: How the worker waits (a backoff, a request file still PROCESSING); safe on any thread.
    sleep: Callable[[float], None] = time.sleep
    progress: Progress = field(default_factory=NoProgress)
    #: One port per project (``[[gemini.projects]]``); empty: ``gateway`` serves every project.
    ports: dict[str, GeminiPort] = field(default_factory=dict)
    #: Shared mode (``[workers] mode = "shared"``): this worker's partition leases; None alone.
    leases: LeaseKeeper | None = None
    pools: Pools = field(default_factory=Pools)
    memory: Memory = field(default_factory=Memory)

    def port(self, project: str) -> GeminiPort:
        """The port holding ``project``'s key. A project the config no longer names is a
        transient failure (its batches stay reserved, never freed by a 404 from another key)."""
        if not self.ports:
            return self.gateway
        port = self.ports.get(project)
        if port is None:
            raise GatewayError(
                f"no project {project!r} in [[gemini.projects]]: its batches and files wait "
                "until the config names it again",
                transient=True,
            )
        return port

    @property
    def partition(self) -> str | None:
        """The partition the current flow acts for (None: none)."""
        return _ACTING.get()

    @property
    def actor(self) -> str:
        return run_actor(self.run_id)

    def append(
        self, events: Sequence[Event], admit: Callable[[], bool] | None = None
    ) -> list[Recorded]:
        """Append ``events`` as this run, in one transaction (nothing for an empty list).
        Inside :meth:`acting_for` in shared mode, only while the partition's lease is held
        (checked in the same transaction; else :class:`LeaseLost`). With ``admit``, only if it
        answers True read inside that transaction (else nothing is appended: ``[]``)."""
        if not events:
            return []
        partition = self.partition
        if self.leases is not None and partition is not None:
            return self.leases.append(events, partition, admit)
        if admit is None:
            return self.store.append(events, actor=self.actor)
        with self.store.write() as tx:
            return tx.append(events, actor=self.actor) if admit() else []

    def mine(self, partition: str) -> bool:
        """Whether this worker may act on ``partition`` now (always, alone)."""
        return self.leases is None or self.leases.owns(partition)

    def check_lease(self) -> None:
        """Before a side effect for the partition acted for: still this worker's, with time to
        spare, or :class:`LeaseLost` (which ends the :meth:`acting_for` block)."""
        partition = self.partition
        if self.leases is not None and partition is not None and not self.mine(partition):
            lease = queries.lease_of(self.store, partition)
            raise LeaseLost(partition, lease.worker if lease is not None else "")

    def partition_of(self, name: str, recorded: dict[str, str]) -> str:
        """The partition of a submission (display name or batch id) from ``recorded``
        (:func:`queries.batch_partitions`); one recorded without goes to the legacy holder."""
        if self.leases is None:
            return ""
        return recorded.get(name) or self.leases.legacy_partition()

    @contextlib.contextmanager
    def acting_for(self, partition: str) -> Iterator[None]:
        """Act for ``partition``: appends inside are fenced by its lease, and a lease found
        lost (:class:`LeaseLost`) ends the block quietly, with one warning: the worker stops
        touching that partition. Alone, a plain block."""
        if self.leases is None:
            yield
            return
        token = _ACTING.set(partition)
        try:
            yield
        except LeaseLost as e:
            log.warning("Lease on partition %s lost (%s): stopped touching it", partition, e)
        finally:
            _ACTING.reset(token)

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` inside a flow, letting the other flows go on meanwhile."""
        if self.sleep is time.sleep:
            await asyncio.sleep(seconds)
        else:  # a sleep the caller chose (a test's): on a thread, as any blocking call
            await self.pools.call(self.sleep, seconds)

    def hours_since(self, ts: str) -> float:
        """Hours from a stored timestamp to now (the store's clock)."""
        return hours_between(ts, self.store.clock())
