"""``clear-batch``: an operator gives up on a stuck batch (or an open submission intent).

The batch's records are freed and will be submitted again next cycle. The job on the service is
not cancelled unless asked (:func:`cancel_on_service`, ``--cancel``): left alone, it may still run
and bill, and if it later succeeds its results are adopted or discarded by the first-result rule
(first result per record wins).
"""

from __future__ import annotations

import msgspec

from commands.errors import GatewayError
from commands.gemini.port import GeminiPort
from commands.rules.clear_batch import decide
from eventlog import crashpoints
from eventlog.errors import OperatorError
from eventlog.store import EventStore
from projections import queries


class Cleared(msgspec.Struct, frozen=True):
    batch_id: str
    kind: str  # "batch" or "intent"
    records_freed: int


def clear_batch(store: EventStore, batch_id: str, *, reason: str, actor: str) -> Cleared:
    """Append the clear in one write transaction; raises :class:`NothingMatched` if unknown."""
    with store.write() as w:  # the reads see the state the clear is appended to
        active = queries.is_active_batch(store, batch_id)
        intent = queries.has_open_intent(store, batch_id)
        held = queries.count_held_records(store, batch_id)
        w.append(decide(batch_id, reason, active=active, intent=intent), actor=actor)
    return Cleared(batch_id, "batch" if active else "intent", held)


def batch_project(store: EventStore, batch_id: str) -> str | None:
    """The project (API key) the active batch ``batch_id`` was created with; None if it is not
    active (read-only)."""
    return next((b.project for b in queries.active_batches(store) if b.batch_id == batch_id), None)


def cancel_on_service(store: EventStore, port: GeminiPort, batch_id: str) -> None:
    """Ask the service to cancel the active batch ``batch_id`` (idempotent; nothing is appended:
    the clear that follows records it). An unknown or inactive batch raises
    :class:`NothingMatched` before any call; a failed cancel raises :class:`OperatorError`, so
    the caller clears nothing (a cancelled job that is not cleared ends as CANCELLED at the
    next poll, its records freed then)."""
    if not queries.is_active_batch(store, batch_id):
        if queries.has_open_intent(store, batch_id):
            return  # an intent has no job on the service yet (or one the next run adopts)
        decide(batch_id, "", active=False, intent=False)  # raises NothingMatched
    try:
        port.cancel_batch(batch_id)
    except GatewayError as e:
        raise OperatorError(
            f"cannot cancel {batch_id} on the service ({e}); nothing was cleared: "
            "try again, or clear it without --cancel"
        ) from None
    # Cancelled there, not yet cleared here: a crash now leaves an active batch the next poll
    # sees as CANCELLED, which frees its records.
    crashpoints.reach("after_service_cancel")
