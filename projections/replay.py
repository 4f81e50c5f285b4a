"""Replay: the projections as they stood at any point of the log, folded in memory.

Read-only and lock-free: the log is read in bounded chunks, each its own short read transaction,
and nothing is written. ``replay.py`` is a thin shell over these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec

from eventlog.errors import ReplayRangeError
from eventlog.events import Event, record_keys_of
from eventlog.store import EVENT_COLUMNS, EventStore, RawRow
from eventlog.timestamps import format_ts
from projections.projector import fold
from projections.snapshots import AUDIT_VIEWS, replay_views
from projections.tables import MemoryTables, TableSpec

#: What ``--show`` prints, name -> table; each folds on its own, from the newest snapshot
#: (derived from :data:`projections.snapshots.AUDIT_VIEWS`).
VIEWS: dict[str, TableSpec] = {name: p.SPEC for name, p in AUDIT_VIEWS.items()}


def resolve_until(store: EventStore, until: str | None, now: datetime | None = None) -> int:
    """Turn ``--until`` (a sequence number or an ISO 8601 time) into a sequence number.

    Raises :class:`ReplayRangeError` for an empty log, a point before the first event, or one in
    the future.
    """
    bounds = store.bounds()
    if bounds is None:
        raise ReplayRangeError(f"the log is empty: nothing to replay in {store.path}")
    (first_seq, first_ts), (last_seq, _) = bounds
    if until is None:
        return last_seq
    text = until.strip()
    if text.isdigit():
        seq = int(text)
        if seq < first_seq:
            raise ReplayRangeError(f"--until {seq} is before the first event ({first_seq})")
        if seq > last_seq:
            raise ReplayRangeError(
                f"--until {seq} is in the future: the log ends at sequence {last_seq}"
            )
        return seq
    moment = parse_time(text)
    now = now or datetime.now(UTC)
    if moment > now:
        raise ReplayRangeError(f"--until {text} is in the future (now is {format_ts(now)})")
    ts = format_ts(moment)
    if ts < first_ts:
        raise ReplayRangeError(f"--until {text} is before the first event (at {first_ts})")
    return store.seq_at(ts)


def parse_time(text: str) -> datetime:
    """ISO 8601; ``Z`` or an offset; a time without one is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReplayRangeError(
            f"--until {text!r} is neither a sequence number nor an ISO 8601 time "
            "(e.g. 2026-11-28T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def replay_for_views(store: EventStore, until_seq: int) -> MemoryTables:
    """The ``--show`` views as of ``until_seq``: the newest snapshot plus the events after it,
    so the cost does not grow with the log."""
    return replay_views(store, until_seq)[0]


def replay(store: EventStore, until_seq: int) -> MemoryTables:
    """Every projection, folded from the first event up to and including ``until_seq``."""
    return fold(store.read(until_seq=until_seq)).tables


def view(tables: MemoryTables, name: str) -> list[dict[str, Any]]:
    """One ``--show`` view as a list of row dicts."""
    spec = VIEWS[name]
    return [dict(zip(spec.columns, r, strict=True)) for r in tables.rows(spec)]


class HistoryEntry(msgspec.Struct, frozen=True):
    seq: int
    ts: str
    type: str
    actor: str
    event: dict[str, Any]


#: A record's own events (its stream) and those that name it in a list, up to a sequence
#: number: lookups in ``events_by_stream`` and ``event_record_keys`` (``eventlog.record_index``).
RECORD_SQL = (
    f"SELECT {EVENT_COLUMNS} FROM events WHERE seq IN "
    "(SELECT seq FROM events WHERE stream = ? UNION "
    "SELECT seq FROM event_record_keys WHERE record_key = ?) AND seq <= ? ORDER BY seq"
)


def streams_sql(n: int) -> str:
    """The events of ``n`` streams (``?`` each, then the last sequence number), in order."""
    marks = ", ".join("?" for _ in range(n))
    return f"SELECT {EVENT_COLUMNS} FROM events WHERE stream IN ({marks}) AND seq <= ? ORDER BY seq"


def record_history(store: EventStore, key: str, until_seq: int) -> list[HistoryEntry]:
    """Every event up to ``until_seq`` that names ``key`` or concerns a batch that held it
    (from the event that put it there on). Read-only; index lookups, whatever the log's length:
    the record's own events and those listing it, then the events of the batches they name."""
    named = [RawRow(*r) for r in store.query(RECORD_SQL, (key, key, until_seq))]
    decode = store.registry.decode
    batches: set[str] = set()
    for raw in named:
        event = decode(raw.type, raw.version, raw.payload, raw.seq)
        if key in record_keys_of(event):
            batches.update(_batch_streams(event))
    seen = {raw.seq for raw in named}
    wanted = sorted(batches)
    for i in range(0, len(wanted), 500):
        part = wanted[i : i + 500]
        for row in store.query(streams_sql(len(part)), (*part, until_seq)):
            if row[0] not in seen:
                seen.add(row[0])
                named.append(RawRow(*row))
    return _history(sorted(named, key=lambda r: r.seq), key, decode)


def _batch_streams(event: Event) -> list[str]:
    """The batch streams (id, display name) an event that names a record puts it in."""
    return [v for v in (getattr(event, a, None) for a in ("batch_id", "display_name")) if v]


def _history(raws: Iterable[RawRow], key: str, decode: Any) -> list[HistoryEntry]:
    """The entries of ``raws`` (in sequence order) that name ``key``, or belong to a batch that
    an earlier entry put it in."""
    batches: set[str] = set()
    out: list[HistoryEntry] = []
    for raw in raws:
        if key not in raw.payload and raw.stream not in batches:
            continue
        event = decode(raw.type, raw.version, raw.payload, raw.seq)
        if key in record_keys_of(event):
            batches.update(_batch_streams(event))
        elif raw.stream not in batches:
            continue
        data = msgspec.to_builtins(event)
        if "record_keys" in data:
            data["record_keys"] = f"{len(data['record_keys'])} keys"
        out.append(HistoryEntry(raw.seq, raw.ts, raw.type, raw.actor, data))
    return out
