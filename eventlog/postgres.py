"""The event store on PostgreSQL: the same :class:`~eventlog.store.EventStore`, another database.

``[database] url = "postgresql://user@host/db"`` (or ``projections.open_store(url)``) opens it.
What differs from SQLite, and only here:

* **One append transaction at a time.** :meth:`PostgresEventStore.write` is ``BEGIN`` then
  ``pg_advisory_xact_lock`` (:data:`WRITE_LOCK`), then reads the last row: every writer, on
  every machine, appends ``max(seq) + 1`` onwards under the lock, so sequence numbers stay dense
  and the hash chain unbroken whatever the number of writers. The lock is released by the
  commit or rollback. A writer that waits longer than the busy timeout (``lock_timeout``) gets
  :class:`~eventlog.errors.DatabaseBusy`.
* **Append-only, enforced by the database.** Triggers refuse every UPDATE, DELETE and TRUNCATE
  of ``events``, and any INSERT whose ``seq`` is not the next one, from any client (``psql``
  included). Only the table's owner can disable them: run workers as a role that does not own
  the tables (README "Running on PostgreSQL" gives the GRANTs).
* **Reads** go in bounded chunks (``LIMIT``), each its own autocommit statement, so a reader
  holds no snapshot and no lock between chunks; :meth:`snapshot` is a ``REPEATABLE READ READ
  ONLY`` transaction; :meth:`rows` streams (single-row mode).
* The connection (:class:`PgConnection`) takes the store's ``?`` placeholders, so the read side's
  SQL (``projections.queries``) runs unchanged; text columns use the ``"C"`` collation, so
  ``ORDER BY`` agrees with SQLite's and Python's.

psycopg (the ``postgres`` extra) is imported only when a PostgreSQL store is opened.
"""

from __future__ import annotations

import contextlib
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from eventlog import interrupts
from eventlog.errors import (
    AppendOnlyViolation,
    DatabaseBusy,
    DatabaseError,
    NotAnEventLog,
    ProjectionWriteRefused,
    SchemaTooNew,
)
from eventlog.events import REGISTRY, EventRegistry
from eventlog.schema import APPEND_ONLY_MESSAGE, SCHEMA_VERSION
from eventlog.store import EVENT_COLUMNS, INSERT_EVENT, EventStore, Projector, utc_now

