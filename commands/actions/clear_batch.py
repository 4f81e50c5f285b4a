"""``clear-batch``: an operator gives up on a stuck batch (or an open submission intent).

The batch's records are freed and will be submitted again next cycle. The job on the service is
not cancelled: if it later succeeds, its results are still adopted (first result per record wins).
"""

from __future__ import annotations

import msgspec

from eventlog.errors import NothingMatched
from eventlog.events import BatchCleared, Event
from eventlog.store import EventStore
from projections import queries


class Cleared(msgspec.Struct, frozen=True):
    batch_id: str
    kind: str  # "batch" or "intent"
    records_freed: int


def decide(batch_id: str, reason: str, *, active: bool, intent: bool) -> list[Event]:
    """The events clearing ``batch_id`` appends (pure)."""
    if not active and not intent:
        raise NothingMatched(
            f"no active batch or open submission named {batch_id!r} "
            "(see `python -m commands status`)"
        )
    return [BatchCleared(batch_id=batch_id, reason=reason)]


def clear_batch(store: EventStore, batch_id: str, *, reason: str, actor: str) -> Cleared:
    """Append the clear in one write transaction; raises :class:`NothingMatched` if unknown."""
    with store.write() as w:  # the reads see the state the clear is appended to
        active = queries.is_active_batch(store, batch_id)
        intent = queries.has_open_intent(store, batch_id)
        held = queries.count_held_records(store, batch_id)
        w.append(decide(batch_id, reason, active=active, intent=intent), actor=actor)
    return Cleared(batch_id, "batch" if active else "intent", held)
