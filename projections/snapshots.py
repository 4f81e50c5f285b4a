"""Checkpointed snapshots of the audit views, so ``replay.py --until`` any point of a long log
costs one chain of snapshots plus at most :data:`EVERY` events, whatever the log's length.

The views an audit prints (:data:`AUDIT_VIEWS`, the one list of them) are small and fold on
their own. Each time the log crosses a multiple of :data:`EVERY`, the projector stores them,
compressed, either in full or as a **delta**: the rows that changed since the snapshot before
it and the keys that went. A delta is taken while the deltas since the last full snapshot stay
within :data:`REBASE` times that full snapshot's bytes; past that, a full one is. So:

* the table grows with the log, not with its square: a view that grows with the log (every
  failure so far) is stored once per change, and the full snapshots it drags along are spaced
  further apart as they grow (their bytes sum to about twice the deltas' at most);
* a replay reads one full snapshot and the deltas after it (together at most about twice a
  full snapshot), then folds the events after the last of them.

Each snapshot carries the hash chain's value at its sequence number (a snapshot of a log that
was since rewritten no longer matches, and is not used) and a sha256 of its bytes (a damaged
snapshot is not used either, nor any delta after it); ``replay.py --verify-snapshots`` refolds
the log and names the first snapshot that differs (:mod:`projections.snapshot_check`).
A snapshot written before deltas existed is a full one, and loads as one.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType
from typing import Any

import msgspec

from eventlog.store import Connection, EventStore, Recorded
from projections import active_batches, dead_letters, failure_counts, inflight_records
from projections.tables import MemoryTables, Tables, TableSpec, read_rows

EVERY = 100_000
TABLE = "replay_snapshots"
#: A delta is stored while the deltas since the last full snapshot, this one included, stay
#: within this many times that full snapshot's bytes; else a full snapshot is.
REBASE = 1.0
#: The first frame of a delta: ``[DELTA, [[base]]]``, ``base`` the snapshot it applies to.
DELTA = "@delta"
#: A delta's frame of the keys gone from a table is named ``GONE + table``.
GONE = "-"
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
_KEY_COLUMNS = {spec.name: [spec.columns.index(c) for c in spec.pk] for spec in VIEW_SPECS}

#: A primary key, and the views' rows by table and key (values as tuples).
Key = tuple[Any, ...]
State = dict[str, dict[Key, tuple[Any, ...]]]
#: Runs one read statement: ``store.query``, or the write transaction's connection.
Query = Callable[[str, tuple[Any, ...]], list[tuple[Any, ...]]]

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
_SEQS = f"SELECT seq FROM {TABLE} WHERE seq <= ? ORDER BY seq DESC"
#: One snapshot, with the chain's hash at its point (NULL when the log has no such event).
ONE = (
    f"SELECT s.state, s.digest, s.chain_hash, e.hash FROM {TABLE} s "
    "LEFT JOIN events e ON e.seq = s.seq WHERE s.seq = ?"
)


def ddl(dialect: str) -> str:
    return PG_DDL if dialect == "postgresql" else DDL


#: What reading a snapshot whose bytes were not written by :func:`_pack` may raise.
UNREADABLE = (ValueError, TypeError, zlib.error, msgspec.DecodeError)

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


def frames(blob: bytes) -> Iterator[tuple[str, list[Any]]]:
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


def base_of(blob: bytes) -> int | None:
    """The snapshot a delta applies to; None for a full snapshot (read from its first frame)."""
    for name, rows in frames(blob):
        return int(rows[0][0]) if name == DELTA else None
    return None


def key_of(name: str, row: tuple[Any, ...]) -> Key:
    """The primary key of a view's row; ``ValueError`` for a table that is not a view, or a row
    too short to hold its key."""
    return _keyed(name, [row])[0][0]


def _keyed(name: str, rows: Iterable[Any]) -> list[tuple[Key, tuple[Any, ...]]]:
    """(key, row as a tuple) for rows of the view ``name``; ``ValueError`` for a table that is
    not a view, or a row too short to hold its key."""
    columns = _KEY_COLUMNS.get(name)
    if columns is None:
        raise ValueError(f"a snapshot names no view {name!r}")
    need = max(columns)
    out = []
    for values in rows:
        row = tuple(values)
        if len(row) <= need:
            raise ValueError(f"a snapshot holds a short row of {name}: {row!r}")
        out.append((tuple([row[i] for i in columns]), row))
    return out


def empty() -> State:
    return {spec.name: {} for spec in VIEW_SPECS}


def changes(blob: bytes) -> Iterator[tuple[str, list[tuple[Key, tuple[Any, ...] | None]]]]:
    """(view, [(key, row), ...]) for each frame of rows a snapshot holds; row None for a key a
    delta drops."""
    for name, rows in frames(blob):
        if name == DELTA:
            continue
        if not name.startswith(GONE):
            yield name, list(_keyed(name, rows))
            continue
        view = name[len(GONE) :]
        width = len(_KEY_COLUMNS.get(view, ()))
        if not width or any(len(key) != width for key in rows):
            raise ValueError(f"a snapshot drops malformed keys of {view!r}")
        yield view, [(tuple(key), None) for key in rows]


def apply(state: State, blob: bytes) -> None:
    """Apply a snapshot to ``state`` in place: a full one's rows (``state`` starts empty), or a
    delta's changes, all read before any is applied (a delta that does not decode changes
    nothing). Raises one of :data:`UNREADABLE`."""
    found = changes(blob)
    if base_of(blob) is not None:
        found = iter(list(found))
    for view, pairs in found:
        table = state[view]
        for key, row in pairs:
            if row is None:
                table.pop(key, None)
            else:
                table[key] = row


def _full_frames(state: State) -> Iterator[tuple[str, Iterable[Any]]]:
    for spec in VIEW_SPECS:
        rows = state[spec.name]
        yield spec.name, (rows[key] for key in sorted(rows))


def _delta_frames(base: int, before: State, after: State) -> Iterator[tuple[str, Iterable[Any]]]:
    """A delta's frames: its base, then each view's changed rows and gone keys (none when
    there are none)."""
    yield DELTA, [[base]]
    for spec in VIEW_SPECS:
        old, new = before[spec.name], after[spec.name]
        changed = [new[key] for key in sorted(new) if old.get(key) != new[key]]
        gone = sorted(old.keys() - new.keys())
        if changed:
            yield spec.name, changed
        if gone:
            yield GONE + spec.name, gone


class Tip(msgspec.Struct):
    """The newest snapshot of a chain, as the next one is taken against it: its point, the
    views then, and the bytes of its chain's full snapshot and of the deltas since."""

    seq: int
    state: State
    full_bytes: int
    delta_bytes: int


