"""Replay snapshots: taken as the log grows, used by replay, verifiable, and skipped when bad."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from eventlog.events import Event
from eventlog.store import EventStore
from projections import open_store, rebuild, snapshots, verify
from projections.replay import VIEWS, replay, view
from projections.snapshots import VIEW_SPECS, replay_views
from tests.outside import outside_executescript
from tests.strategies import event_groups


@pytest.fixture(autouse=True)
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "EVERY", 7)
    monkeypatch.setattr(snapshots, "FRAME_ROWS", 2)  # several frames per table


def _same_views(store: EventStore, seq: int) -> None:
    fast, _ = replay_views(store, seq)
    slow = replay(store, seq)
    for spec in VIEW_SPECS:
        assert list(fast.rows(spec)) == list(slow.rows(spec)), (seq, spec.name)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=event_groups(max_groups=30))
def test_views_from_a_snapshot_equal_a_fold_from_the_start(groups: list[list[Event]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "s.db", create=True)
        for group in groups:
            store.append(group, actor="prop")
        last = store.last_seq()
        for seq in range(1, last + 1):
            _same_views(store, seq)
        assert snapshots.verify(store) is None
        # Dead letters agree with the per-record status.
        slow = replay(store, last)
        dead = sorted(
            r[0] for r in slow.rows(slow.specs["record_status"]) if r[1] == "dead_lettered"
        )
        assert [r["record_key"] for r in view(slow, "dead-letters")] == dead
        store.close()


def _grow(db: Path, n_groups: int = 40) -> None:
    from tests.scenario import scenario

    store = open_store(db, create=True)
    for _ in range(n_groups // len(scenario()) + 1):
        for actor, group in scenario():
            store.append(group, actor=actor)
    store.close()


def test_snapshots_are_taken_as_the_log_crosses_each_multiple(db_path: Path) -> None:
    _grow(db_path)
    store = open_store(db_path)
    seqs = [r[0] for r in store.query("SELECT seq FROM replay_snapshots ORDER BY seq")]
    last = store.last_seq()
    assert len(seqs) >= last // 7 - 2 and seqs == sorted(set(seqs))
    base = replay_views(store, last)[1]
    assert base == seqs[-1] and last - base < 7 + 10  # folded only the tail
    rebuild(store)  # a rebuild takes them again, at exact multiples
    seqs = [r[0] for r in store.query("SELECT seq FROM replay_snapshots")]
    assert seqs == list(range(7, last + 1, 7))
    assert verify(store) is None
    store.close()


def test_a_damaged_snapshot_is_skipped_and_named(db_path: Path) -> None:
    _grow(db_path)
    store = open_store(db_path)
    seqs = [r[0] for r in store.query("SELECT seq FROM replay_snapshots ORDER BY seq")]
    bad = seqs[-1]
    outside_executescript(
        db_path,
        "UPDATE projection_gate SET open = 1; "
        f"UPDATE replay_snapshots SET state = x'00' WHERE seq = {bad}; "
        "UPDATE projection_gate SET open = 0;",
    )
    assert replay_views(store, store.last_seq())[1] == seqs[-2]  # the one before it is used
    _same_views(store, store.last_seq())
    damaged = snapshots.verify(store)
    assert damaged is not None and damaged.seq == bad and "damaged" in damaged.reason
    diff = verify(store)
    assert diff is not None and diff.table == "replay_snapshots"
    rebuild(store)
    assert verify(store) is None
    store.close()


def test_the_replay_cli_can_verify_snapshots(db_path: Path) -> None:
    from click.testing import CliRunner

    from replay import replay_cli

    _grow(db_path)
    result = CliRunner().invoke(replay_cli, ["--db", str(db_path), "--verify-snapshots"])
    assert result.exit_code == 0 and "every replay snapshot matches" in result.output
    assert set(VIEWS) == {"active-batches", "inflight", "failures", "dead-letters"}
