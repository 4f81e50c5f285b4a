"""Replay snapshots as deltas: the table grows with the log, not with its square; a replay from
any chain equals a fold from the start; damage is passed over; full snapshots written before
deltas existed still load."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from eventlog.events import (
    BatchCompleted,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    RecordFailed,
    RecordValidated,
)
from eventlog.store import EventStore
from projections import open_store, rebuild, snapshots, verify
from projections.replay import replay
from projections.snapshots import VIEW_SPECS, replay_views
from tests.outside import outside_executescript
from tests.reads import scalar

PAGES = 50


@pytest.fixture(autouse=True)
def small_snapshots(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "EVERY", 100)
    monkeypatch.setattr(snapshots, "FRAME_ROWS", 7)  # several frames per table


def _batch(b: int) -> list[Event]:
    """One batch of ``PAGES`` new pages, a fifth of which fail (and stay failed): the failures
    view grows with the log, as in a months-long job."""
    keys = [f"State{b % 3}:School{b}:2020:{p}" for p in range(PAGES)]
    name, batch = f"gb-{b}", f"batches/{b}"
    out: list[Event] = [
        BatchSubmissionIntended(display_name=name, model="m", record_keys=keys),
        BatchSubmitted(batch_id=batch, display_name=name, model="m", record_keys=keys),
    ]
    for p, key in enumerate(keys):
        if p % 5 == 0:
            out.append(
                RecordFailed(
                    record_key=key,
                    batch_id=batch,
                    error_type="schema_violation",
                    message=f"text: Field required (page {p} of batch {b})",
                )
            )
        else:
            out.append(RecordValidated(record_key=key, batch_id=batch, output_path=f"/o/{key}"))
    out.append(BatchCompleted(batch_id=batch, validated=PAGES - PAGES // 5, failed=PAGES // 5))
    return out


def _log(path: Path, batches: int) -> EventStore:
    store = open_store(path, create=True)
    for b in range(batches):
        store.append(_batch(b), actor="run:test")
    return store


def _bytes(store: EventStore) -> int:
    return int(scalar(store, f"SELECT coalesce(sum(length(state)), 0) FROM {snapshots.TABLE}"))


def _growth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rebase: float) -> dict[str, float]:
    """Snapshot bytes of a log with 2N failures over those of one with N, taken as the log
    grows and by a rebuild."""
    monkeypatch.setattr(snapshots, "REBASE", rebase)
    small, large = _log(tmp_path / f"n{rebase}.db", 60), _log(tmp_path / f"2n{rebase}.db", 120)
    live = _bytes(large) / _bytes(small)
    rebuild(small)
    rebuild(large)
    rebuilt = _bytes(large) / _bytes(small)
    for store in (small, large):
        assert verify(store) is None
        store.close()
    return {"live": live, "rebuilt": rebuilt}


def test_snapshot_bytes_grow_with_the_log_not_its_square(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebase = snapshots.REBASE
    every_one_full = _growth(tmp_path, monkeypatch, rebase=0.0)  # what snapshots used to be
    assert min(every_one_full.values()) > 3.3, every_one_full  # ~4x: the square
    deltas = _growth(tmp_path, monkeypatch, rebase=rebase)
    assert max(deltas.values()) < 2.6, deltas  # ~2x: linear


def _same_views_everywhere(store: EventStore) -> None:
    """At points on every side of each snapshot: just before, at, just after, between."""
    last = store.last_seq()
    points = {1, last}
    for seq in _seqs(store):
        points.update(p for p in (seq - 1, seq, seq + 1, seq + 37) if 1 <= p <= last)
    for seq in sorted(points):
        fast, _ = replay_views(store, seq)
        slow = replay(store, seq)
        for spec in VIEW_SPECS:
            assert list(fast.rows(spec)) == list(slow.rows(spec)), (seq, spec.name)


@pytest.mark.parametrize("rebase", [0.0, 1.0, 1e9], ids=["all-full", "default", "one-chain"])
def test_replay_from_any_chain_equals_a_fold_from_the_start(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, rebase: float
) -> None:
    monkeypatch.setattr(snapshots, "REBASE", rebase)
    store = _log(db_path, 25)
    kinds = [
        snapshots.base_of(bytes(r[0])) for r in store.query("SELECT state FROM replay_snapshots")
    ]
    assert kinds[0] is None and len(kinds) > 5
    if rebase == 1e9:
        assert all(k is not None for k in kinds[1:])  # one full snapshot, then deltas
    _same_views_everywhere(store)
    assert snapshots.verify(store) is None and verify(store) is None
    rebuild(store)
    _same_views_everywhere(store)
    assert snapshots.verify(store) is None
    store.close()


def _seqs(store: EventStore) -> list[int]:
    return [r[0] for r in store.query("SELECT seq FROM replay_snapshots ORDER BY seq")]


def _damage(db: Path, seq: int) -> None:
    outside_executescript(
        db,
        "UPDATE projection_gate SET open = 1; "
        f"UPDATE replay_snapshots SET state = x'00' WHERE seq = {seq}; "
        "UPDATE projection_gate SET open = 0;",
    )


def test_a_damaged_delta_is_passed_over_with_every_delta_after_it(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "REBASE", 1e9)
    store = _log(db_path, 25)
    seqs = _seqs(store)
    bad = seqs[3]
    _damage(db_path, bad)
    last = store.last_seq()
    assert replay_views(store, last)[1] == seqs[2]  # the delta before the damaged one
    _same_views_everywhere(store)
    named = snapshots.verify(store)
    assert named is not None and named.seq == bad and "damaged" in named.reason
    diff = verify(store)
    assert diff is not None and diff.table == "replay_snapshots" and diff.key == [bad]
    # The next snapshot is a delta on the newest good one, and replays use it.
    before = _seqs(store)
    store.append(_batch(98) + _batch(99), actor="run:test")
    newest = _seqs(store)[-1]
    [blob] = store.query_one("SELECT state FROM replay_snapshots WHERE seq = ?", (newest,)) or []
    assert newest not in before and snapshots.base_of(bytes(blob)) == seqs[2]
    assert replay_views(store, store.last_seq())[1] == newest
    _same_views_everywhere(store)
    rebuild(store)
    assert verify(store) is None
    store.close()


def test_a_delta_whose_base_is_gone_is_not_used(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "REBASE", 1e9)
    store = _log(db_path, 25)
    seqs = _seqs(store)
    outside_executescript(
        db_path,
        "UPDATE projection_gate SET open = 1; "
        f"DELETE FROM replay_snapshots WHERE seq = {seqs[2]}; "
        "UPDATE projection_gate SET open = 0;",
    )
    assert replay_views(store, store.last_seq())[1] == seqs[1]
    _same_views_everywhere(store)
    named = snapshots.verify(store)
    assert (
        named is not None and named.seq == seqs[3] and "not on the snapshot before" in named.reason
    )
    store.close()


def test_full_snapshots_written_before_deltas_load_and_deltas_follow_them(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshots, "REBASE", 0.0)  # every snapshot full: the format before
    store = _log(db_path, 12)
    old = _seqs(store)
    assert all(
        snapshots.base_of(bytes(r[0])) is None
        for r in store.query("SELECT state FROM replay_snapshots")
    )
    monkeypatch.setattr(snapshots, "REBASE", 1e9)
    for b in range(12, 24):
        store.append(_batch(b), actor="run:test")
    new = [s for s in _seqs(store) if s not in old]
    [first] = [
        r[0] for r in store.query("SELECT state FROM replay_snapshots WHERE seq = ?", (new[0],))
    ]
    assert snapshots.base_of(bytes(first)) == old[-1]
    _same_views_everywhere(store)
    assert snapshots.verify(store) is None and verify(store) is None
    store.close()


def _rewrite(
    store: EventStore, db: Path, seq: int, edit: Callable[[list[tuple[str, list[Any]]]], None]
) -> None:
    """Re-encode snapshot ``seq`` with ``edit`` applied to its frames, under a digest that
    matches: a snapshot as a faulty writer would have stored it."""
    [blob] = store.query_one("SELECT state FROM replay_snapshots WHERE seq = ?", (seq,)) or []
    frames = list(snapshots.frames(bytes(blob)))
    edit(frames)
    new, digest = snapshots._pack(frames)
    outside_executescript(
        db,
        "UPDATE projection_gate SET open = 1; "
        f"UPDATE replay_snapshots SET state = x'{new.hex()}', digest = '{digest}' "
        f"WHERE seq = {seq}; UPDATE projection_gate SET open = 0;",
    )


def _failure_rows(frames: list[tuple[str, list[Any]]]) -> list[Any]:
    return next(rows for name, rows in frames if name == "failure_counts")


def _count_plus_one(frames: list[tuple[str, list[Any]]]) -> None:
    _failure_rows(frames)[0][5] += 1  # the count column


def _drop_a_change(frames: list[tuple[str, list[Any]]]) -> None:
    _failure_rows(frames).pop()


@pytest.mark.parametrize("edit", [_count_plus_one, _drop_a_change], ids=["wrong", "short"])
def test_a_delta_that_is_not_the_change_is_named(
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    edit: Callable[[list[tuple[str, list[Any]]]], None],
) -> None:
    monkeypatch.setattr(snapshots, "REBASE", 1e9)
    store = _log(db_path, 25)
    seqs = _seqs(store)
    assert (
        snapshots.base_of(
            bytes(store.query("SELECT state FROM replay_snapshots WHERE seq = ?", (seqs[4],))[0][0])
        )
        == seqs[3]
    )
    _rewrite(store, db_path, seqs[4], edit)
    named = snapshots.verify(store)
    assert named is not None and named.seq == seqs[4] and "differ" in named.reason
    diff = verify(store)
    assert diff is not None and diff.table == "replay_snapshots" and diff.key == [seqs[4]]
    store.close()
