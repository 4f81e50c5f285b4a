"""A record's history (``replay.py --record``) is read through the log's indexes, and is the same
history a scan of the whole log finds."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings

from eventlog.errors import AppendOnlyViolation
from eventlog.events import Event, record_keys_of
from eventlog.store import EventStore
from projections import open_store
from projections.dashboard_sql import Pricing, canned_queries
from projections.replay import RECORD_SQL, HistoryEntry, record_history, streams_sql
from tests.backends import StoreFactory
from tests.scenario import A, B, C, D, scenario
from tests.strategies import KEYS, event_groups


def scan_history(store: EventStore, key: str, until_seq: int) -> list[HistoryEntry]:
    """The history as ``replay.py --record`` found it before the index: every event of the log
    read in order (the reference the index's answer is held to)."""
    batches: set[str] = set()
    out: list[HistoryEntry] = []
    decode = store.registry.decode
    for raw in store.read_raw(until_seq=until_seq):
        if key not in raw.payload and raw.stream not in batches:
            continue
        event = decode(raw.type, raw.version, raw.payload, raw.seq)
        names_key = key in record_keys_of(event)
        if names_key:
            for attr in ("batch_id", "display_name"):
                value = getattr(event, attr, None)
                if value:
                    batches.add(value)
        elif raw.stream not in batches:
            continue
        data = msgspec.to_builtins(event)
        if "record_keys" in data:
            data["record_keys"] = f"{len(data['record_keys'])} keys"
        out.append(HistoryEntry(raw.seq, raw.ts, raw.type, raw.actor, data))
    return out


def _points(last: int) -> list[int]:
    return sorted({1, max(1, last // 3), max(1, last // 2), max(1, last - 1), last})


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=event_groups(max_groups=40))
def test_the_history_by_index_equals_a_scan_of_the_whole_log(groups: list[list[Event]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "h.db", create=True)
        for group in groups:
            store.append(group, actor="prop")
        last = store.last_seq()
        for key in KEYS:
            for until in _points(last):
                assert record_history(store, key, until) == scan_history(store, key, until)
        store.close()


def test_the_scenario_history_is_the_scan_on_every_backend(store_factory: StoreFactory) -> None:
    store = store_factory()
    for actor, group in scenario():
        store.append(group, actor=actor)
    last = store.last_seq()
    for key in (A, B, C, D, "Nowhere:None:2020:1"):
        for until in range(1, last + 1):
            assert record_history(store, key, until) == scan_history(store, key, until), (
                key,
                until,
            )
    types = [h.type for h in record_history(store, B, last)]
    assert {"BatchSubmitted", "BatchFailed", "FailuresReset", "BatchCleared"} <= set(types)


def _plan(store: EventStore, sql: str, params: tuple[Any, ...]) -> str:
    return "\n".join(str(r[-1]) for r in store.query(f"EXPLAIN QUERY PLAN {sql}", params))


def test_a_history_is_read_through_the_indexes_not_a_scan(store: EventStore) -> None:
    for actor, group in scenario():
        store.append(group, actor=actor)
    record = _plan(store, RECORD_SQL, (B, B, 100))
    assert "INDEX events_by_stream (stream=?" in record
    assert "event_record_keys USING PRIMARY KEY (record_key=?" in record
    assert "SCAN events" not in record, record
    streams = _plan(store, streams_sql(2), ("b1", "b2", 100))
    assert "INDEX events_by_stream (stream=?" in streams and "SCAN events" not in streams, streams
    [dashboard] = [
        q.sql for q in canned_queries(Pricing([], 0.5, "m"), 3, []) if q.name == "record_history"
    ]
    plan = _plan(store, dashboard.replace(":record_key", "?"), (B,))
    assert "INDEX events_by_stream (stream=?" in plan and "SCAN events" not in plan, plan


def _index_rows(store: EventStore) -> list[tuple[Any, ...]]:
    return store.query("SELECT record_key, seq FROM event_record_keys ORDER BY record_key, seq")


def test_the_index_lists_each_key_an_event_names_besides_its_stream(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    for actor, group in scenario():
        store.append(group, actor=actor)
    want = sorted(
        {
            (key, rec.seq)
            for rec in store.read()
            for key in record_keys_of(rec.event)
            if key != rec.stream
        }
    )
    assert want and [tuple(r) for r in _index_rows(store)] == want


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE event_record_keys SET seq = seq + 1",
        "DELETE FROM event_record_keys",
    ],
)
def test_the_index_is_append_only_like_the_log(store_factory: StoreFactory, sql: str) -> None:
    store = store_factory()
    for actor, group in scenario():
        store.append(group, actor=actor)
    before = _index_rows(store)
    with pytest.raises(AppendOnlyViolation):
        store_factory.backend.raw_execute(store_factory.location, sql)
    assert _index_rows(store) == before


_BACK_TO_1 = {
    "sqlite": (
        "DROP INDEX events_by_stream; DROP TABLE event_record_keys; PRAGMA user_version = 1;"
    ),
    "postgresql": (
        "DROP INDEX events_by_stream; DROP TABLE event_record_keys; "
        "UPDATE meta SET value = '1' WHERE key = 'schema_version';"
    ),
}


def test_a_log_written_before_the_index_gets_it_when_opened(store_factory: StoreFactory) -> None:
    """Schema 2's migration backfills exactly the rows the appends wrote."""
    store = store_factory()
    for actor, group in scenario():
        store.append(group, actor=actor)
    appended = _index_rows(store)
    histories = {k: record_history(store, k, store.last_seq()) for k in (A, B, C, D)}
    store.close()
    backend = store_factory.backend
    if backend.name == "sqlite":
        conn = sqlite3.connect(store_factory.location)
        conn.executescript(_BACK_TO_1["sqlite"])
        conn.close()
    else:
        backend.raw_execute(store_factory.location, _BACK_TO_1["postgresql"])
    reopened = store_factory(create=False)
    assert _index_rows(reopened) == appended
    assert {k: record_history(reopened, k, reopened.last_seq()) for k in histories} == histories
