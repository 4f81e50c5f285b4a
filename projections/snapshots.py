"""Checkpointed snapshots of the audit views, so ``replay.py --until`` any point of a long log
costs one snapshot plus at most :data:`EVERY` events, whatever the log's length.

The views an audit prints (:data:`AUDIT_VIEWS`, the one list of them) are small and fold on
their own. Each time the log crosses a multiple of
:data:`EVERY`, the projector stores them as they stand, compressed, with:

* the hash chain's value at that sequence number: a snapshot of a log that was since rewritten
  no longer matches, and is not used;
* a sha256 of its bytes: a damaged snapshot is not used either;

and ``replay.py --verify-snapshots`` refolds the log and names the first snapshot that differs.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

import msgspec

from eventlog.store import Connection, EventStore, Recorded
from projections import active_batches, dead_letters, failure_counts, inflight_records
from projections.tables import MemoryTables, TableSpec, read_rows

EVERY = 100_000
TABLE = "replay_snapshots"
#: The audit views, by the name ``replay.py --show`` takes, in the order a snapshot stores them.
#: Each folds without reading another projection. ``projections.replay.VIEWS`` derives from it.
AUDIT_VIEWS: dict[str, ModuleType] = {
    "active-batches": active_batches,
    "inflight": inflight_records,
    "failures": failure_counts,
    "dead-letters": dead_letters,
}
VIEW_PROJECTIONS: tuple[ModuleType, ...] = tuple(AUDIT_VIEWS.values())
VIEW_SPECS: tuple[TableSpec, ...] = tuple(p.SPEC for p in VIEW_PROJECTIONS)

DDL = f"""
CREATE TABLE {TABLE} (
    seq        INTEGER PRIMARY KEY,
    chain_hash TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    state      BLOB    NOT NULL
) STRICT;
"""
PG_DDL = f"""
CREATE TABLE {TABLE} (
    seq        BIGINT  PRIMARY KEY,
    chain_hash TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    state      BYTEA   NOT NULL
);
"""


def ddl(dialect: str) -> str:
    return PG_DDL if dialect == "postgresql" else DDL


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class BadSnapshot(msgspec.Struct, frozen=True):
    seq: int
    reason: str


def crossed(first_seq: int, last_seq: int) -> bool:
    """Whether appending ``first_seq..last_seq`` crossed a multiple of :data:`EVERY`."""
    return last_seq // EVERY > (first_seq - 1) // EVERY


#: Rows per frame: a snapshot is written and read a frame at a time, so a huge view (a batch
#: of a million records in flight) never sits in memory whole, encoded or decoded.
FRAME_ROWS = 10_000


def _pack(rows_by_table: Iterable[tuple[str, Iterable[Any]]]) -> tuple[bytes, str]:
    """Length-prefixed msgpack frames of ``[table, rows]``, compressed as they are made."""
    z = zlib.compressobj(1)
    out: list[bytes] = []
    for name, rows in rows_by_table:
        frame: list[Any] = []
        for row in rows:
            frame.append(list(row))
            if len(frame) == FRAME_ROWS:
                out.append(z.compress(_frame(name, frame)))
                frame = []
        out.append(z.compress(_frame(name, frame)))
    out.append(z.flush())
    blob = b"".join(out)
    return blob, hashlib.sha256(blob).hexdigest()


def _frame(name: str, rows: list[Any]) -> bytes:
    body = _encoder.encode([name, rows])
    return len(body).to_bytes(4, "big") + body


def _frames(blob: bytes) -> Iterator[tuple[str, list[Any]]]:
    """The ``[table, rows]`` frames of a snapshot, decompressed as they are read."""
    z = zlib.decompressobj()
    buffer = b""
    for start in range(0, len(blob), 1 << 16):
        buffer += z.decompress(blob[start : start + (1 << 16)])
        while len(buffer) >= 4:
            size = int.from_bytes(buffer[:4], "big")
            if len(buffer) < 4 + size:
                break
            name, rows = _decoder.decode(buffer[4 : 4 + size])
            buffer = buffer[4 + size :]
            yield name, rows
    buffer += z.flush()
    if buffer:
        raise ValueError("a snapshot ends in the middle of a frame")


def store_from_live(conn: Connection, seq: int) -> None:
    """Snapshot the live view tables (inside the append transaction that reached ``seq``),
    streamed from the tables' cursors."""
    _insert(conn, seq, _pack((spec.name, read_rows(conn, spec)) for spec in VIEW_SPECS))


