"""Projection tables: their specs, and two interchangeable row stores the folds write through.

A projection's fold is written once, against the small :class:`Tables` protocol (get, put, delete,
find by one column). :class:`SqliteTables` runs it incrementally inside the append transaction;
:class:`MemoryTables` runs it over the whole log for a rebuild or a replay. Both pass the same
contract tests (``tests/projections/test_tables_contract.py``).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import apsw
import msgspec

Row = msgspec.Struct

_SQL_TYPES = {str: "TEXT", int: "INTEGER", float: "REAL"}


@dataclass(frozen=True)
class TableSpec:
    """One projection table. ``row`` is an ``array_like`` struct whose fields are the columns."""

    name: str
    row: type[Row]
    pk: tuple[str, ...]
    indexes: tuple[str, ...] = ()
    #: What a raw write from outside the log is told (must name the command to use instead).
    refuse_hint: str = "it is rebuilt from the log: run `python -m commands rebuild-projections`"
    columns: tuple[str, ...] = field(init=False)
    _pk_index: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        cols = tuple(f.name for f in msgspec.structs.fields(self.row))
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "_pk_index", tuple(cols.index(c) for c in self.pk))

    def key_of(self, row: Row) -> tuple[Any, ...]:
        values = msgspec.structs.astuple(row)
        return tuple(values[i] for i in self._pk_index)

    def ddl(self) -> str:
        """CREATE TABLE (STRICT) and its secondary indexes."""
        cols = []
        for f in msgspec.structs.fields(self.row):
            sql_type, nullable = _sql_type(f.type)
            cols.append(f"{f.name} {sql_type}{'' if nullable else ' NOT NULL'}")
        cols.append(f"PRIMARY KEY ({', '.join(self.pk)})")
        parts = [f"CREATE TABLE {self.name} (\n    " + ",\n    ".join(cols) + "\n) STRICT;"]
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


class MemoryTables:
    """Dict-backed tables with the secondary indexes the specs declare. Not thread-safe."""

    def __init__(self, specs: Iterable[TableSpec]) -> None:
        self.specs = {s.name: s for s in specs}
        self.data: dict[str, dict[tuple[Any, ...], Row]] = {s: {} for s in self.specs}
        self._index: dict[tuple[str, str], dict[Any, set[tuple[Any, ...]]]] = {
            (s.name, c): {} for s in self.specs.values() for c in s.indexes
        }

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None:
        return self.data[spec.name].get(key)

    def put(self, spec: TableSpec, row: Row) -> None:
        key = spec.key_of(row)
        table = self.data[spec.name]
        old = table.get(key)
        if spec.indexes:
            if old is not None:
                self._unindex(spec, key, old)
            for col in spec.indexes:
                self._index[(spec.name, col)].setdefault(getattr(row, col), set()).add(key)
        table[key] = row

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None:
        old = self.data[spec.name].pop(key, None)
        if old is not None and spec.indexes:
            self._unindex(spec, key, old)

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]:
        table = self.data[spec.name]
        if column in spec.indexes:
            keys = self._index[(spec.name, column)].get(value, ())
            return sorted((table[k] for k in keys), key=spec.key_of)
        if spec.pk and column == spec.pk[0]:
            return sorted((r for k, r in table.items() if k[0] == value), key=spec.key_of)
        raise KeyError(f"{spec.name}.{column} is not indexed")

    def _unindex(self, spec: TableSpec, key: tuple[Any, ...], old: Row) -> None:
        for col in spec.indexes:
            bucket = self._index[(spec.name, col)].get(getattr(old, col))
            if bucket is not None:
                bucket.discard(key)
                if not bucket:
                    del self._index[(spec.name, col)][getattr(old, col)]

    def rows(self, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
        """Every row as a tuple, in primary-key order."""
        for key in sorted(self.data[spec.name]):
            yield msgspec.structs.astuple(self.data[spec.name][key])


class SqliteTables:
    """Tables in the live database; every call runs inside the caller's write transaction."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self._sql: dict[tuple[str, str, str], str] = {}

    def _stmt(self, spec: TableSpec, op: str, column: str = "") -> str:
        cache_key = (spec.name, op, column)
        sql = self._sql.get(cache_key)
        if sql is None:
            cols = ", ".join(spec.columns)
            where = " AND ".join(f"{c} = ?" for c in spec.pk)
            if op == "get":
                sql = f"SELECT {cols} FROM {spec.name} WHERE {where}"
            elif op == "put":
                marks = ", ".join("?" for _ in spec.columns)
                updates = ", ".join(f"{c} = excluded.{c}" for c in spec.columns if c not in spec.pk)
                conflict = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
                sql = (
                    f"INSERT INTO {spec.name} ({cols}) VALUES ({marks}) "
                    f"ON CONFLICT ({', '.join(spec.pk)}) {conflict}"
                )
            elif op == "delete":
                sql = f"DELETE FROM {spec.name} WHERE {where}"
            else:  # find
                if column not in spec.indexes and column != spec.pk[0]:
                    raise KeyError(f"{spec.name}.{column} is not indexed")
                order = ", ".join(spec.pk)
                sql = f"SELECT {cols} FROM {spec.name} WHERE {column} = ? ORDER BY {order}"
            self._sql[cache_key] = sql
        return sql

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None:
        row = self.conn.execute(self._stmt(spec, "get"), key).fetchone()
        return spec.row(*row) if row is not None else None

    def put(self, spec: TableSpec, row: Row) -> None:
        self.conn.execute(self._stmt(spec, "put"), msgspec.structs.astuple(row))

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None:
        self.conn.execute(self._stmt(spec, "delete"), key)

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]:
        rows = self.conn.execute(self._stmt(spec, "find", column), (value,)).fetchall()
        return [spec.row(*r) for r in rows]


def read_rows(conn: apsw.Connection, spec: TableSpec) -> Iterator[tuple[Any, ...]]:
    """Every row of ``spec``'s table in ``conn``, in primary-key order."""
    sql = f"SELECT {', '.join(spec.columns)} FROM {spec.name} ORDER BY {', '.join(spec.pk)}"
    yield from conn.execute(sql)
