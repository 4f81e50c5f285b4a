"""What may be stuck, at a glance (pure): each mark names the thing, its age and the threshold it
passed, so ``status`` and the dashboard say the same.

Thresholds (``status --stuck-after`` sets the first; the others are tied to it):
* an active batch older than ``batch_hours`` (24: the service's target turnaround);
* an open submission intent older than ``minutes`` (a create whose outcome is still unknown is
  looked up every cycle: one left open that long means no worker is cycling);
* no event for ``minutes`` while batches are active or intents open (the workers are quiet);
* a quota hold older than ``minutes``;
* a shared-mode worker whose lease lapsed (dead, or cut off from the log).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import msgspec

from eventlog.timestamps import hours_between

__all__ = ["BATCH_HOURS", "MINUTES", "Mark", "marks"]

BATCH_HOURS = 24.0
MINUTES = 60.0


class Mark(msgspec.Struct, frozen=True):
    """One thing that looks stuck: what (``kind``, ``name``), since when, and why it is marked."""

    kind: str
    name: str
    since: str
    age_hours: float
    why: str


def marks(
    now: datetime,
    *,
    batches: Sequence[tuple[str, str, str]],
    intents: Sequence[tuple[str, str]],
    holds: Sequence[tuple[str, str]],
    lapsed_workers: Sequence[tuple[str, str]],
    last_event_at: str | None,
    minutes: float = MINUTES,
    batch_hours: float = BATCH_HOURS,
) -> list[Mark]:
    """The marks, oldest first. ``batches``: (batch id, state, submitted at); ``intents``:
    (display name, intended at); ``holds``: (project, held since); ``lapsed_workers``: (worker,
    renewed at)."""
    out: list[Mark] = []
    limit = minutes / 60

    def add(kind: str, name: str, since: str, hours: float, why: str) -> None:
        age = hours_between(since, now)
        if age > hours:
            out.append(Mark(kind, name, since, round(age, 2), why))

    for batch_id, state, at in batches:
        add("batch", batch_id, at, batch_hours, f"{state} for over {batch_hours:g} h")
    for name, at in intents:
        add("intent", name, at, limit, f"its create's outcome unknown for over {minutes:g} min")
    for project, since in holds:
        add("quota hold", project, since, limit, f"creates held back for over {minutes:g} min")
    for worker, renewed in lapsed_workers:
        out.append(
            Mark("worker", worker, renewed, round(hours_between(renewed, now), 2), "lease lapsed")
        )
    if last_event_at and (batches or intents):
        add("log", "last event", last_event_at, limit, f"nothing appended for over {minutes:g} min")
    return sorted(out, key=lambda m: -m.age_hours)
