from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import apsw
import pytest
from click.testing import CliRunner

from eventlog.errors import ReplayRangeError
from eventlog.store import EventStore
from projections import memory_rows, open_store, snapshot_rows
from projections.replay import VIEWS, replay, resolve_until
from replay import replay_cli
from tests.conftest import run_cli
from tests.scenario import B, all_events

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)

#: The store the scenario was appended to, and the live projection rows after each sequence number.
Stepped = tuple[EventStore, dict[int, dict[str, list[tuple[Any, ...]]]]]


def _clock() -> Callable[[], datetime]:
    ticks = iter(START + timedelta(minutes=i) for i in range(10_000))
    return lambda: next(ticks)


@pytest.fixture
def stepped(db_path: Path) -> Stepped:
    """The scenario appended one event per transaction, live projections captured after each."""
    store = open_store(db_path, create=True, clock=_clock())
    captures: dict[int, dict[str, list[tuple[Any, ...]]]] = {}
    for event in all_events():
        [rec] = store.append([event], actor="run:test")
        captures[rec.seq] = snapshot_rows(store)
    return store, captures


def _cli(db: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(replay_cli, ["--db", str(db), *args])
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def test_replay_until_every_sequence_number_reproduces_the_live_captures(stepped: Stepped) -> None:
    store, captures = stepped
    assert len(captures) == len(all_events()) > 30
    for seq, live in captures.items():
        assert memory_rows(replay(store, seq)) == live, f"differs at event {seq}"


def test_replay_cli_json_at_every_sequence_number_matches_the_captures(
    stepped: Stepped, db_path: Path
) -> None:
    _store, captures = stepped
    for seq, live in captures.items():
        code, out = _cli(db_path, "--until", str(seq), "--json")
        assert code == 0, out
        shown = json.loads(out)
        assert shown["until_seq"] == seq
        for name, spec in VIEWS.items():
            rows = [list(r) for r in live[spec.name]]
            assert [list(r.values()) for r in shown[name]] == rows, (seq, name)
        dead = [r[0] for r in live["record_status"] if r[1] == "dead_lettered"]
        assert [r["record_key"] for r in shown["dead-letters"]] == dead


def test_until_a_time_replays_everything_stored_at_or_before_it(
    stepped: Stepped, db_path: Path
) -> None:
    store, captures = stepped
    # Event n was stamped START + (n-1) minutes.
    code, out = _cli(db_path, "--until", "2026-11-28T09:10:30Z", "--json")
    assert code == 0 and json.loads(out)["until_seq"] == 11
    assert resolve_until(store, "2026-11-28T09:00:00+00:00") == 1
    # A time without an offset is UTC; one after the last event (but not in the future) is the end.
    assert resolve_until(store, "2026-11-28T09:05:00") == 6
    assert resolve_until(store, "2026-11-28T23:00:00Z", now=START + timedelta(days=1)) == len(
        captures
    )


@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("0", "before the first event"),
        ("99999", "in the future: the log ends at sequence"),
        ("2020-01-01T00:00:00Z", "before the first event"),
        ("2999-01-01T00:00:00Z", "in the future"),
        ("yesterday", "neither a sequence number nor an ISO 8601 time"),
    ],
)
def test_until_out_of_range_is_a_one_line_error(
    stepped: Stepped, db_path: Path, until: str, message: str
) -> None:
    code, out = _cli(db_path, "--until", until)
    assert code == 1
    assert message in out and out.count("\n") == 1 and "Traceback" not in out


def test_an_empty_log_cannot_be_replayed(db_path: Path) -> None:
    open_store(db_path, create=True).close()
    with pytest.raises(ReplayRangeError, match="the log is empty"):
        resolve_until(EventStore.open(db_path, write=False), None)


def test_record_history_lists_every_event_that_touched_the_record(
    stepped: Stepped, db_path: Path
) -> None:
    code, out = _cli(db_path, "--record", B, "--json")
    assert code == 0
    types = [h["type"] for h in json.loads(out)["history"]]
    assert types[:4] == [
        "FileUploaded",
        "BatchSubmissionIntended",
        "BatchSubmitted",
        "BatchStateObserved",
    ]
    assert "BatchFailed" in types and "RecordDeadLettered" in types
    assert "FailuresReset" in types and "BatchCleared" in types
    assert types.count("RecordFailed") == 3
    code, out = _cli(db_path, "--record", B, "--until", "6", "--json")
    assert [h["seq"] for h in json.loads(out)["history"]][-1] <= 6


def test_verify_chain_reports_intact_then_names_a_tampered_row(
    stepped: Stepped, db_path: Path
) -> None:
    store, _ = stepped
    code, out = _cli(db_path, "--verify-chain")
    assert code == 0 and f"intact through event {store.last_seq()}" in out
    import sqlite3

    conn = sqlite3.connect(db_path)
    conn.executescript(
        "DROP TRIGGER events_refuse_update; UPDATE events SET actor = 'mallory' WHERE seq = 12;"
    )
    conn.close()
    code, out = _cli(db_path, "--verify-chain")
    assert code == 1 and "hash chain broken at event 12" in out


def test_replay_works_while_a_writer_holds_the_write_lock(stepped: Stepped, db_path: Path) -> None:
    _store, _captures = stepped
    writer = apsw.Connection(str(db_path))
    writer.execute("BEGIN IMMEDIATE")
    try:
        code, out = _cli(db_path, "--until", "20", "--show", "failures", "--json")
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert code == 0 and json.loads(out)["until_seq"] == 20


def test_replay_script_runs_as_a_real_program(stepped: Stepped, db_path: Path) -> None:
    result = run_cli(
        "--db", str(db_path), "--until", "12", "--show", "inflight", script="replay.py"
    )
    assert result.code == 0, result.err
    _store, captures = stepped
    expected = captures[12]["inflight_records"]
    assert expected and f"inflight ({len(expected)})" in result.out
    assert all(row[0] in result.out for row in expected)
