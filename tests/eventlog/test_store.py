from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import apsw
import pytest

from eventlog.chain import GENESIS_HASH, chain_hash
from eventlog.errors import AppendOnlyViolation
from eventlog.events import FileUploaded, RunStarted
from eventlog.store import EventStore
from tests.backends import StoreFactory
from tests.reads import scalar
from tests.scenario import all_events

# The store's contract (append, read in chunks, the hash chain, append-only refusal) runs on
# every backend through ``store_factory``; the tests on ``store`` check SQLite itself.


def _ev(i: int) -> FileUploaded:
    return FileUploaded(
        record_key=f"S:X:2020:{i}",
        file_name=f"files/{i}",
        file_uri="u",
        mime_type="image/png",
        size_bytes=i,
    )


def test_append_assigns_dense_sequence_and_reads_back_in_order(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    first = store.append([_ev(1), _ev(2)], actor="run:a")
    second = store.append([_ev(3)], actor="run:b")
    assert [r.seq for r in first + second] == [1, 2, 3]
    read = list(store.read())
    assert [r.event for r in read] == [_ev(1), _ev(2), _ev(3)]
    assert [r.actor for r in read] == ["run:a", "run:a", "run:b"]
    assert all(r.version == 1 and r.type == "FileUploaded" for r in read)
    assert read[0].stream == "S:X:2020:1"


def test_group_commit_is_one_transaction(store_factory: StoreFactory) -> None:
    """An error inside a write transaction leaves nothing of it behind, projections included."""
    store = store_factory()
    store.append([_ev(1)], actor="a")
    with pytest.raises(RuntimeError), store.write() as w:
        w.append([_ev(2), _ev(3)], actor="a")
        w.append(all_events(), actor="a")
        raise RuntimeError("crash before commit")
    assert store.last_seq() == 1
    assert scalar(store, "SELECT count(*) FROM record_status") == 0


def test_payload_is_json_readable_from_sql(store: EventStore) -> None:
    store.append([_ev(7)], actor="a")
    value = store.query_one(
        "SELECT json_extract(payload, '$.record_key'), json_extract(payload, '$.size_bytes') "
        "FROM events"
    )
    assert value == ("S:X:2020:7", 7)


def test_hash_chain_links_each_row_to_the_previous(store_factory: StoreFactory) -> None:
    store = store_factory()
    recs = store.append([_ev(1), _ev(2)], actor="a")
    rows = list(store.read_raw())
    prev = GENESIS_HASH
    for row, rec in zip(rows, recs, strict=True):
        expected = chain_hash(
            prev, row.seq, row.ts, row.type, row.stream, row.actor, row.version, row.payload
        )
        assert row.hash == rec.hash == expected
        prev = row.hash
    assert store.verify_chain() is None


def test_verify_chain_names_the_first_tampered_row(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.append([_ev(i) for i in range(1, 6)], actor="a")
    store_factory.backend.tamper(
        store_factory.location,
        "UPDATE events SET payload = replace(payload, '\"size_bytes\":3', "
        "'\"size_bytes\":4') WHERE seq = 3",
    )
    broken = store.verify_chain()
    assert broken is not None and broken.seq == 3 and "hash mismatch" in broken.reason


def test_verify_chain_detects_a_changed_actor(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.append([_ev(i) for i in range(1, 4)], actor="a")
    store_factory.backend.tamper(
        store_factory.location, "UPDATE events SET actor = 'someone-else' WHERE seq = 2"
    )
    broken = store.verify_chain()
    assert broken is not None and broken.seq == 2


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET actor = 'x' WHERE seq = 1",
        "DELETE FROM events WHERE seq = 1",
        "DELETE FROM events",
        "INSERT OR REPLACE INTO events VALUES (1, 't', 'FileUploaded', 's', 'a', 1, '{}', 'h')",
    ],
)
def test_the_database_refuses_to_rewrite_the_log(store_factory: StoreFactory, sql: str) -> None:
    store = store_factory()
    backend, location = store_factory.backend, store_factory.location
    store.append([_ev(1), _ev(2)], actor="a")
    before = list(store.read_raw())
    sql = backend.phrase(sql)
    # Through the backend's own driver (apsw, psycopg), translated at the boundary ...
    with pytest.raises(AppendOnlyViolation, match="append-only"):
        backend.raw_execute(location, sql)
    # ... and through another client altogether (the stdlib's sqlite3, psql), as an operator would.
    with pytest.raises(backend.foreign_refusal, match="append-only"):
        backend.foreign_execute(location, sql)
    assert list(store.read_raw()) == before


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell on this machine")
def test_the_sqlite3_shell_cannot_delete_events(store: EventStore, db_path: Path) -> None:
    store.append([_ev(1)], actor="a")
    p = subprocess.run(
        ["sqlite3", str(db_path), "DELETE FROM events;"], capture_output=True, text=True
    )
    assert p.returncode != 0 and "append-only" in p.stderr
    assert store.last_seq() == 1


def test_connection_settings_are_applied(store: EventStore) -> None:
    def pragma(name: str) -> object:
        row = store.query_one(f"PRAGMA {name}")
        assert row is not None
        return row[0]

    assert pragma("journal_mode") == "wal"
    assert pragma("synchronous") == 2  # FULL
    assert pragma("foreign_keys") == 1
    assert pragma("busy_timeout") > 0  # type: ignore[operator]
    row = store.query_one("SELECT sql FROM sqlite_schema WHERE name = 'events'")
    assert row is not None
    strict = row[0]
    assert strict.rstrip().endswith("STRICT")


def test_writers_take_the_lock_up_front(store: EventStore, db_path: Path) -> None:
    """Inside write(), another connection cannot start writing (BEGIN IMMEDIATE)."""
    other = apsw.Connection(str(db_path))
    other.set_busy_timeout(0)
    with store.write() as w:
        w.append([_ev(1)], actor="a")
        with pytest.raises(apsw.BusyError):
            other.execute("BEGIN IMMEDIATE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()


def test_timestamps_never_go_backwards(store_factory: StoreFactory) -> None:
    moments = iter([datetime(2026, 5, 1, 12, tzinfo=UTC), datetime(2026, 5, 1, 11, tzinfo=UTC)])
    s = store_factory(projections=False, clock=lambda: next(moments))
    a = s.append([_ev(1)], actor="a")[0]
    b = s.append([_ev(2)], actor="a")[0]
    assert b.ts == a.ts == "2026-05-01T12:00:00.000000Z"
    s.close()


def test_seq_at_finds_the_last_event_at_or_before_a_time(store_factory: StoreFactory) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    ticks = iter(start + timedelta(minutes=i) for i in range(100))
    s = store_factory(projections=False, clock=lambda: next(ticks))
    for i in range(20):
        s.append([_ev(i)], actor="a")
    assert s.seq_at("2025-12-31T23:59:59.000000Z") == 0
    assert s.seq_at("2026-01-01T00:00:00.000000Z") == 1
    assert s.seq_at("2026-01-01T00:05:30.000000Z") == 6
    assert s.seq_at("2027-01-01T00:00:00.000000Z") == 20
    s.close()


def test_reads_go_in_bounded_chunks_without_blocking_a_writer(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    store.append([_ev(i) for i in range(10)], actor="a")
    reader = store_factory(create=False, projections=False, write=False)
    it = reader.read(chunk=3)
    got = [next(it).seq for _ in range(4)]  # mid-way through the second chunk
    # No read transaction is held between chunks' statements, and never a write lock: the
    # writer appends at once (busy timeout 0 would fail otherwise).
    writer = store_factory(create=False, projections=False, busy_timeout_ms=0)
    writer.append([RunStarted(run_id="x")], actor="a")
    writer.close()
    got += [r.seq for r in it]
    assert got[:10] == list(range(1, 11))
    reader.close()


def test_read_respects_bounds(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.append([_ev(i) for i in range(10)], actor="a")
    assert [r.seq for r in store.read(after_seq=3, until_seq=6, chunk=2)] == [4, 5, 6]
