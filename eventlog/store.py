"""The append-only event store: one SQLite file, one ``events`` table, a hash chain.

Guarantees:

* :meth:`EventStore.write` is one ``BEGIN IMMEDIATE`` transaction: everything appended inside it,
  and every projection row it causes, commits together or not at all (group commit).
* Sequence numbers are dense and strictly increasing; timestamps never go backwards (a clock that
  steps back is clamped to the last stored time), so ``--until TIME`` is a binary search.
* Each row's ``hash`` is ``sha256(previous hash || the row's own bytes)``; :meth:`verify_chain`
  names the first row that does not match.
* Reads (:meth:`read`) go in bounded chunks, each its own short read transaction, and never take
  the write lock.
* The connection is private: the read side asks through :meth:`EventStore.query` (and
  :meth:`~EventStore.query_one`, :meth:`~EventStore.rows`), and every statement runs inside
  the backend's error translation (:meth:`EventStore._errors`). Only the projector receives the
  connection, as :attr:`Writer.conn`, to fold rows into the same transaction.

The SQL here is the events table's own (append, read by sequence number), written with ``?``
placeholders; the SQLite settings, DDL and triggers live in :mod:`eventlog.connection` and
:mod:`eventlog.schema`. :mod:`eventlog.postgres` is the second backend: the same class with its
own connection (which translates the placeholders), transactions, schema and error translation.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import apsw
import msgspec

from eventlog import crashpoints, interrupts
from eventlog.chain import GENESIS_HASH, ChainBreak, chain_hash
from eventlog.connection import (
    DEFAULT_BUSY_TIMEOUT_MS,
    apply_settings,
    check_wal,
    connect,
    immediate,
    translate_sqlite_errors,
    wal_identity,
)
from eventlog.errors import DatabaseError, NotAnEventLog
from eventlog.events import REGISTRY, Event, EventRegistry
from eventlog.record_index import INSERT_KEY, keys_named_elsewhere
from eventlog.schema import SCHEMA_VERSION, check_schema, migrate
from eventlog.timestamps import format_ts

_sha256 = hashlib.sha256
DEFAULT_CHUNK = 5_000

EVENT_COLUMNS = "seq, ts, type, stream, actor, version, payload, hash"
INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
#: One ``events`` row as stored: the columns of :data:`EVENT_COLUMNS`, in order.
StoredRow = tuple[int, str, str, str, str, int, str, str]


class Recorded(msgspec.Struct, frozen=True, gc=False):
    """An event as stored: the envelope the store added, and the event itself."""

    seq: int
    ts: str
    type: str
    stream: str
    actor: str
    version: int
    event: Event
    hash: str


class RawRow(msgspec.Struct, frozen=True, array_like=True):
    """A row of ``events`` exactly as stored, for chain verification and raw dumps."""

    seq: int
    ts: str
    type: str
    stream: str
    actor: str
    version: int
    payload: str
    hash: str


class Connection(Protocol):
    """The store's connection as the projector sees it: apsw's, or :mod:`eventlog.postgres`'s
    adapter of the same shape (``execute`` returns an iterable cursor with ``fetchone`` and
    ``fetchall``; ``?`` placeholders)."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Any, /) -> Any: ...


class Projector(Protocol):
    """What the store calls to keep read models in step with the log (see ``projections``)."""

    def apply(self, conn: Connection, records: Sequence[Recorded]) -> None:
        """Fold ``records`` into the projection tables inside the caller's write transaction."""

    def catch_up(self, store: EventStore) -> None:
        """Install or rebuild the tables if needed, then fold any events past the checkpoint."""


def utc_now() -> datetime:
    return datetime.now(UTC)


