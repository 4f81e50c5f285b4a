"""The fence of several workers on one log (``commands.worker.leases.LeaseKeeper``), on both
backends: two keepers, each on its own connection to the same log, with one controllable clock.
A worker whose lease was taken over appends nothing for that partition, also when the takeover
commits between its own check and its write transaction."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from commands.config import Config, load_config
from commands.errors import LeaseLost
from commands.rules.leases import hash_partitions
from commands.worker.leases import LeaseKeeper
from eventlog.events import LeaseTakenOver, RunStarted
from eventlog.store import EventStore
from projections import open_store, queries
from tests.backends import Backend
from tests.pipeline import write_config

LEASE = 30.0


class Clock:
    """The log's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def two(tmp_path: Path, backend: Backend) -> Iterator[tuple[LeaseKeeper, LeaseKeeper, Clock]]:
    """Keepers ``a`` and ``b`` on one log (two connections), two partitions, a 30 s lease."""
    location = backend.new_location(tmp_path)
    if isinstance(location, Path):
        location.parent.mkdir(parents=True, exist_ok=True)
    database = {"url": location} if isinstance(location, str) else {}
    config = load_config(
        write_config(
            tmp_path,
            "http://127.0.0.1:9",
            workers={"mode": "shared", "partition_by": "school_hash", "partitions": 2}
            | {"lease_seconds": LEASE},
            database=database,
        )
    )
    clock = Clock()
    stores = [_open(config, clock), _open(config, clock)]
    a = LeaseKeeper(stores[0], config, "a", "run-a")
    b = LeaseKeeper(stores[1], config, "b", "run-b")
    try:
        yield a, b, clock
    finally:
        for s in stores:
            s.close()


def _open(config: Config, clock: Clock) -> EventStore:
    return open_store(config.log_location, create=True, clock=clock)


def _event(n: int) -> RunStarted:
    return RunStarted(run_id=f"probe-{n}", command="probe")


def _events(store: EventStore) -> list[Any]:
    return [r.event for r in store.read()]


def test_the_holder_appends_and_the_other_is_refused(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock],
) -> None:
    a, b, _ = two
    a.rebalance()
    b.rebalance()
    mine = sorted(a.held)[0]
    assert mine not in b.held
    assert a.append([_event(1)], mine)
    with pytest.raises(LeaseLost):
        b.append([_event(2)], mine)
    assert [e for e in _events(a.store) if isinstance(e, RunStarted)] == [_event(1)]


def test_a_takeover_committed_before_the_stale_transaction_opens_refuses_its_append(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock],
) -> None:
    """``a`` checked its lease (``owns``) while it held it; then it was paused past the lease
    and ``b`` took the partition over: ``a``'s append fails and appends nothing."""
    a, b, clock = two
    a.rebalance()
    partition = sorted(a.held)[0]
    assert a.owns(partition)
    clock.advance(LEASE + 1)
    b.rebalance()
    assert any(
        isinstance(e, LeaseTakenOver) and e.partition == partition and e.to_worker == "b"
        for e in _events(b.store)
    )
    with pytest.raises(LeaseLost):
        a.append([_event(1)], partition)
    assert [e for e in _events(b.store) if isinstance(e, RunStarted)] == []


def test_a_takeover_between_the_check_and_the_write_refuses_the_append(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is checked again inside the append's own write transaction: a takeover that
    commits after every check made before that transaction opened (here: as ``a``'s store is
    asked for its write transaction) still stops the append."""
    a, b, clock = two
    a.rebalance()
    partition = sorted(a.held)[0]
    opening = a.store.write

    def takeover_then_open() -> Any:
        clock.advance(LEASE + 1)
        b.rebalance()  # commits on b's own connection before a's transaction begins
        return opening()

    monkeypatch.setattr(a.store, "write", takeover_then_open)
    with pytest.raises(LeaseLost):
        a.append([_event(1)], partition)
    assert [e for e in _events(b.store) if isinstance(e, RunStarted)] == []
    assert queries.lease_of(b.store, partition).worker == "b"  # type: ignore[union-attr]


def test_partitions_are_the_hash_buckets(two: tuple[LeaseKeeper, LeaseKeeper, Clock]) -> None:
    a, b, _ = two
    a.rebalance()
    b.rebalance()
    assert sorted(a.held | b.held) == hash_partitions(2)


def test_workers_that_announce_before_taking_share_from_their_first_rebalance(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock],
) -> None:
    a, b, _ = two
    a.announce()
    b.announce()
    a.rebalance()  # the first to take: it counts the other already
    b.rebalance()
    assert len(a.held) == len(b.held) == 1


def test_a_worker_joining_later_gets_its_share_within_a_renewal_interval(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock],
) -> None:
    """``a`` took every partition alone; ``b`` joins. Looking every second (not renewing: no
    event unless something would change), ``a`` lets its excess go and ``b`` takes it, well
    before a third of a lease (the renewal interval) has passed."""
    a, b, clock = two
    a.announce()
    a.rebalance()
    assert len(a.held) == 2
    b.announce()
    b.rebalance()
    assert b.held == set()
    seq = a.store.last_seq()
    clock.advance(0.5)
    a.renew_if_due()  # looked less than a second ago (its rebalance): nothing yet
    assert a.store.last_seq() == seq and len(a.held) == 2
    for _ in range(3):
        clock.advance(1.0)
        a.renew_if_due()
        b.renew_if_due()
    assert len(a.held) == len(b.held) == 1
    assert (clock.now - a._last_renewal).total_seconds() < LEASE / 3  # type: ignore[operator]
    quiet = a.store.last_seq()
    clock.advance(1.0)
    a.renew_if_due()
    b.renew_if_due()
    assert a.store.last_seq() == quiet  # fair now: looking appends nothing


def test_letting_go_of_an_excess_is_logged_as_a_release_not_a_loss(
    two: tuple[LeaseKeeper, LeaseKeeper, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    a, b, clock = two
    caplog.set_level(logging.INFO, logger="commands.leases")
    a.rebalance()
    b.announce()
    caplog.clear()
    clock.advance(LEASE / 3)
    a.renew_if_due()  # its share is one now: it lets the other partition go
    assert len(a.held) == 1
    messages = [r.getMessage() for r in caplog.records if r.name == "commands.leases"]
    assert any(m.startswith("Lease released") for m in messages), messages
    assert not any("lost" in m for m in messages), messages
