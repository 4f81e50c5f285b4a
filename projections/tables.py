"""Projection tables: their specs, and two interchangeable row stores the folds write through.

A projection's fold is written once, against the small :class:`Tables` protocol (get, put, delete,
find by one column). :class:`SqliteTables` runs it incrementally inside the append transaction;
:class:`MemoryTables` runs it over the whole log for a rebuild or a replay. Both pass the same
contract tests (``tests/projections/test_tables_contract.py``).

Per backend: :class:`SqliteTables` and :class:`PostgresTables` (the same statements, each in its
driver's placeholders), and the DDL of :meth:`TableSpec.ddl` for each dialect (with the
projector's triggers and gate in :mod:`projections.projector`); the folds do not change.
"""

from __future__ import annotations

import operator
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from eventlog.postgres import by_column
from eventlog.store import Connection

Row = msgspec.Struct

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}
#: PostgreSQL's: text in the "C" collation, so ORDER BY is byte order as in SQLite and Python.
_PG_TYPES = {str: 'TEXT COLLATE "C"', int: "BIGINT", float: "DOUBLE PRECISION"}


@dataclass(frozen=True)
class TableSpec:
    """One projection table. ``row`` is an ``array_like`` struct whose fields are the columns."""

    name: str
    row: type[Row]
    pk: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    #: What a raw write from outside the log is told (must name the command to use instead).
    refuse_hint: str = "it is rebuilt from the log: run `python -m commands rebuild-projections`"
    #: Event fields whose values (a key, or a list of keys) are rows of this table that a fold
    #: may read: the live store reads them all in one query per transaction, at the table's
    #: first read, rather than one query a row (single-column primary keys only).
    prefetch: tuple[str, ...] = ()
    columns: tuple[str, ...] = field(init=False)
    #: ``row -> primary key tuple`` (a C-level getter: this is on the rebuild's hot path).
    key_of: Callable[[Row], tuple[Any, ...]] = field(init=False)

    def __post_init__(self) -> None:
        cols = tuple(f.name for f in msgspec.structs.fields(self.row))
        object.__setattr__(self, "columns", cols)
        if self.prefetch and len(self.pk) != 1:
            raise ValueError(f"{self.name}: prefetch needs a single-column primary key")
        if len(self.pk) == 1:
            get = operator.attrgetter(self.pk[0])
            object.__setattr__(self, "key_of", lambda row: (get(row),))
        else:
            object.__setattr__(self, "key_of", operator.attrgetter(*self.pk))

    def ddl(self, dialect: str = "sqlite") -> str:
        """CREATE TABLE (STRICT in SQLite) and its secondary indexes."""
        cols = []
        for f in msgspec.structs.fields(self.row):
            sql_type, nullable = _sql_type(f.type)
            if dialect == "postgresql":
                sql_type = _PG_TYPES[{v: k for k, v in _SQL_TYPES.items()}[sql_type]]
            cols.append(f"{f.name} {sql_type}{'' if nullable else ' NOT NULL'}")
        cols.append(f"PRIMARY KEY ({', '.join(self.pk)})")
        strict = " STRICT" if dialect == "sqlite" else ""
        parts = [f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(cols) + f"\n){strict};"]
        for col in self.indexes:
            parts.append(f"CREATE INDEX {self.name}_by_{col} ON {self.name} ({col});")
        return "\n".join(parts)

    def refuse_message(self) -> str:
        return f"{self.name} is a projection of the event log and is not written directly: " + (
            self.refuse_hint
        )


def _sql_type(tp: Any) -> tuple[str, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return _SQL_TYPES[args[0]], True
    return _SQL_TYPES[tp], False


class Tables(Protocol):
    """The row store a fold writes through. Rows are the spec's struct instances."""

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None: ...

    def put(self, spec: TableSpec, row: Row) -> None: ...

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None: ...

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]: ...

    def delete_where(self, spec: TableSpec, column: str, value: Any) -> None:
        """Delete every row whose ``column`` equals ``value`` (an indexed or leading key
        column), without loading them."""

    def flush(self) -> None:
        """Make every write so far visible to any reader of the store (a store may buffer
        them; ``get`` and ``find`` always see them)."""

    def hint(self, spec: TableSpec, keys: set[Any]) -> None:
        """``keys`` (primary-key values) may be read soon: a store may read them together."""