class Writer:
    """Handle for one write transaction; see :meth:`EventStore.write`."""

    def __init__(self, store: EventStore, last_seq: int, last_ts: str, last_hash: str) -> None:
        self.store = store
        #: The connection this transaction runs on: handed to the projector (``projections``)
        #: so its rows commit with the events. Reads elsewhere go through :meth:`EventStore.query`.
        self.conn: Connection = store._conn
        self.last_seq = last_seq
        self._last_ts = last_ts
        self._last_hash = last_hash
        self.appended: list[Recorded] = []

    def append(self, events: Sequence[Event], *, actor: str) -> list[Recorded]:
        """Append ``events`` in order and fold them into the projections (same transaction)."""
        if not events:
            return []
        store = self.store
        if store.fence is not None and not self.appended:
            store.fence()  # inside the transaction: what it read cannot change before the commit
        ts = max(format_ts(store.clock()), self._last_ts)
        seq, prev = self.last_seq, self._last_hash
        rows: list[tuple[int, str, str, str, str, int, str, str]] = []
        keys: list[tuple[str, int]] = []
        recorded: list[Recorded] = []
        encode, type_info, sha256 = store.registry.encode, store.registry.type_info, _sha256
        tail = f"\x1f{actor}\x1f"
        for event in events:
            seq += 1
            type_, version = type_info[type(event)]
            stream = event.stream()
            raw = encode(event)
            # The same bytes as chain_hash() hashes, built in one go (this is the hot path).
            header = f"\x1f{seq}\x1f{ts}\x1f{type_}\x1f{stream}{tail}{version}\x1f"
            prev = sha256(b"".join((prev.encode(), header.encode(), raw))).hexdigest()
            payload = raw.decode()
            rows.append((seq, ts, type_, stream, actor, version, payload, prev))
            recorded.append(Recorded(seq, ts, type_, stream, actor, version, event, prev))
            keys.extend((key, seq) for key in keys_named_elsewhere(event, stream))
        with store._errors():
            store._insert_rows(rows, keys)
            if store.projector is not None:
                store.projector.apply(self.conn, recorded)
        self.last_seq, self._last_ts, self._last_hash = seq, ts, prev
        self.appended.extend(recorded)
        return recorded

    def copy(self, rows: Sequence[RawRow]) -> None:
        """Append rows of another log exactly as they were stored (sequence number, time, actor,
        payload bytes and hash), and fold them into the projections (same transaction).

        Refuses (``ValueError``) rows that do not continue this log: the next sequence number,
        the chain's hash recomputed over the previous row. For ``migrate-to-postgres``."""
        if not rows:
            return
        decode = self.store.registry.decode
        seq, prev = self.last_seq, self._last_hash
        recorded: list[Recorded] = []
        keys: list[tuple[str, int]] = []
        for r in rows:
            want = chain_hash(prev, r.seq, r.ts, r.type, r.stream, r.actor, r.version, r.payload)
            if r.seq != seq + 1 or want != r.hash:
                raise ValueError(f"event {r.seq} does not continue the log at event {seq}")
            ev = decode(r.type, r.version, r.payload, r.seq)
            recorded.append(Recorded(r.seq, r.ts, r.type, r.stream, r.actor, r.version, ev, r.hash))
            keys.extend((key, r.seq) for key in keys_named_elsewhere(ev, r.stream))
            seq, prev = r.seq, r.hash
        with self.store._errors():
            self.store._insert_rows([tuple(msgspec.structs.astuple(r)) for r in rows], keys)
            if self.store.projector is not None:
                self.store.projector.apply(self.conn, recorded)
        self.last_seq, self._last_ts, self._last_hash = seq, rows[-1].ts, prev


