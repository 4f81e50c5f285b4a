"""Table tests for the partition lease rules (commands/rules/leases.py): pure, no database."""

from __future__ import annotations

import zlib
from datetime import UTC, datetime, timedelta

import pytest

from commands.rules.leases import (
    announce,
    decide,
    fair_share,
    hash_partitions,
    holds,
    is_live,
    partition_of,
    partition_of_key,
    renewal_due,
    worth_rebalancing,
)
from eventlog.events import LeaseAcquired, LeaseReleased, LeaseRenewed, LeaseTakenOver
from eventlog.timestamps import format_ts
from projections.leases import Lease
from projections.workers import WorkerRow

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
LEASE = 60.0
PARTS = ["A", "B", "C", "D"]


def at(seconds: float) -> str:
    return format_ts(NOW + timedelta(seconds=seconds))


def lease(partition: str, worker: str, expires_in: float) -> Lease:
    return Lease(partition, worker, at(-10), at(-10), at(expires_in))


def worker(name: str, expires_in: float) -> WorkerRow:
    return WorkerRow(name, f"run-{name}", at(-100), at(-10), at(expires_in))


def summary(events: list[object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {"renewed": [], "acquired": [], "taken": [], "released": []}
    for e in events:
        if isinstance(e, LeaseRenewed):
            out["renewed"] = list(e.partitions)
        elif isinstance(e, LeaseAcquired):
            out["acquired"].append(e.partition)
        elif isinstance(e, LeaseTakenOver):
            out["taken"].append(f"{e.partition}<-{e.from_worker}")
        elif isinstance(e, LeaseReleased):
            out["released"].append(e.partition)
    return out


CASES = [
    # (what, leases, workers, expected for worker "me")
    ("alone on a fresh log: takes everything", [], [], {"acquired": PARTS}),
    (
        "a second live worker: takes half of what is free",
        [],
        [worker("other", 30)],
        {"acquired": ["A", "B"]},
    ),
    (
        "the other holds all four and is live: nothing free, nothing taken",
        [lease(p, "other", 30) for p in PARTS],
        [worker("other", 30)],
        {},
    ),
    (
        "holds all four, a second worker is live: keeps its share, releases the rest",
        [lease(p, "me", 30) for p in PARTS],
        [worker("me", 30), worker("other", 30)],
        {"renewed": ["A", "B"], "released": ["C", "D"]},
    ),
    (
        "the other's leases lapsed: taken over, up to the share (the dead one is not live)",
        [lease(p, "other", -1) for p in PARTS],
        [worker("other", -1)],
        {"taken": ["A<-other", "B<-other", "C<-other", "D<-other"]},
    ),
    (
        "three workers, one dead: the live two share its partitions",
        [
            lease("A", "me", 30),
            lease("B", "two", 30),
            lease("C", "dead", -5),
            lease("D", "two", 30),
        ],
        [worker("two", 30), worker("dead", -5)],
        {"renewed": ["A"], "taken": ["C<-dead"]},
    ),
    (
        "free partitions before lapsed ones",
        [lease("A", "dead", -5)],
        [worker("other", 30), worker("dead", -5)],
        {"acquired": ["B", "C"]},
    ),
    (
        "its own expired lease nobody took: renewed, not taken over",
        [lease("A", "me", -5), lease("B", "me", 20)],
        [worker("other", 30)],
        {"renewed": ["A", "B"]},
    ),
    (
        "a lease expiring exactly now has lapsed",
        [lease(p, "other", 0) for p in PARTS],
        [],
        {"taken": ["A<-other", "B<-other", "C<-other", "D<-other"]},
    ),
    (
        "a partition that no longer exists is released",
        [lease("Z", "me", 30)],
        [worker("other", 30), worker("third", 30), worker("fourth", 30)],
        {"acquired": ["A"], "released": ["Z"]},
    ),
]


@pytest.mark.parametrize(
    ("what", "leases", "workers", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_decide(
    what: str, leases: list[Lease], workers: list[WorkerRow], expected: dict[str, list[str]]
) -> None:
    events = decide(
        leases, workers, me="me", run_id="run-me", partitions=PARTS, now=NOW, lease_seconds=LEASE
    )
    assert isinstance(events[0], LeaseRenewed)  # always: the heartbeat others count
    assert events[0].expires_at == at(LEASE) and events[0].run_id == "run-me"
    got = summary(list(events))
    assert got == {"renewed": [], "acquired": [], "taken": [], "released": []} | expected
    for e in events:
        if isinstance(e, LeaseAcquired | LeaseTakenOver):
            assert e.expires_at == at(LEASE)


ENDED_CASES = [
    # (what, workers, ended runs, expected for worker "me")
    (
        "the other's run finished (its leases released) before its renewal lapsed: not live, "
        "everything taken",
        [worker("other", 30)],
        {"run-other"},
        {"acquired": PARTS},
    ),
    (
        "an earlier run of the same worker ended; its current run did not: still live",
        [worker("other", 30)],
        {"run-other-before"},
        {"acquired": ["A", "B"]},
    ),
    (
        "one of two others finished: the share is of two live workers",
        [worker("other", 30), worker("gone", 30)],
        {"run-gone"},
        {"acquired": ["A", "B"]},
    ),
]


@pytest.mark.parametrize(
    ("what", "workers", "ended", "expected"), ENDED_CASES, ids=[c[0] for c in ENDED_CASES]
)
def test_a_worker_whose_run_ended_is_not_live(
    what: str, workers: list[WorkerRow], ended: set[str], expected: dict[str, list[str]]
) -> None:
    events = decide(
        [],
        workers,
        me="me",
        run_id="run-me",
        partitions=PARTS,
        now=NOW,
        lease_seconds=LEASE,
        ended_runs=ended,
    )
    got = summary(list(events))
    assert got == {"renewed": [], "acquired": [], "taken": [], "released": []} | expected


@pytest.mark.parametrize(
    ("expires_in", "ended", "live"),
    [(30, set(), True), (30, {"run-w"}, False), (0, set(), False), (-5, set(), False)],
)
def test_is_live(expires_in: float, ended: set[str], live: bool) -> None:
    assert is_live(worker("w", expires_in), at(0), ended) is live


def test_two_workers_deciding_in_turn_never_share_a_partition() -> None:
    """Folding each decision before the next (as the write transaction does) converges on a
    split where every partition has exactly one holder and nobody holds more than its share."""
    table: dict[str, Lease] = {}
    rows: dict[str, WorkerRow] = {}
    for turn in range(6):
        me = ("a", "b", "c")[turn % 3]
        for e in decide(
            list(table.values()),
            list(rows.values()),
            me=me,
            run_id=me,
            partitions=PARTS,
            now=NOW,
            lease_seconds=LEASE,
        ):
            if isinstance(e, LeaseRenewed):
                rows[me] = WorkerRow(me, me, at(0), at(0), e.expires_at)
            elif isinstance(e, LeaseAcquired):
                assert e.partition not in table
                table[e.partition] = Lease(e.partition, me, at(0), at(0), e.expires_at)
            elif isinstance(e, LeaseReleased):
                del table[e.partition]
    holders = {p: lease.worker for p, lease in table.items()}
    assert sorted(holders) == PARTS
    counts = [list(holders.values()).count(w) for w in "abc"]
    assert max(counts) <= fair_share(4, 3) and sum(counts) == 4


@pytest.mark.parametrize(
    ("partitions", "live", "share"),
    [(4, 1, 4), (4, 2, 2), (4, 3, 2), (5, 2, 3), (2, 3, 1), (8, 0, 8)],
)
def test_fair_share(partitions: int, live: int, share: int) -> None:
    assert fair_share(partitions, live) == share


@pytest.mark.parametrize(
    ("lease_", "margin", "expected"),
    [
        (None, 0, False),
        (lease("A", "other", 30), 0, False),
        (lease("A", "me", 30), 0, True),
        (lease("A", "me", 30), 20, True),
        (lease("A", "me", 30), 30, False),  # not strictly more than the margin left
        (lease("A", "me", -1), 0, False),
    ],
)
def test_holds(lease_: Lease | None, margin: float, expected: bool) -> None:
    assert holds(lease_, "me", NOW, margin) is expected


@pytest.mark.parametrize(
    ("last", "due"),
    [
        (None, True),
        (NOW, False),
        (NOW - timedelta(seconds=19), False),
        (NOW - timedelta(seconds=20), True),
    ],
)
def test_renewal_due_every_third_of_a_lease(last: datetime | None, due: bool) -> None:
    assert renewal_due(last, NOW, 60.0) is due


def test_partitions_are_stable_and_named_to_sort() -> None:
    assert partition_of("Ohio", "Lincoln High", by="state", partitions=8) == "Ohio"
    expected = zlib.crc32(b"Ohio/Lincoln High") % 16
    assert (
        partition_of("Ohio", "Lincoln High", by="school_hash", partitions=16) == f"{expected:02d}"
    )
    assert partition_of_key("Ohio:Lincoln High:2021:3", by="school_hash", partitions=16) == (
        f"{expected:02d}"
    )
    assert partition_of_key("Ohio:Lincoln High:2021:3", by="state", partitions=16) == "Ohio"
    assert hash_partitions(12) == [f"{i:02d}" for i in range(12)]
    assert hash_partitions(1) == ["0"]
    names = {partition_of(f"S{i}", "x", by="school_hash", partitions=12) for i in range(200)}
    assert names == set(hash_partitions(12))


def test_announce_is_a_renewal_of_no_partition() -> None:
    e = announce("w", "run-1", NOW, 30.0)
    assert (e.worker, e.partitions, e.run_id) == ("w", [], "run-1")
    assert e.expires_at == at(30)


@pytest.mark.parametrize(
    ("leases", "workers", "worth"),
    [
        # alone, holding all: fair
        ([lease(p, "me", 30) for p in PARTS], [], False),
        # a second live worker joined: me holds 4 > 2
        ([lease(p, "me", 30) for p in PARTS], [worker("b", 30)], True),
        # that worker's renewal lapsed: fair again
        ([lease(p, "me", 30) for p in PARTS], [worker("b", -1)], False),
        # me holds 1 < 2, b 3 > 2: nothing free yet (b lets one go at its own look)
        ([lease("A", "me", 30), *(lease(p, "b", 30) for p in "BCD")], [worker("b", 30)], False),
        # and once it did, one is free: worth taking
        ([lease("A", "me", 30), lease("B", "b", 30), lease("C", "b", 30)], [worker("b", 30)], True),
        (
            [lease("A", "me", 30), lease("B", "me", 30)] + [lease(p, "b", 30) for p in "CD"],
            [worker("b", 30)],
            False,
        ),
        # short, and a partition lapsed: worth taking
        (
            [lease("A", "me", 30), lease("B", "b", -1)] + [lease(p, "b", 30) for p in "CD"],
            [worker("b", 30)],
            True,
        ),
        # short, nothing free or lapsed: not worth an event
        (
            [lease("A", "me", 30)] + [lease(p, "c", 30) for p in "BCD"],
            [worker("b", 30), worker("c", 30)],
            False,
        ),
    ],
)
def test_worth_rebalancing(leases: list[Lease], workers: list[WorkerRow], worth: bool) -> None:
    assert worth_rebalancing(leases, workers, me="me", partitions=PARTS, now=NOW) is worth
