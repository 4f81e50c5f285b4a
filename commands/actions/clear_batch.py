"""``clear-batch``: an operator gives up on a stuck batch (or an open submission intent).

The batch's records are freed and will be submitted again next cycle. The job on the service is
not cancelled: if it later succeeds, its results are still adopted (first result per record wins).
"""

from __future__ import annotations

import msgspec

from eventlog.errors import NothingMatched
from eventlog.events import BatchCleared, Event
from eventlog.store import EventStore


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
    conn = store.conn
    with store.write() as w:
        active = conn.execute(
            "SELECT count(*) FROM active_batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()[0]
        intent = conn.execute(
            "SELECT count(*) FROM submission_intents WHERE display_name = ?", (batch_id,)
        ).fetchone()[0]
        held = conn.execute(
            "SELECT count(*) FROM inflight_records WHERE batch_id = ? "
            "OR (batch_id IS NULL AND display_name = ?)",
            (batch_id, batch_id),
        ).fetchone()[0]
        w.append(decide(batch_id, reason, active=bool(active), intent=bool(intent)), actor=actor)
    return Cleared(batch_id, "batch" if active else "intent", held)