def _create_atomically(path: Path, projector: Projector | None, registry: EventRegistry) -> None:
    """Build a new, empty log beside ``path`` and link it into place, so another process never
    sees a half-made database (an empty file, or tables without their schema version)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp}{suffix}").unlink(missing_ok=True)
    conn = connect(tmp, create=True)
    try:
        with translate_sqlite_errors(tmp):
            apply_settings(conn)
            migrate(conn)
            if projector is not None:
                projector.catch_up(EventStore(conn, tmp, registry=registry, projector=projector))
    finally:
        conn.close()
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs is as good
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


class EventStore:
    """The event log in one SQLite file. Open with :meth:`open`; close with :meth:`close`."""

    #: ``sqlite`` or ``postgresql``: the SQL dialect of the connection (for the projector's DDL).
    dialect = "sqlite"

    def __init__(
        self,
        conn: apsw.Connection,
        path: Path,
        *,
        registry: EventRegistry = REGISTRY,
        projector: Projector | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._conn = conn
        self.path = path
        self.registry = registry
        self.projector = projector
        self.clock = clock
        #: Called inside each write transaction before its first append; it raises to refuse
        #: the append (the transaction rolls back). A shared-mode worker's: its run not ended.
        self.fence: Callable[[], None] | None = None
        #: The -wal file as opened, checked before each write transaction (:meth:`check_wal`).
        self._wal = wal_identity(path)

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        create: bool = False,
        projector: Projector | None = None,
        registry: EventRegistry = REGISTRY,
        clock: Callable[[], datetime] = utc_now,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        write: bool = True,
    ) -> EventStore:
        """Open (and with ``create=True`` create) the log at ``path``.

        A writer (``write=True``) migrates the schema and brings the projections up to the last
        event (installing or rebuilding them when their version changed). ``write=False`` opens
        for reading only: nothing is ever written, and no write lock is taken.
        """
        path = Path(path)
        if create and not path.exists():
            _create_atomically(path, projector, registry)
        conn = connect(path, create=False, busy_timeout_ms=busy_timeout_ms)
        try:
            with translate_sqlite_errors(path):
                version = check_schema(conn, str(path))
                if version == 0 and not create:
                    raise NotAnEventLog(f"not a gemini-batches database (no events table): {path}")
                apply_settings(conn)
                if version < SCHEMA_VERSION:
                    if not write:
                        raise DatabaseError(
                            f"database schema version {version} is older than {SCHEMA_VERSION}; "
                            "run any writing command (e.g. `commands status`) to upgrade it: "
                            f"{path}"
                        )
                    migrate(conn)
            store = cls(conn, path, registry=registry, projector=projector, clock=clock)
            if write and projector is not None:
                projector.catch_up(store)
        except BaseException:
            conn.close()
            raise
        return store

    def close(self) -> None:
        self._conn.close()

    @property
    def location(self) -> str:
        """Where the log is, for messages (a path; a URL without its password)."""
        return str(self.path)

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        """The boundary where the driver's exceptions become :mod:`eventlog.errors`."""
        return translate_sqlite_errors(self.path)

    def _begin_write(self) -> contextlib.AbstractContextManager[None]:
        """One write transaction, holding the log's write lock from its start."""
        return immediate(self._conn)

    def bound_idle_transactions(self, seconds: float) -> None:
        """Have the database end this connection's transaction (and the connection) when it
        sits idle inside one for ``seconds``: a process stopped mid-transaction (SIGSTOP, a VM
        paused) then holds the others' writes up for that long at most. SQLite cannot: a
        stopped process keeps the file's write lock until it resumes or dies (the others wait
        their busy timeout, then skip a cycle)."""

    def _insert_rows(
        self, rows: Sequence[tuple[Any, ...]], keys: Sequence[tuple[str, int]]
    ) -> None:
        """Insert encoded event rows (inside the write transaction, in sequence order) and their
        ``event_record_keys`` rows (:mod:`eventlog.record_index`)."""
        self._conn.executemany(INSERT_EVENT, rows)
        if keys:
            self._conn.executemany(INSERT_KEY, keys)

    def has_table(self, name: str) -> bool:
        """Whether the database holds a table ``name`` (read-only)."""
        return self.query_one("SELECT 1 FROM sqlite_schema WHERE name = ?", (name,)) is not None

    #: Whether the one-worker-run-per-log lock lives in the database, shared by every machine
    #: (PostgreSQL: :meth:`try_run_lock`), rather than in a file beside the database (SQLite:
    #: ``commands/worker/runlock.py``, which only this machine's processes see).
    run_lock_in_database = False

    def try_run_lock(self, holder: str) -> str | None:
        """Take the run lock for this connection's life (until :meth:`close`), without waiting:
        None when taken, else who holds it. ``holder`` names this process to the others. Only
        where :attr:`run_lock_in_database`."""
        raise NotImplementedError("a SQLite log's run lock is the file beside it")

    def run_lock_held(self) -> bool:
        """Whether some connection (this one included) holds the run lock now (read-only). Only
        where :attr:`run_lock_in_database`."""
        raise NotImplementedError("a SQLite log's run lock is the file beside it")

    def check_wal(self) -> None:
        """Raise :class:`~eventlog.errors.WalLost` if the write-ahead log this store opened was
        deleted or replaced (the worker checks it at each cycle, and every write does)."""
        check_wal(self.path, self._wal)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writing ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Writer]:
        """One write transaction (``BEGIN IMMEDIATE``): read, decide, append, all atomically.
        Refused with :class:`~eventlog.errors.WalLost` once the -wal file was lost."""
        self.check_wal()
        with interrupts.deferred(), self._errors(), self._begin_write():
            row = self._conn.execute(
                "SELECT seq, ts, hash FROM events ORDER BY seq DESC LIMIT 1"
            ).fetchone()
            last_seq, last_ts, last_hash = row if row else (0, "", GENESIS_HASH)
            writer = Writer(self, last_seq, last_ts, last_hash)
            yield writer
        if crashpoints.active():
            for type_ in dict.fromkeys(r.type for r in writer.appended):
                crashpoints.reach(crashpoints.APPEND_PREFIX + type_)

    def append(self, events: Sequence[Event], *, actor: str) -> list[Recorded]:
        """Append ``events`` in one transaction (group commit); returns them as recorded."""
        with self.write() as w:
            return w.append(events, actor=actor)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed state (no lock)."""
        with self._errors():
            try:  # a signal at the end of BEGIN still ends the transaction
                self._conn.execute("BEGIN DEFERRED")
                yield
            finally:
                if self._conn.in_transaction:
                    self._conn.execute("COMMIT")

    # --- reading ---------------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Every row of one read statement, inside the error translation.

        For the read side's query functions (``projections.queries``); it runs in whatever
        transaction is open on this store (a :meth:`snapshot`, or a :meth:`write` whose reads must
        see its own state), else in its own implicit read transaction. Never used to write.
        """
        with interrupts.deferred(), self._errors():
            return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        """The first row of one read statement (None if there is none); as :meth:`query`."""
        with interrupts.deferred(), self._errors():
            return self._conn.execute(sql, params).fetchone()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """The rows of one read statement, streamed from the cursor (flat memory); as
        :meth:`query`. Consume it inside the :meth:`snapshot` that should bound it."""
        with self._errors():
            yield from self._conn.execute(sql, params)

    def backup(self, dest: Path) -> None:
        """Copy the whole database, consistently, into the (new or empty) file ``dest``.

        Uses SQLite's online backup (https://www.sqlite.org/backup.html): readers and the one
        writer are not blocked for long, and ``dest`` is a complete log when this returns.
        """
        with translate_sqlite_errors(dest):
            target = apsw.Connection(str(dest))
            try:
                with target.backup("main", self._conn, "main") as b:
                    b.step(-1)
            finally:
                target.close()

    def last_seq(self) -> int:
        row = self.query_one("SELECT max(seq) FROM events")
        return (row[0] if row else 0) or 0

    def bounds(self) -> tuple[tuple[int, str], tuple[int, str]] | None:
        """``((first_seq, first_ts), (last_seq, last_ts))``, or None for an empty log."""
        first = self.query_one("SELECT seq, ts FROM events ORDER BY seq LIMIT 1")
        if first is None:
            return None
        last = self.query_one("SELECT seq, ts FROM events ORDER BY seq DESC LIMIT 1")
        assert last is not None
        return (first[0], first[1]), (last[0], last[1])

    def seq_at(self, ts: str) -> int:
        """The last sequence number stored at or before ``ts`` (0 if none): a binary search."""
        lo, hi = 0, self.last_seq()
        with self._errors():
            while lo < hi:
                mid = (lo + hi + 1) // 2
                row = self._conn.execute("SELECT ts FROM events WHERE seq = ?", (mid,)).fetchone()
                assert row is not None  # seqs are dense from 1 to last_seq
                if str(row[0]) <= ts:
                    lo = mid
                else:
                    hi = mid - 1
        return lo

    def _chunks(
        self, after_seq: int, until_seq: int | None, chunk: int
    ) -> Iterator[list[StoredRow]]:
        """Rows in sequence order, ``chunk`` at a time, each chunk its own short read."""
        upper = until_seq if until_seq is not None else 2**63 - 1
        cursor_seq = after_seq
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
        with self._errors():
            while True:
                rows: list[StoredRow] = self._conn.execute(  # type: ignore[assignment]
                    sql, (cursor_seq, upper, chunk)
                ).fetchall()
                if not rows:
                    return
                yield rows
                cursor_seq = rows[-1][0]
                if len(rows) < chunk:
                    return

    def read_raw(
        self, *, after_seq: int = 0, until_seq: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[RawRow]:
        """Stored rows in sequence order, fetched ``chunk`` rows per short read."""
        for rows in self._chunks(after_seq, until_seq, chunk):
            for row in rows:
                yield RawRow(*row)

    def read(
        self, *, after_seq: int = 0, until_seq: int | None = None, chunk: int = DEFAULT_CHUNK
    ) -> Iterator[Recorded]:
        """Decoded events in sequence order (upcasting older payloads), in bounded chunks."""
        decode = self.registry.decode
        for rows in self._chunks(after_seq, until_seq, chunk):
            for seq, ts, type_, stream, actor, version, payload, hash_ in rows:
                yield Recorded(
                    seq,
                    ts,
                    type_,
                    stream,
                    actor,
                    version,
                    decode(type_, version, payload, seq),
                    hash_,
                )

    def verify_chain(self, *, chunk: int = DEFAULT_CHUNK) -> ChainBreak | None:
        """Recompute the hash chain; return the first row that does not match, or None."""
        prev, expected_seq = GENESIS_HASH, 1
        for r in self.read_raw(chunk=chunk):
            if r.seq != expected_seq:
                return ChainBreak(r.seq, f"sequence gap: expected {expected_seq}, found {r.seq}")
            want = chain_hash(prev, r.seq, r.ts, r.type, r.stream, r.actor, r.version, r.payload)
            if want != r.hash:
                return ChainBreak(
                    r.seq, f"hash mismatch: stored {r.hash[:16]}..., computed {want[:16]}..."
                )
            prev, expected_seq = r.hash, r.seq + 1
        return None