class Chain:
    """Takes each snapshot in turn: a delta on the one before, or a full one (:data:`REBASE`)."""

    def __init__(self, tip: Tip | None = None) -> None:
        self.tip = tip

    def take(self, seq: int, state: State) -> tuple[bytes, str]:
        """The snapshot of ``state`` at ``seq`` (its bytes and digest); it becomes the tip."""
        tip = self.tip
        if tip is not None:
            blob, digest = _pack(_delta_frames(tip.seq, tip.state, state))
            if tip.delta_bytes + len(blob) <= REBASE * tip.full_bytes:
                self.tip = Tip(seq, state, tip.full_bytes, tip.delta_bytes + len(blob))
                return blob, digest
        blob, digest = _pack(_full_frames(state))
        self.tip = Tip(seq, state, len(blob), 0)
        return blob, digest

    def take_folded(self, seq: int, tables: MemoryTables) -> tuple[int, bytes, str]:
        """The snapshot of an in-memory fold's views at ``seq`` (a rebuild's)."""
        astuple = msgspec.structs.astuple
        state = {
            spec.name: {key: astuple(row) for key, row in tables.data[spec.name].items()}
            for spec in VIEW_SPECS
        }
        return (seq, *self.take(seq, state))


def _good_blob(query: Query, seq: int) -> bytes | None:
    """The bytes of snapshot ``seq``, or None when they or its chain hash do not match."""
    found = query(ONE, (seq,))
    if not found:
        return None
    blob, digest, chain, event_hash = found[0]
    blob = bytes(blob)
    if chain != event_hash or hashlib.sha256(blob).hexdigest() != digest:
        return None
    return blob


def _chain(query: Query, seq: int) -> tuple[list[tuple[int, bytes]], int | None]:
    """From snapshot ``seq`` down each delta's base to a full snapshot: the chain, oldest
    first; or, when a snapshot on the way is missing or bad, no chain and that snapshot."""
    down: list[tuple[int, bytes]] = []
    at: int | None = seq
    while at is not None:
        blob = _good_blob(query, at)
        try:
            base = base_of(blob) if blob is not None else at
        except UNREADABLE:
            base = at
        if blob is None or (base is not None and base >= at):
            return [], at
        down.append((at, blob))
        at = base
    return down[::-1], None


