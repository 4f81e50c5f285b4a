"""``clear-batch``'s decision (pure): an operator gives up on an active batch or an open
submission; anything else is refused, naming it."""

from __future__ import annotations

from eventlog.errors import NothingMatched
from eventlog.events import BatchCleared, Event

__all__ = ["decide"]


def decide(batch_id: str, reason: str, *, active: bool, intent: bool) -> list[Event]:
    """The events clearing ``batch_id`` appends (pure)."""
    if not active and not intent:
        raise NothingMatched(
            f"no active batch or open submission named {batch_id!r} "
            "(see `python -m commands status`)"
        )
    return [BatchCleared(batch_id=batch_id, reason=reason)]
