"""The same contract for both row stores the folds write through (STYLE.md: one suite, every
backend)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import apsw
import msgspec
import pytest

from projections.tables import MemoryTables, SqliteTables, Tables, TableSpec, read_rows


class Thing(msgspec.Struct, array_like=True):
    kind: str
    name: str
    colour: str | None
    size: int


SPEC = TableSpec("things", Thing, pk=("kind", "name"), indexes=("colour",))


@pytest.fixture(params=["memory", "sqlite"])
def tables(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tables]:
    if request.param == "memory":
        yield MemoryTables([SPEC])
    else:
        conn = apsw.Connection(str(tmp_path / "t.db"))
        conn.execute(SPEC.ddl())
        yield SqliteTables(conn)
        conn.close()


def _rows(t: Tables) -> list[tuple]:
    """Every row as a reader of the store sees it, once the writes are flushed (the projector
    flushes at the end of every fold, inside its transaction)."""
    t.flush()
    if isinstance(t, MemoryTables):
        return list(t.rows(SPEC))
    return [tuple(r) for r in read_rows(t.conn, SPEC)]  # type: ignore[attr-defined]


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