URL_SCHEMES = ("postgresql://", "postgres://")
#: The advisory lock key every append (and migration) holds: "GBAT" as an int.
WRITE_LOCK = 0x47424154
#: The run lock (one worker run per log, on every machine): a session-level advisory lock on
#: the 64-bit key ("GBRN" << 32 | the oid of this log's ``events`` table), so logs in other
#: schemas of the same database have locks of their own. pg_locks shows it as classid
#: ``RUN_LOCK``, objid the table's oid, objsubid 1.
RUN_LOCK = 0x4742524E
_RUN_LOCK_KEY = f"(({RUN_LOCK}::bigint << 32) | 'events'::regclass::oid::bigint)"
_RUN_LOCK_HOLDERS = (
    "SELECT a.application_name, host(a.client_addr), l.pid, a.backend_start::text "
    "FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    f"AND l.classid::bigint = {RUN_LOCK} AND l.objid = 'events'::regclass::oid "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)
#: ``meta.application_id``: marks the database's tables as ours.
APPLICATION_ID = "gemini-batches"

_V1 = f"""
CREATE TABLE events (
    seq     BIGINT  PRIMARY KEY,
    ts      TEXT    COLLATE "C" NOT NULL,
    type    TEXT    COLLATE "C" NOT NULL,
    stream  TEXT    COLLATE "C" NOT NULL,
    actor   TEXT    COLLATE "C" NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT    NOT NULL,
    hash    TEXT    NOT NULL
);

CREATE OR REPLACE FUNCTION gb_events_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}';
END $$;

CREATE TRIGGER events_refuse_update BEFORE UPDATE OR DELETE OR TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION gb_events_refuse();

-- Only the next sequence number may be inserted: no row is replaced and no gap is made.
CREATE OR REPLACE FUNCTION gb_events_next_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.seq <> (SELECT coalesce(max(seq), 0) + 1 FROM events) THEN
        RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER events_refuse_rewrite BEFORE INSERT ON events
FOR EACH ROW EXECUTE FUNCTION gb_events_next_only();

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);
"""

#: A record's history by index (:mod:`eventlog.record_index`), as in SQLite's schema 2.
_V2 = """
CREATE INDEX events_by_stream ON events (stream, seq);

CREATE TABLE event_record_keys (
    record_key TEXT   COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    PRIMARY KEY (record_key, seq)
);

CREATE TRIGGER event_record_keys_refuse BEFORE UPDATE OR DELETE OR TRUNCATE ON event_record_keys
FOR EACH STATEMENT EXECUTE FUNCTION gb_events_refuse();

INSERT INTO event_record_keys (record_key, seq)
SELECT k, e.seq FROM events e, jsonb_array_elements_text(e.payload::jsonb -> 'record_keys') k
WHERE strpos(e.payload, '"record_keys":') > 0 AND k <> e.stream
ON CONFLICT DO NOTHING;

INSERT INTO event_record_keys (record_key, seq)
SELECT payload::jsonb ->> 'record_key', seq FROM events
WHERE strpos(payload, '"record_key":') > 0 AND payload::jsonb -> 'record_keys' IS NULL
AND payload::jsonb ->> 'record_key' <> stream
ON CONFLICT DO NOTHING;
"""

MIGRATIONS = {1: _V1, 2: _V2}

#: The events of a group in one statement: each column an array (binary), unnested in order.
_INSERT_UNNESTED = (
    f"INSERT INTO events ({EVENT_COLUMNS}) SELECT * FROM unnest(%b::bigint[], %b::text[], "
    "%b::text[], %b::text[], %b::text[], %b::int[], %b::text[], %b::text[]) "
    f"AS r ({EVENT_COLUMNS}) ORDER BY seq"
)
#: Their ``event_record_keys`` rows, the same way.
_INSERT_KEYS_UNNESTED = (
    "INSERT INTO event_record_keys (record_key, seq) SELECT * FROM "
    "unnest(%b::text[], %b::bigint[]) ON CONFLICT DO NOTHING"
)


def by_column(rows: Sequence[Sequence[Any]]) -> list[list[Any]]:
    """``rows``' values column by column (one list per column): the arrays ``unnest`` takes."""
    return [list(values) for values in zip(*rows, strict=True)]


assert max(MIGRATIONS) == SCHEMA_VERSION


def is_url(location: object) -> bool:
    return isinstance(location, str) and location.startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (for messages: a URL may carry one)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _pg_sql(sql: str) -> str:
    """``?`` placeholders (outside quotes) to psycopg's ``%s``; a literal ``%`` doubled."""
    out, quoted = [], False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


@contextlib.contextmanager
def translate_pg_errors(location: str) -> Iterator[None]:
    """Map psycopg's exceptions onto the project's tree (the one boundary for PostgreSQL)."""
    import psycopg
    from psycopg import errors as pg

    try:
        yield
    except pg.LockNotAvailable as e:
        raise DatabaseBusy(
            f"database is locked by another writer (waited past the busy timeout): {location}"
        ) from e
    except pg.RaiseException as e:
        message = (e.diag.message_primary or str(e)).strip()
        if "append-only" in message:
            raise AppendOnlyViolation(message) from e
        if "projection of the event log" in message:
            raise ProjectionWriteRefused(message) from e
        raise
    except pg.DiskFull as e:
        raise DatabaseError(f"disk full while writing the database: {location}") from e
    except psycopg.OperationalError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DatabaseError(f"cannot use PostgreSQL ({first}): {location}") from e


class PgConnection:
    """A psycopg connection (autocommit; transactions are begun explicitly) with apsw's shape:
    ``execute(sql, params)`` with ``?`` placeholders returns a cursor."""

    dialect = "postgresql"

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self._sql: dict[str, str] = {}

    def _translate(self, sql: str) -> str:
        out = self._sql.get(sql)
        if out is None:
            out = self._sql[sql] = _pg_sql(sql)
        return out

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        if not params:
            return self.raw.execute(sql)
        return self.raw.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(self._translate(sql), rows)

    def stream(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        with self.raw.cursor() as cur:
            yield from cur.stream(self._translate(sql), tuple(params) or None)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """Bulk-load ``rows`` into ``table`` with COPY (the rebuild's path)."""
        with (
            self.raw.cursor() as cur,
            cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    @property
    def in_transaction(self) -> bool:
        from psycopg import pq

        return bool(self.raw.info.transaction_status != pq.TransactionStatus.IDLE)

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, busy_timeout_ms: int) -> PgConnection:
    """Connect (autocommit) with the write-lock wait bounded by ``busy_timeout_ms``."""
    import psycopg  # the extra `postgres`: without it, the CLI says how to install it

    with translate_pg_errors(redact(url)):
        raw = psycopg.connect(url, autocommit=True, connect_timeout=10)
        # lock_timeout 0 would mean "wait forever"; SQLite's busy timeout 0 means "do not wait".
        raw.execute(f"SET lock_timeout = {max(busy_timeout_ms, 1)}")
        raw.execute("SET client_min_messages = warning")
    return PgConnection(raw)


@contextlib.contextmanager
def _locked_transaction(conn: PgConnection) -> Iterator[None]:
    conn.execute("BEGIN")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (WRITE_LOCK,))
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_schema(conn: PgConnection, location: str) -> int:
    """The database's schema version (0: no tables of ours, and none of anyone else's)."""
    tables = {
        r[0]
        for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    }
    if "meta" not in tables or "events" not in tables:
        if tables:
            raise NotAnEventLog(f"not a gemini-batches database (it has other tables): {location}")
        return 0
    meta = dict(
        conn.execute(
            "SELECT key, value FROM meta WHERE key IN ('application_id', 'schema_version')"
        ).fetchall()
    )
    if meta.get("application_id") != APPLICATION_ID:
        raise NotAnEventLog(f"not a gemini-batches database (no application id): {location}")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} was written by a newer version of this tool "
            f"(this one understands up to {SCHEMA_VERSION}): {location}"
        )
    return version


