"""Keeps the projection tables in step with the log, rebuilds them, and verifies them.

Projections are folded in the order of :data:`PROJECTIONS`; a fold may read the tables of a
projection listed before it (already updated for the same event), never one after it.

The projection tables refuse writes from outside the projector: every INSERT, UPDATE and DELETE
trigger checks ``projection_gate.open``, which the projector sets to 1 only inside its own write
transaction and back to 0 before commit. A raw ``DELETE FROM active_batches ...`` from the
``sqlite3`` shell therefore fails with a message naming ``clear-batch``.

One projector for both backends: the connection's ``dialect`` (``sqlite``, or ``postgresql``
for :mod:`eventlog.postgres`) picks the DDL, the refusing triggers (SQLite ``RAISE(ABORT)``;
PostgreSQL a statement-level plpgsql trigger, TRUNCATE included), the row store
(:class:`SqliteTables` or :class:`PostgresTables`) and the bulk load of a rebuild (``COPY`` on
PostgreSQL). The gate and the checkpoints are the same; so is ``verify``
(:mod:`projections.verification`: a scratch SQLite database on disk, compared row for row with
either backend's live tables).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

from eventlog import crashpoints
from eventlog.events import ALL_EVENT_TYPES, Event
from eventlog.store import Connection, EventStore, Recorded
from projections import (
    abandoned_batches,
    active_batches,
    batch_partitions,
    batch_record_keys,
    dataset_counts,
    dead_letters,
    deferred_submissions,
    documents,
    failure_counts,
    failure_logs,
    finished_jobs,
    hourly_activity,
    inflight_records,
    leases,
    record_counts,
    record_status,
    rejected_inputs,
    runs,
    snapshots,
    submission_intents,
    submission_quota,
    token_usage,
    upload_budget,
    uploaded_files,
    workers,
)
from projections.tables import (
    MemoryTables,
    PostgresTables,
    SqliteTables,
    Tables,
    TableSpec,
    select_all,
)

PROJECTIONS = (
    abandoned_batches,
    finished_jobs,  # reads the active row the same event is about to remove
    active_batches,
    batch_record_keys,
    submission_intents,
    deferred_submissions,
    submission_quota,
    record_counts,  # written by record_status's fold (its own does nothing)
    record_status,  # reads inflight_records before it folds the same event
    inflight_records,
    failure_counts,
    failure_logs,
    rejected_inputs,
    documents,
    dataset_counts,
    hourly_activity,
    runs,
    token_usage,
    uploaded_files,
    upload_budget,
    dead_letters,
    leases,
    workers,
    batch_partitions,
)
SPECS: tuple[TableSpec, ...] = tuple(p.SPEC for p in PROJECTIONS)
#: Every table the projections keep beside the log: theirs, the gate, the checkpoints and the
#: replay snapshots (what ``nuke`` drops from a PostgreSQL database with the log).
TABLE_NAMES: tuple[str, ...] = (
    *(spec.name for spec in SPECS),
    "projection_gate",
    "projection_checkpoints",
    snapshots.TABLE,
)

#: Bump when a fold's logic changes without its tables changing; the DDL is hashed in as well,
#: so any table change also triggers a rebuild from the log when a database is next opened.
FOLD_VERSION = 1
_DDL = "\n".join(s.ddl() for s in SPECS)
PROJECTION_VERSION = f"{FOLD_VERSION}:{hashlib.sha256(_DDL.encode()).hexdigest()[:16]}"

_GATE = "projection_gate"
_CHECKPOINTS = "projection_checkpoints"
_VERSION_SQL = "SELECT value FROM meta WHERE key = 'projection_version'"
_CHECKPOINT_SQL = f"SELECT min(seq) FROM {_CHECKPOINTS}"


def _stale(version_row: tuple[Any, ...] | None) -> bool:
    return version_row is None or version_row[0] != PROJECTION_VERSION


def _checkpoint(row: tuple[Any, ...] | None) -> int:
    return (row[0] if row else 0) or 0


def checkpoint_of(store: EventStore) -> int:
    """The last sequence number every projection has folded (read-only)."""
    return _checkpoint(store.query_one(_CHECKPOINT_SQL))


def _handlers(event_type: type[Event]) -> tuple[Callable[..., None], ...]:
    """The folds that do something with ``event_type``, in projection order (each projection's
    ``apply`` is a singledispatch whose default does nothing)."""
    out = []
    for projection in PROJECTIONS:
        fn = projection.apply.dispatch(event_type)
        if fn is not projection.apply.dispatch(object):
            out.append(fn)
    return tuple(out)


#: Event type -> the folds to run: resolved once, not per event (the rebuild's hot path).
HANDLERS: dict[type[Event], tuple[Callable[..., None], ...]] = {
    t: _handlers(t) for t in ALL_EVENT_TYPES
}


def handlers(event_type: type[Event]) -> tuple[Callable[..., None], ...]:
    """The folds of ``event_type``, in projection order (resolved once per type)."""
    fns = HANDLERS.get(event_type)
    if fns is None:
        fns = HANDLERS[event_type] = _handlers(event_type)
    return fns


def evolve(tables: Tables, rec: Recorded) -> None:
    """Fold one recorded event into every projection, in order."""
    event = rec.event
    handlers = HANDLERS.get(type(event))
    if handlers is None:
        handlers = HANDLERS[type(event)] = _handlers(type(event))
    for fn in handlers:
        fn(event, tables, rec)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while folding millions of small, acyclic objects:
    its generational passes would otherwise rescan them again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


#: (spec, event fields) for each table with :attr:`TableSpec.prefetch`.
_PREFETCH = tuple((spec, spec.prefetch) for spec in SPECS if spec.prefetch)


def hint_reads(tables: Tables, records: Sequence[Recorded]) -> None:
    """Name to ``tables`` the rows the folds of ``records`` may read (see ``prefetch``)."""
    for spec, fields in _PREFETCH:
        keys: set[Any] = set()
        for rec in records:
            event = rec.event
            for name in fields:
                value = getattr(event, name, None)
                if value is None:
                    continue
                if isinstance(value, str):
                    keys.add(value)
                else:
                    keys.update(value)
        tables.hint(spec, keys)


class Folded(msgspec.Struct):
    """A whole-log fold: the tables, the last sequence number, and the audit snapshots taken at
    every multiple of ``snapshots.EVERY`` on the way (sequence number, bytes, digest)."""

    tables: MemoryTables
    last: int
    snapshots: list[tuple[int, bytes, str]]


def fold(records: Iterable[Recorded], *, with_snapshots: bool = False) -> Folded:
    """Fold ``records`` into fresh in-memory tables."""
    tables = MemoryTables(SPECS)
    last = 0
    taken: list[tuple[int, bytes, str]] = []
    chain = snapshots.Chain()
    handlers, every = HANDLERS, snapshots.EVERY
    with gc_paused():
        for rec in records:  # evolve(), inlined: this loop runs once per event of the log
            event = rec.event
            fns = handlers.get(type(event))
            if fns is None:
                fns = handlers[type(event)] = _handlers(type(event))
            for fn in fns:
                fn(event, tables, rec)
            last = rec.seq
            if with_snapshots and last % every == 0:
                taken.append(chain.take_folded(last, tables))
    return Folded(tables, last, taken)


def _dialect(conn: Any) -> str:
    return str(getattr(conn, "dialect", "sqlite"))


_PG_GUARD = f"""
CREATE OR REPLACE FUNCTION gb_projection_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT open FROM {_GATE}) = 0 THEN
        RAISE EXCEPTION '%', TG_ARGV[0];
    END IF;
    RETURN NULL;