class _Table:
    """One in-memory table: rows by primary key, and its secondary indexes."""

    __slots__ = ("data", "indexes", "key_of", "spec")

    def __init__(self, spec: TableSpec) -> None:
        self.spec = spec
        self.key_of = spec.key_of
        self.data: dict[Any, Row] = {}
        #: (column getter, value -> set of keys) per indexed column.
        self.indexes: list[tuple[Callable[[Row], Any], dict[Any, set[Any]]]] = [
            (operator.attrgetter(c), {}) for c in spec.indexes
        ]


class MemoryTables:
    """Dict-backed tables with the secondary indexes the specs declare. Not thread-safe.

    This is the rebuild's and replay's hot path: every method does as little as it can.
    """

    def __init__(self, specs: Iterable[TableSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self._t = {name: _Table(spec) for name, spec in self.specs.items()}
        self.data = {name: t.data for name, t in self._t.items()}

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None:
        return self._t[spec.name].data.get(key)

    def put(self, spec: TableSpec, row: Row) -> None:
        t = self._t[spec.name]
        key = t.key_of(row)
        if t.indexes:
            old = t.data.get(key)
            for get, index in t.indexes:
                value = get(row)
                if old is not None:
                    before = get(old)
                    if before == value:
                        continue  # already in the right bucket
                    _drop(index, before, key)
                bucket = index.get(value)
                if bucket is None:
                    index[value] = {key}
                else:
                    bucket.add(key)
        t.data[key] = row

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None:
        t = self._t[spec.name]
        old = t.data.pop(key, None)
        if old is not None:
            for get, index in t.indexes:
                _drop(index, get(old), key)

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]:
        t = self._t[spec.name]
        if column in spec.indexes:
            index = t.indexes[spec.indexes.index(column)][1]
            return sorted((t.data[k] for k in index.get(value, ())), key=spec.key_of)
        if spec.pk and column == spec.pk[0]:
            return sorted((r for k, r in t.data.items() if k[0] == value), key=spec.key_of)
        raise KeyError(f"{spec.name}.{column} is not indexed")

    def delete_where(self, spec: TableSpec, column: str, value: Any) -> None:
        for row in self.find(spec, column, value):
            self.delete(spec, spec.key_of(row))

    def flush(self) -> None:
        """Nothing to do: the dicts are the store."""

    def hint(self, spec: TableSpec, keys: set[Any]) -> None:
        """Nothing to do: every row is in memory."""

    def rows(self, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
        """Every row as a tuple, in primary-key order."""
        data = self._t[spec.name].data
        astuple = msgspec.structs.astuple
        for key in sorted(data):
            yield astuple(data[key])


def _drop(index: dict[Any, set[Any]], value: Any, key: Any) -> None:
    bucket = index.get(value)
    if bucket is not None:
        bucket.discard(key)
        if not bucket:
            del index[value]


class SqliteTables:
    """Tables in the live database; every call runs inside the caller's write transaction.

    Writes are buffered: ``put`` and ``delete`` note the row's new state (a ``get`` sees it),
    and :meth:`flush` writes every table's noted rows with one ``executemany`` per table and
    kind, not one statement a row. A ``find`` or ``delete_where`` flushes its table first; the
    projector flushes at the end of each fold, inside the same transaction, so nothing else
    ever sees a table short of a write. A row touched several times (an aggregate, such as the
    tokens of a run and model) is written once, in its last state.

    Reads are gathered too: the keys :meth:`hint` names for a table (the projector names those
    of a transaction's events, by :attr:`TableSpec.prefetch`) are read in one query at the
    table's first read, and kept for the rest of the transaction (one store per transaction):
    on PostgreSQL each query is a round trip to the server."""

    #: At most this many keys in one ``IN (...)`` list.
    IN_LIST = 500

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._sql: dict[tuple[str, str, str], str] = {}
        #: Per table: its spec, and each noted row by key (None: deleted).
        self._pending: dict[str, tuple[TableSpec, dict[tuple[Any, ...], Row | None]]] = {}
        #: Per table: keys named by :meth:`hint` and not read yet.
        self._hints: dict[str, set[Any]] = {}
        #: Per table: rows read (None: no such row), as the database has them now.
        self._read: dict[str, dict[tuple[Any, ...], Row | None]] = {}

    def _stmt(self, spec: TableSpec, op: str, column: str = "") -> str:
        cache_key = (spec.name, op, column)
        sql = self._sql.get(cache_key)
        if sql is None:
            cols = ", ".join(spec.columns)
            where = " AND ".join(f"{c} = ?" for c in spec.pk)
            if op == "get":
                sql = f"SELECT {cols} FROM {spec.name} WHERE {where}"
            elif op == "put":
                sql = upsert(spec, f"VALUES ({', '.join('?' for _ in spec.columns)})")
            elif op == "delete":
                sql = f"DELETE FROM {spec.name} WHERE {where}"
            elif op == "delete_where":
                sql = f"DELETE FROM {spec.name} WHERE {column} = ?"
            else:  # find
                if column not in spec.indexes and column != spec.pk[0]:
                    raise KeyError(f"{spec.name}.{column} is not indexed")
                order = ", ".join(spec.pk)
                sql = f"SELECT {cols} FROM {spec.name} WHERE {column} = ? ORDER BY {order}"
            self._sql[cache_key] = sql
        return sql

    def _noted(self, spec: TableSpec) -> dict[tuple[Any, ...], Row | None]:
        noted = self._pending.get(spec.name)
        if noted is None:
            noted = self._pending[spec.name] = (spec, {})
        return noted[1]

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None:
        noted = self._pending.get(spec.name)
        if noted is not None and key in noted[1]:
            return noted[1][key]
        read = self._read.get(spec.name)
        if read is not None and key in read:
            return read[key]
        hinted = self._hints.pop(spec.name, None)
        if hinted:
            hinted.add(key[0])
            return self._read_many(spec, hinted)[key]
        row = self.conn.execute(self._stmt(spec, "get"), key).fetchone()
        return spec.row(*row) if row is not None else None

    def hint(self, spec: TableSpec, keys: set[Any]) -> None:
        if len(keys) > 1:  # one key is read as well by the get that needs it
            self._hints[spec.name] = keys

    def _read_many(self, spec: TableSpec, keys: set[Any]) -> dict[tuple[Any, ...], Row | None]:
        read = self._read.setdefault(spec.name, {})
        wanted = sorted(keys)
        for key in wanted:
            read.setdefault((key,), None)
        for sql, params in self._select_many(spec, wanted):
            for values in self.conn.execute(sql, params).fetchall():
                row = spec.row(*values)
                read[spec.key_of(row)] = row
        return read

    def _select_many(self, spec: TableSpec, keys: list[Any]) -> Iterator[tuple[str, Any]]:
        """The statements (and their parameters) reading the rows of ``keys``."""
        cols, pk = ", ".join(spec.columns), spec.pk[0]
        for i in range(0, len(keys), self.IN_LIST):
            part = keys[i : i + self.IN_LIST]
            marks = ", ".join("?" for _ in part)
            yield f"SELECT {cols} FROM {spec.name} WHERE {pk} IN ({marks})", part

    def put(self, spec: TableSpec, row: Row) -> None:
        self._noted(spec)[spec.key_of(row)] = row

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None:
        self._noted(spec)[key] = None

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]:
        self.flush(spec)
        rows = self.conn.execute(self._stmt(spec, "find", column), (value,)).fetchall()
        return [spec.row(*r) for r in rows]

    def delete_where(self, spec: TableSpec, column: str, value: Any) -> None:
        self._stmt(spec, "find", column)  # the same columns are allowed: indexed or leading key
        self.flush(spec)
        self._forget(spec)
        self.conn.execute(self._stmt(spec, "delete_where", column), (value,))

    def _forget(self, spec: TableSpec) -> None:
        """Drop what was read of ``spec``'s table (a statement is about to change it)."""
        self._read.pop(spec.name, None)

    def flush(self, only: TableSpec | None = None) -> None:
        """Write the noted rows (of ``only``'s table, or of every table)."""
        names = [only.name] if only is not None else list(self._pending)
        astuple = msgspec.structs.astuple
        for name in names:
            entry = self._pending.pop(name, None)
            if entry is None:
                continue
            spec, noted = entry
            read = self._read.get(name)
            if read is not None:
                read.update(noted)  # what was read is what the table holds after this
            deleted = [key for key, row in noted.items() if row is None]
            written = [astuple(row) for row in noted.values() if row is not None]
            if deleted:
                self._delete_many(spec, deleted)
            if written:
                self._put_many(spec, written)

    def _delete_many(self, spec: TableSpec, keys: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(self._stmt(spec, "delete"), keys)

    def _put_many(self, spec: TableSpec, rows: list[tuple[Any, ...]]) -> None:
        self.conn.executemany(self._stmt(spec, "put"), rows)


class PostgresTables(SqliteTables):
    """Tables in a PostgreSQL log, through its driver directly (``%s`` placeholders, statements
    prepared by psycopg after a few uses); every call runs inside the caller's write transaction.
    The SQL is :class:`SqliteTables`' own (the upsert, ``ON CONFLICT ... DO UPDATE SET c =
    excluded.c``, is the same in both dialects), but a flush writes each table's rows in one
    statement, each column sent as one array and ``unnest`` ed by the server: one round trip a
    table, not one a row (a pipelined ``executemany`` still costs the server a statement a row)."""

    def __init__(self, conn: Any) -> None:
        super().__init__(conn.raw)  # the psycopg connection under eventlog.postgres.PgConnection

    def _stmt(self, spec: TableSpec, op: str, column: str = "") -> str:
        return super()._stmt(spec, op, column).replace("?", "%s")

    def _select_many(self, spec: TableSpec, keys: list[Any]) -> Iterator[tuple[str, Any]]:
        """One statement, the keys sent as one array."""
        cols, pk = ", ".join(spec.columns), spec.pk[0]
        yield f"SELECT {cols} FROM {spec.name} WHERE {pk} = ANY(%b)", (keys,)

    def flush(self, only: TableSpec | None = None) -> None:
        """Every table's statements sent in one pipeline (one wait for the server, not one a
        table), but the last: it goes alone after the pipeline. The server arms its
        idle-in-transaction timeout (``bound_idle_transactions``) only after a statement outside
        a pipeline, and a worker stopped right after a flush must still be timed out."""
        queued: list[tuple[str, list[Any]]] = []
        self._queued = queued
        try:
            super().flush(only)
        finally:
            self._queued = None
        raw: Any = self.conn
        if len(queued) > 1:
            with raw.pipeline():
                for sql, arrays in queued[:-1]:
                    self._execute(sql, arrays)
        if queued:
            self._execute(*queued[-1])

    _queued: list[tuple[str, list[Any]]] | None = None

    def _send(self, sql: str, arrays: list[Any]) -> None:
        if self._queued is not None:
            self._queued.append((sql, arrays))
        else:
            self._execute(sql, arrays)

    def _execute(self, sql: str, arrays: list[Any]) -> None:
        """One statement whose parameters are arrays, sent in binary (text arrays would be
        quoted element by element)."""
        raw: Any = self.conn
        with raw.cursor(binary=True) as cur:
            cur.execute(sql, arrays, binary=True)

    def _unnest(self, spec: TableSpec, columns: tuple[str, ...]) -> str:
        types = {f.name: _sql_type(f.type)[0] for f in msgspec.structs.fields(spec.row)}
        arrays = ", ".join(f"%b::{_PG_ARRAYS[types[c]]}" for c in columns)
        return f"unnest({arrays}) AS n ({', '.join(columns)})"

    def _delete_many(self, spec: TableSpec, keys: list[tuple[Any, ...]]) -> None:
        sql = self._sql.get((spec.name, "delete_many", ""))
        if sql is None:
            match = " AND ".join(f"{spec.name}.{c} = n.{c}" for c in spec.pk)
            sql = f"DELETE FROM {spec.name} USING {self._unnest(spec, spec.pk)} WHERE {match}"
            self._sql[(spec.name, "delete_many", "")] = sql
        self._send(sql, by_column(keys))

    def _put_many(self, spec: TableSpec, rows: list[tuple[Any, ...]]) -> None:
        sql = self._sql.get((spec.name, "put_many", ""))
        if sql is None:
            sql = upsert(spec, f"SELECT * FROM {self._unnest(spec, spec.columns)}")
            self._sql[(spec.name, "put_many", "")] = sql
        self._send(sql, by_column(rows))


#: Each column type's array, for ``unnest``.
_PG_ARRAYS = {"TEXT": "text[]", "INTEGER": "bigint[]", "REAL": "float8[]"}


def upsert(spec: TableSpec, rows: str) -> str:
    """``INSERT`` of ``rows`` (``VALUES (...)`` or a ``SELECT``) into ``spec``'s table, each row
    replacing the one with its primary key (the same statement in SQLite and PostgreSQL)."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in spec.columns if c not in spec.pk)
    conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    return (
        f"INSERT INTO {spec.name} ({', '.join(spec.columns)}) {rows} "
        f"ON CONFLICT ({', '.join(spec.pk)}) {conflict}"
    )


def select_all(spec: TableSpec) -> str:
    """The statement reading every row of ``spec``'s table, in primary-key order."""
    return f"SELECT {', '.join(spec.columns)} FROM {spec.name} ORDER BY {', '.join(spec.pk)}"


def read_rows(conn: Connection, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
    """Every row of ``spec``'s table in ``conn``, in primary-key order."""
    yield from conn.execute(select_all(spec))