def migrate(conn: PgConnection, location: str) -> None:
    """Apply every missing migration with its version bump, one locked transaction each."""
    while True:
        with _locked_transaction(conn):
            current = check_schema(conn, location)
            if current >= SCHEMA_VERSION:
                return
            conn.execute(MIGRATIONS[current + 1])
            conn.execute(
                "INSERT INTO meta VALUES ('application_id', ?), ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (APPLICATION_ID, str(current + 1)),
            )


class PostgresEventStore(EventStore):
    """The event log in a PostgreSQL database (see the module docstring for what differs)."""

    dialect = "postgresql"
    _conn: PgConnection  # type: ignore[assignment]

    def __init__(self, conn: Any, url: str, *, scratch: Path | None = None, **kwargs: Any) -> None:
        # ``path`` is local: temporary files (result downloads) go beside it, as beside a file.
        path = scratch or Path(tempfile.gettempdir()) / "gemini-batches" / "postgresql"
        super().__init__(conn, path, **kwargs)
        self.url = url

    @property
    def location(self) -> str:
        return redact(self.url)

    def check_wal(self) -> None:
        """PostgreSQL has no -wal file beside the log for anyone to delete: nothing to check."""

    @classmethod
    def open_url(
        cls,
        url: str,
        *,
        create: bool = False,
        projector: Projector | None = None,
        registry: EventRegistry = REGISTRY,
        clock: Any = utc_now,
        busy_timeout_ms: int = 10_000,
        write: bool = True,
        scratch: Path | None = None,
    ) -> PostgresEventStore:
        """Open the log at ``url`` (``create=True`` makes its tables in an empty database)."""
        location = redact(url)
        conn = connect(url, busy_timeout_ms=busy_timeout_ms)
        try:
            with translate_pg_errors(location):
                version = check_schema(conn, location)
                if version == 0 and not create:
                    raise NotAnEventLog(
                        f"not a gemini-batches database (no events table): {location}"
                    )
                if version < SCHEMA_VERSION:
                    if not write and not create:
                        raise DatabaseError(
                            f"database schema version {version} is older than "
                            f"{SCHEMA_VERSION}; run any writing command to upgrade it: {location}"
                        )
                    migrate(conn, location)
            store = cls(
                conn, url, scratch=scratch, registry=registry, projector=projector, clock=clock
            )
            if (write or create) and projector is not None:
                projector.catch_up(store)
        except BaseException:
            conn.close()
            raise
        return store

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return translate_pg_errors(self.location)

    def _begin_write(self) -> contextlib.AbstractContextManager[None]:
        return _locked_transaction(self._conn)

    def bound_idle_transactions(self, seconds: float) -> None:
        """``idle_in_transaction_session_timeout`` on this connection: the server ends a
        session that sits idle inside a transaction that long, rolling it back and freeing the
        write lock; the stopped process finds its connection gone when it resumes (its
        transaction never committed)."""
        with self._errors():
            self._conn.execute(
                f"SET idle_in_transaction_session_timeout = {max(1, int(seconds * 1000))}"
            )

    def _insert_rows(
        self, rows: Sequence[tuple[Any, ...]], keys: Sequence[tuple[str, int]]
    ) -> None:
        """One statement for the whole group: each column sent as an array (binary) and
        unnested by the server in sequence order, so the row trigger that admits only the next
        sequence number sees each row after the one before (a row-level BEFORE trigger sees the
        rows its own statement inserted before). A pipelined ``executemany`` costs the server a
        statement a row. Their ``event_record_keys`` rows are one more statement."""
        with self._conn.raw.cursor() as cur:
            if len(rows) == 1:  # a plain statement, not executemany's pipeline (see flush)
                self._conn.execute(INSERT_EVENT, rows[0])
            else:
                cur.execute(_INSERT_UNNESTED, by_column(rows))
            if keys:
                cur.execute(_INSERT_KEYS_UNNESTED, by_column(keys))

    def has_table(self, name: str) -> bool:
        return self.query_one("SELECT to_regclass(?)", (name,)) not in (None, (None,))

    def drop_log(self, tables: Iterable[str]) -> None:
        """Drop the log's tables (``events``, ``meta`` and ``tables``, the projections') in one
        transaction holding the write lock: the database is empty of this log afterwards. Only
        the tables' owner may; ``nuke`` calls it after a verified backup."""
        names = ["events", "event_record_keys", "meta", *tables]
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"not a table name: {name!r}")
        with self._errors(), self._begin_write():
            for name in names:
                self._conn.execute(f"DROP TABLE IF EXISTS {name} CASCADE")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        with self._errors():
            try:  # a signal at the end of BEGIN still ends the transaction
                with interrupts.deferred():
                    self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield
            finally:
                if self._conn.in_transaction:
                    with interrupts.deferred():
                        self._conn.execute("COMMIT")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        """Streamed in single-row mode: consume it before the next statement on this store. A
        stream cut short (a signal, a reader that stops) is cancelled and drained by psycopg
        when it is closed, so the connection is free again."""
        with self._errors():
            yield from self._conn.stream(sql, params)

    run_lock_in_database = True

    def try_run_lock(self, holder: str) -> str | None:
        with self._errors():
            self._conn.execute("SELECT set_config('application_name', ?, false)", (holder[:63],))
            if self._conn.execute(f"SELECT pg_try_advisory_lock({_RUN_LOCK_KEY})").fetchone()[0]:
                return None
            rows = self._conn.execute(_RUN_LOCK_HOLDERS).fetchall()
        if not rows:
            return "unknown"
        name, host, pid, since = rows[0]
        where = f" from {host}" if host else ""
        return f"{name or 'a session'}{where}, server pid {pid}" + (
            f", since {since[:19]}" if since else ""
        )

    def run_lock_held(self) -> bool:
        return bool(self.query(_RUN_LOCK_HOLDERS))

    def backup(self, dest: Path) -> None:
        raise DatabaseError(
            f"a PostgreSQL log is backed up with pg_dump, not by this tool: {self.location}"
        )