END $$;
"""


def _trigger_sql(spec_name: str, message: str, dialect: str = "sqlite") -> str:
    message = message.replace("'", "''")
    if dialect == "postgresql":
        return (
            f"CREATE TRIGGER {spec_name}_refuse BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {spec_name} FOR EACH STATEMENT EXECUTE FUNCTION gb_projection_guard('{message}');"
        )
    parts = []
    for op in ("INSERT", "UPDATE", "DELETE"):
        parts.append(
            f"CREATE TRIGGER {spec_name}_refuse_{op.lower()} BEFORE {op} ON {spec_name} "
            f"WHEN (SELECT open FROM {_GATE}) = 0 "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END;"
        )
    return "\n".join(parts)


class SqlProjector:
    """The projector the store calls inside each append transaction (``eventlog.Projector``)."""

    def needs_install(self, conn: Connection) -> bool:
        return _stale(conn.execute(_VERSION_SQL).fetchone())

    def install(self, conn: Connection) -> None:
        """Drop the previous projection tables and create the current (empty) ones."""
        dialect = _dialect(conn)
        row = conn.execute("SELECT value FROM meta WHERE key = 'projection_tables'").fetchone()
        old = json.loads(row[0]) if row else []
        for name in [*old, _CHECKPOINTS, snapshots.TABLE, _GATE]:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
        strict = " STRICT" if dialect == "sqlite" else ""
        bigint = "INTEGER" if dialect == "sqlite" else "BIGINT"
        conn.execute(
            f"CREATE TABLE {_GATE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
            f"open INTEGER NOT NULL){strict};"
            f"INSERT INTO {_GATE} VALUES (1, 0);"
            f"CREATE TABLE {_CHECKPOINTS} (name TEXT PRIMARY KEY, seq {bigint} NOT NULL){strict};"
        )
        if dialect == "postgresql":
            conn.execute(_PG_GUARD)
        conn.execute(
            _trigger_sql(
                _CHECKPOINTS,
                f"{_CHECKPOINTS} is a projection of the event log and is not written directly: "
                "run `python -m commands rebuild-projections`",
                dialect,
            )
        )
        for spec in SPECS:
            conn.execute(spec.ddl(dialect))
            conn.execute(_trigger_sql(spec.name, spec.refuse_message(), dialect))
        conn.execute(snapshots.ddl(dialect))
        conn.execute(
            _trigger_sql(
                snapshots.TABLE,
                f"{snapshots.TABLE} is a projection of the event log and is not written directly: "
                "run `python -m commands rebuild-projections`",
                dialect,
            )
        )
        with self._gate(conn):
            conn.executemany(
                f"INSERT INTO {_CHECKPOINTS} VALUES (?, 0)", [(s.name,) for s in SPECS]
            )
        names = json.dumps([s.name for s in SPECS])
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [("projection_version", PROJECTION_VERSION), ("projection_tables", names)],
        )

    def catch_up(self, store: EventStore) -> None:
        """Install (and rebuild) when the projection version changed, else fold the tail.

        Takes the write lock only when there is something to do."""
        if _stale(store.query_one(_VERSION_SQL)):
            with store.write() as w:
                conn = w.conn
                if self.needs_install(conn):
                    self.install(conn)
                    self.load(conn, fold(store.read(), with_snapshots=True))
            return
        if _checkpoint(store.query_one(_CHECKPOINT_SQL)) >= store.last_seq():
            return
        with store.write() as w:
            conn = w.conn
            batch: list[Recorded] = []
            for rec in store.read(after_seq=self.checkpoint(conn)):
                batch.append(rec)
                if len(batch) >= 5_000:
                    self.apply(conn, batch)
                    batch = []
            self.apply(conn, batch)

    def checkpoint(self, conn: Connection) -> int:
        return _checkpoint(conn.execute(_CHECKPOINT_SQL).fetchone())

    def apply(self, conn: Connection, records: Sequence[Recorded]) -> None:
        if not records:
            return
        tables = PostgresTables(conn) if _dialect(conn) == "postgresql" else SqliteTables(conn)
        if len(records) > 1:
            hint_reads(tables, records)
        with self._gate(conn):
            for i, rec in enumerate(records):
                evolve(tables, rec)
                if i == 0 and crashpoints.active():
                    tables.flush()  # the first event's rows are written when the kill comes
                    crashpoints.reach("during_projection_update")
            tables.flush()
            last = records[-1].seq
            conn.execute(f"UPDATE {_CHECKPOINTS} SET seq = ?", (last,))
            if snapshots.crossed(records[0].seq, last):
                snapshots.store_from_live(conn, last)

    def load(self, conn: Connection, folded: Folded) -> None:
        """Replace every projection row, and the snapshots, with a fold's (inside the caller's
        transaction)."""
        copy_rows = getattr(conn, "copy_rows", None)  # PostgreSQL's COPY, when there is one
        with self._gate(conn):
            for spec in SPECS:
                conn.execute(f"DELETE FROM {spec.name}")
                if copy_rows is not None:
                    copy_rows(spec.name, spec.columns, folded.tables.rows(spec))
                    continue
                marks = ", ".join("?" for _ in spec.columns)
                conn.executemany(
                    f"INSERT INTO {spec.name} VALUES ({marks})", folded.tables.rows(spec)
                )
            conn.execute(f"DELETE FROM {snapshots.TABLE}")
            for seq, blob, digest in folded.snapshots:
                snapshots.store_blob(conn, seq, blob, digest)
            conn.execute(f"UPDATE {_CHECKPOINTS} SET seq = ?", (folded.last,))

    @staticmethod
    @contextlib.contextmanager
    def _gate(conn: Connection) -> Iterator[None]:
        conn.execute(f"UPDATE {_GATE} SET open = 1")
        try:
            yield
        finally:
            conn.execute(f"UPDATE {_GATE} SET open = 0")


PROJECTOR = SqlProjector()


def rebuild(store: EventStore) -> int:
    """Rebuild every projection table from the whole log in one write transaction.

    Atomic: readers see the old rows or the new ones, never a mix. Returns the last sequence
    number folded.
    """
    with store.write() as w:
        if PROJECTOR.needs_install(w.conn):
            PROJECTOR.install(w.conn)
        folded = fold(store.read(), with_snapshots=True)
        PROJECTOR.load(w.conn, folded)
    return folded.last


def snapshot_rows(store: EventStore) -> dict[str, list[tuple[Any, ...]]]:
    """Every projection table's rows in primary-key order (for tests and replay comparisons).

    Read-only, one statement per table: wrap it in ``store.snapshot()`` for one consistent view."""
    return {spec.name: [tuple(r) for r in store.rows(select_all(spec))] for spec in SPECS}


def memory_rows(tables: MemoryTables) -> dict[str, list[tuple[Any, ...]]]:
    """The same shape as :func:`snapshot_rows`, from in-memory tables."""
    return {spec.name: list(tables.rows(spec)) for spec in SPECS}