def _replayed(chain: list[tuple[int, bytes]]) -> Tip | None:
    """The views at the newest snapshot of ``chain`` (oldest first, a full one first) that
    applies on the one before it."""
    tip: Tip | None = None
    for seq, blob in chain:
        try:
            if tip is None:
                state = empty()
                apply(state, blob)
                tip = Tip(seq, state, len(blob), 0)
            else:
                apply(tip.state, blob)
                tip = Tip(seq, tip.state, tip.full_bytes, tip.delta_bytes + len(blob))
        except UNREADABLE:
            break  # a delta changes nothing unless it all decodes
    return tip


def load(query: Query, until_seq: int, tries: int = 3) -> Tip | None:
    """The views at the newest snapshot at or before ``until_seq`` that good snapshots lead to
    (a full one, then deltas each on the one before); None when there is none. Where a
    snapshot is bad (bytes, chain hash) or gone, the newest one below it is tried instead:
    ``tries`` times at most."""
    seqs = [r[0] for r in query(_SEQS, (until_seq,))]
    i = 0
    while tries and i < len(seqs):
        tries -= 1
        chain, bad = _chain(query, int(seqs[i]))
        tip = _replayed(chain) if chain else None
        if tip is not None:
            return tip
        below = bad if bad is not None else int(seqs[i])
        while i < len(seqs) and seqs[i] >= below:
            i += 1
    return None


def _tables(state: State) -> MemoryTables:
    tables = MemoryTables(VIEW_SPECS)
    for spec in VIEW_SPECS:
        make = spec.row
        for values in state[spec.name].values():
            tables.put(spec, make(*values))
    return tables


def store_from_live(conn: Connection, seq: int) -> None:
    """Snapshot the live view tables (inside the append transaction that reached ``seq``): a
    delta on the newest good snapshot before it, or a full one."""

    def query(sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return list(conn.execute(sql, params).fetchall())

    state: State = {}
    for spec in VIEW_SPECS:
        rows = map(tuple, read_rows(conn, spec))
        state[spec.name] = {key_of(spec.name, row): row for row in rows}
    blob, digest = Chain(load(query, seq - 1)).take(seq, state)
    store_blob(conn, seq, blob, digest)


def store_blob(conn: Connection, seq: int, blob: bytes, digest: str) -> None:
    """Store one snapshot taken at ``seq`` (inside the caller's write transaction)."""
    found = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq,)).fetchone()
    if found is None:
        raise ValueError(f"no event {seq} to take a snapshot at")
    conn.execute(
        f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET "
        "chain_hash = excluded.chain_hash, digest = excluded.digest, state = excluded.state",
        (seq, found[0], digest, blob),
    )


def latest(store: EventStore, until_seq: int) -> tuple[int, MemoryTables | None]:
    """The views at the newest usable snapshot at or before ``until_seq`` (0, None when there
    is none); see :func:`load`."""
    if not store.has_table(TABLE):  # a log written before snapshots existed
        return 0, None
    tip = load(lambda sql, params: store.query(sql, params), until_seq)
    return (0, None) if tip is None else (tip.seq, _tables(tip.state))


_VIEW_FOLDS: dict[type, list[Callable[..., None]]] = {}


def view_folds(event_type: type) -> list[Callable[..., None]]:
    """The audit views' folds of ``event_type``, in view order."""
    fns = _VIEW_FOLDS.get(event_type)
    if fns is None:
        fns = _VIEW_FOLDS[event_type] = [
            p.apply.dispatch(event_type)
            for p in VIEW_PROJECTIONS
            if p.apply.dispatch(event_type) is not p.apply.dispatch(object)
        ]
    return fns


def fold_views(records: Iterable[Recorded], tables: Tables | None = None) -> Tables:
    """Fold only the audit views (they read no other projection)."""
    from projections.projector import gc_paused

    tables = tables or MemoryTables(VIEW_SPECS)
    with gc_paused():
        for rec in records:
            event = rec.event
            for fn in view_folds(type(event)):
                fn(event, tables, rec)
    return tables


def replay_views(store: EventStore, until_seq: int) -> tuple[MemoryTables, int]:
    """The audit views as of ``until_seq``: the newest good snapshot, then the events after it.
    Returns the tables and the snapshot's sequence number (0: folded from the start)."""
    base, tables = latest(store, until_seq)
    tables = tables or MemoryTables(VIEW_SPECS)
    fold_views(store.read(after_seq=base, until_seq=until_seq), tables)
    return tables, base


def verify(store: EventStore) -> BadSnapshot | None:
    """Refold the views from the log and check each snapshot; the first that differs."""
    from projections.snapshot_check import verify_views

    return verify_views(store)
