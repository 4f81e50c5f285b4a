"""What every step of a worker cycle shares: the config, the log, the Gemini ports (one per
project: a batch or file is reached only with its project's key), the run."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from commands.config import Config
from commands.errors import GatewayError, LeaseLost
from commands.gemini.port import GeminiPort
from commands.worker.leases import LeaseKeeper
from commands.worker.progress import NoProgress, Progress
from eventlog.actors import run_actor
from eventlog.events import Event
from eventlog.store import EventStore, Recorded
from eventlog.timestamps import hours_between

log = logging.getLogger("commands.leases")


@dataclass
class Worker:
    config: Config
    store: EventStore
    gateway: GeminiPort
    run_id: str
    schema: type[BaseModel]
    sleep: Callable[[float], None] = time.sleep
    progress: Progress = field(default_factory=NoProgress)
    #: One port per project (``[[gemini.projects]]``); empty: ``gateway`` serves every project.
    ports: dict[str, GeminiPort] = field(default_factory=dict)

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

    #: Shared mode (``[workers] mode = "shared"``): this worker's partition leases; None alone.
    leases: LeaseKeeper | None = None
    #: The partition the current step acts for (inside :meth:`acting_for`): appends are fenced.
    partition: str | None = None

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
        if self.leases is not None and self.partition is not None:
            return self.leases.append(events, self.partition, admit)
        if admit is None:
            return self.store.append(events, actor=self.actor)
        with self.store.write() as tx:
            return tx.append(events, actor=self.actor) if admit() else []

    def mine(self, partition: str) -> bool:
        """Whether this worker may act on ``partition`` now (always, alone)."""
        return self.leases is None or self.leases.owns(partition)

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
        before, self.partition = self.partition, partition
        try:
            yield
        except LeaseLost as e:
            log.warning("Lease on partition %s lost (%s): stopped touching it", partition, e)
        finally:
            self.partition = before

    def hours_since(self, ts: str) -> float:
        """Hours from a stored timestamp to now (the store's clock)."""
        return hours_between(ts, self.store.clock())
