"""The same contract for both row stores the folds write through (STYLE.md: one suite, every
backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import msgspec
import pytest

from eventlog import postgres
from projections.tables import (
    MemoryTables,
    PostgresTables,
    SqliteTables,
    Tables,
    TableSpec,
    read_rows,
)
from tests.postgres import new_schema_url


class Thing(msgspec.Struct, array_like=True):
    kind: str
    name: str
    colour: str | None
    size: int


class Label(msgspec.Struct, array_like=True):
    key: str
    text: str | None
    weight: float


SPEC = TableSpec("things", Thing, pk=("kind", "name"), indexes=("colour",))
#: A table whose rows a store may read together (``prefetch``: a single-column key).
LABELS = TableSpec("labels", Label, pk=("key",), indexes=("text",), prefetch=("key", "keys"))


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    if request.param == "memory":
        yield MemoryTables([SPEC, LABELS])
    elif request.param == "sqlite":
        conn = apsw.Connection(str(tmp_path / "t.db"))
        conn.execute(SPEC.ddl() + LABELS.ddl())
        yield SqliteTables(conn)
        conn.close()
    else:
        url = new_schema_url(request.getfixturevalue("postgres_server"))
        pg = postgres.connect(url, busy_timeout_ms=1000)
        pg.execute(SPEC.ddl("postgresql") + LABELS.ddl("postgresql"))
        yield PostgresTables(pg)
        pg.close()


def _rows(t: Tables) -> list[tuple]:
    """Every row as a reader of the store sees it, once the writes are flushed (the projector
    flushes at the end of every fold, inside its transaction)."""
    t.flush()
    return _table(t, SPEC)


def _table(t: Tables, spec: TableSpec) -> list[tuple]:
    t.flush()
    if isinstance(t, MemoryTables):
        return list(t.rows(spec))
    return [tuple(r) for r in read_rows(t.conn, spec)]  # type: ignore[attr-defined]


def test_put_then_get(tables: Tables) -> None:
    tables.put(SPEC, Thing("g", "a", "red", 1))
    assert tables.get(SPEC, ("g", "a")) == Thing("g", "a", "red", 1)
    assert tables.get(SPEC, ("g", "b")) is None


def test_put_replaces_the_row_with_the_same_key(tables: Tables) -> None:
    tables.put(SPEC, Thing("g", "a", "red", 1))
    tables.put(SPEC, Thing("g", "a", "blue", 2))
    assert _rows(tables) == [("g", "a", "blue", 2)]
    assert tables.find(SPEC, "colour", "red") == []
    assert tables.find(SPEC, "colour", "blue") == [Thing("g", "a", "blue", 2)]


def test_delete_removes_only_that_row_and_ignores_missing_keys(tables: Tables) -> None:
    tables.put(SPEC, Thing("g", "a", "red", 1))
    tables.put(SPEC, Thing("g", "b", "red", 1))
    tables.delete(SPEC, ("g", "a"))
    tables.delete(SPEC, ("g", "zzz"))
    assert _rows(tables) == [("g", "b", "red", 1)]
    assert tables.find(SPEC, "colour", "red") == [Thing("g", "b", "red", 1)]


def test_find_by_index_and_by_leading_key_in_key_order(tables: Tables) -> None:
    for name, colour in [("c", "red"), ("a", None), ("b", "red")]:
        tables.put(SPEC, Thing("g", name, colour, 0))
    tables.put(SPEC, Thing("h", "a", "red", 0))
    assert [t.name for t in tables.find(SPEC, "colour", "red")] == ["b", "c", "a"]
    assert [t.name for t in tables.find(SPEC, "kind", "g")] == ["a", "b", "c"]
    assert _rows(tables)[0] == ("g", "a", None, 0)


def test_delete_where_removes_every_matching_row(tables: Tables) -> None:
    for kind, name, colour in [("g", "a", "red"), ("g", "b", "blue"), ("h", "a", "red")]:
        tables.put(SPEC, Thing(kind, name, colour, 0))
    tables.delete_where(SPEC, "kind", "g")
    assert _rows(tables) == [("h", "a", "red", 0)]
    tables.delete_where(SPEC, "colour", "red")
    assert _rows(tables) == []
    assert tables.find(SPEC, "colour", "red") == []


def test_find_on_an_unindexed_column_is_refused(tables: Tables) -> None:
    with pytest.raises(KeyError, match="not indexed"):
        tables.find(SPEC, "size", 1)


def test_writes_are_seen_by_get_and_find_before_a_flush_and_by_the_store_after(
    tables: Tables,
) -> None:
    tables.put(SPEC, Thing("g", "a", "red", 1))
    tables.put(SPEC, Thing("g", "b", "red", 2))
    tables.put(SPEC, Thing("g", "a", "blue", 3))  # the same row again: its last state counts
    tables.delete(SPEC, ("g", "b"))
    assert tables.get(SPEC, ("g", "a")) == Thing("g", "a", "blue", 3)
    assert tables.get(SPEC, ("g", "b")) is None
    assert tables.find(SPEC, "colour", "red") == []
    tables.put(SPEC, Thing("g", "c", "red", 4))
    tables.delete_where(SPEC, "colour", "blue")
    assert _rows(tables) == [("g", "c", "red", 4)]


def test_rows_read_together_stay_true_to_every_write(tables: Tables) -> None:
    """A store may read the hinted rows in one query and keep them for the transaction: what
    ``get`` answers afterwards is still the table's state after every put, delete, flush,
    ``find`` and ``delete_where`` (a kept row never hides a later write)."""
    for key, text in [("a", "x"), ("b", "y"), ("c", "x"), ("d", None)]:
        tables.put(LABELS, Label(key, text, 1.5))
    tables.flush()
    tables.hint(LABELS, {"a", "b", "c", "zz"})
    assert tables.get(LABELS, ("b",)) == Label("b", "y", 1.5)  # the first read: all of them
    assert tables.get(LABELS, ("zz",)) is None
    assert tables.get(LABELS, ("d",)) == Label("d", None, 1.5)  # not hinted: read alone
    tables.put(LABELS, Label("a", "y", 2.0))
    tables.delete(LABELS, ("c",))
    tables.put(LABELS, Label("zz", "x", 3.0))
    assert [r.key for r in tables.find(LABELS, "text", "y")] == ["a", "b"]  # flushes first
    assert tables.get(LABELS, ("a",)) == Label("a", "y", 2.0)
    assert tables.get(LABELS, ("c",)) is None
    assert tables.get(LABELS, ("zz",)) == Label("zz", "x", 3.0)
    tables.delete_where(LABELS, "text", "y")
    assert tables.get(LABELS, ("a",)) is None
    assert tables.get(LABELS, ("b",)) is None
    assert tables.get(LABELS, ("zz",)) == Label("zz", "x", 3.0)
    assert _table(tables, LABELS) == [("d", None, 1.5), ("zz", "x", 3.0)]


def test_many_rows_and_deletes_in_one_flush(tables: Tables) -> None:
    """A flush of many rows (PostgreSQL sends each table's as arrays in one statement) writes
    every row, nulls and numbers kept, and deletes every deleted key, also of two-column keys."""
    for i in range(1200):
        tables.put(LABELS, Label(f"k{i:04d}", None if i % 3 else f"t{i}", i / 4))
        tables.put(SPEC, Thing("g", f"n{i:04d}", "red" if i % 2 else None, i))
    tables.flush()
    tables.hint(LABELS, {f"k{i:04d}" for i in range(0, 1200, 2)})
    for i in range(0, 1200, 2):
        assert tables.get(LABELS, (f"k{i:04d}",)) == Label(
            f"k{i:04d}", None if i % 3 else f"t{i}", i / 4
        )
        tables.delete(LABELS, (f"k{i:04d}",))
        tables.delete(SPEC, ("g", f"n{i:04d}"))
    rows = _table(tables, LABELS)
    assert [r[0] for r in rows] == [f"k{i:04d}" for i in range(1, 1200, 2)]
    assert rows[0] == ("k0001", None, 0.25) and rows[1] == ("k0003", "t3", 0.75)
    things = _table(tables, SPEC)
    assert len(things) == 600 and things[0] == ("g", "n0001", "red", 1)


def test_prefetch_needs_a_single_column_key() -> None:
    with pytest.raises(ValueError, match="single-column primary key"):
        TableSpec("bad", Thing, pk=("kind", "name"), prefetch=("kind",))