def view_rows(tables: MemoryTables) -> dict[str, list[Any]]:
    """The audit views' rows of an in-memory fold, as a snapshot holds them."""
    return {spec.name: [list(r) for r in tables.rows(spec)] for spec in VIEW_SPECS}


def store_rows(conn: Connection, seq: int, rows: dict[str, list[Any]]) -> None:
    """Store one snapshot taken at ``seq`` (inside the caller's write transaction)."""
    _insert(conn, seq, _pack(rows.items()))


def _insert(conn: Connection, seq: int, packed: tuple[bytes, str]) -> None:
    blob, digest = packed
    found = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
    if found is None:
        raise ValueError(f"no event {seq} to take a snapshot at")
    chain = found[0]
    conn.execute(
        f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET "
        "chain_hash = excluded.chain_hash, digest = excluded.digest, state = excluded.state",
        (seq, chain, digest, blob),
    )


def _contents(blob: bytes) -> dict[str, list[Any]]:
    data: dict[str, list[Any]] = {spec.name: [] for spec in VIEW_SPECS}
    for name, rows in _frames(blob):
        data.setdefault(name, []).extend(rows)
    return data


def _unpack(blob: bytes) -> MemoryTables:
    tables = MemoryTables(VIEW_SPECS)
    specs = {spec.name: spec for spec in VIEW_SPECS}
    for name, rows in _frames(blob):
        spec = specs[name]
        for values in rows:
            tables.put(spec, spec.row(*values))
    return tables


def latest(store: EventStore, until_seq: int) -> tuple[int, MemoryTables | None]:
    """The newest usable snapshot at or before ``until_seq`` (0, None when there is none).

    A snapshot whose bytes or chain hash do not match is skipped for an older one.
    """
    if not store.has_table(TABLE):  # a log written before snapshots existed
        return 0, None
    rows = store.query(
        f"SELECT s.seq, s.chain_hash, s.digest, s.state, e.hash FROM {TABLE} s "
        "JOIN events e ON e.seq = s.seq WHERE s.seq <= ? ORDER BY s.seq DESC LIMIT 3",
        (until_seq,),
    )
    for seq, chain, digest, blob, event_hash in rows:
        if chain == event_hash and hashlib.sha256(blob).hexdigest() == digest:
            return seq, _unpack(blob)
    return 0, None


def fold_views(records: Iterable[Recorded], tables: MemoryTables | None = None) -> MemoryTables:
    """Fold only the audit views (they read no other projection)."""
    from projections.projector import gc_paused

    tables = tables or MemoryTables(VIEW_SPECS)
    applies = [p.apply for p in VIEW_PROJECTIONS]
    handlers: dict[type, list[Any]] = {}
    with gc_paused():
        for rec in records:
            event = rec.event
            fns = handlers.get(type(event))
            if fns is None:
                fns = handlers[type(event)] = [
                    a.dispatch(type(event))
                    for a in applies
                    if a.dispatch(type(event)) is not a.dispatch(object)
                ]
            for fn in fns:
                fn(event, tables, rec)
    return tables


def replay_views(store: EventStore, until_seq: int) -> tuple[MemoryTables, int]:
    """The audit views as of ``until_seq``: the newest good snapshot, then the events after it.
    Returns the tables and the snapshot's sequence number (0: folded from the start)."""
    base, tables = latest(store, until_seq)
    return fold_views(store.read(after_seq=base, until_seq=until_seq), tables), base


def verify(store: EventStore) -> BadSnapshot | None:
    """Refold the views from the log and compare each snapshot; the first that differs."""
    snaps = store.query(
        f"SELECT s.seq, s.chain_hash, s.digest, s.state, e.hash FROM {TABLE} s "
        "LEFT JOIN events e ON e.seq = s.seq ORDER BY s.seq"
    )
    tables, at = MemoryTables(VIEW_SPECS), 0
    for seq, chain, digest, blob, event_hash in snaps:
        if event_hash != chain:
            return BadSnapshot(seq, "its chain hash does not match the log at that point")
        if hashlib.sha256(blob).hexdigest() != digest:
            return BadSnapshot(seq, "its bytes are damaged (digest mismatch)")
        tables = fold_views(store.read(after_seq=at, until_seq=seq), tables)
        at = seq
        want = view_rows(tables)
        try:
            got = _contents(blob)
        except (ValueError, zlib.error, msgspec.DecodeError):
            return BadSnapshot(seq, "its bytes do not decode")
        if got != want:
            return BadSnapshot(seq, "its rows differ from a fold of the log")
    return None
