"""What every step of a worker cycle shares: the config, the log, the Gemini port, the run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from commands.config import Config
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

    @property
    def actor(self) -> str:
        return run_actor(self.run_id)

    def append(self, events: Sequence[Event]) -> list[Recorded]:
        """Append ``events`` as this run, in one transaction (nothing for an empty list)."""
        return self.store.append(events, actor=self.actor) if events else []

    def hours_since(self, ts: str) -> float:
        """Hours from a stored timestamp to now (the store's clock)."""
        return hours_between(ts, self.store.clock())
