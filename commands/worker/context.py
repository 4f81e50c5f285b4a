"""What every step of a worker cycle shares: the config, the log, the Gemini ports (one per
project: a batch or file is reached only with its project's key), the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from commands.config import Config
from commands.errors import GatewayError
from commands.gemini.port import GeminiPort
from commands.worker.progress import NoProgress, Progress
from eventlog.actors import run_actor
from eventlog.events import Event
from eventlog.store import EventStore, Recorded
from eventlog.timestamps import hours_between


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

    @property
    def actor(self) -> str:
        return run_actor(self.run_id)

    def append(self, events: Sequence[Event]) -> list[Recorded]:
        """Append ``events`` as this run, in one transaction (nothing for an empty list)."""
        return self.store.append(events, actor=self.actor) if events else []

    def hours_since(self, ts: str) -> float:
        """Hours from a stored timestamp to now (the store's clock)."""
        return hours_between(ts, self.store.clock())
