"""Property, on every backend: N writer processes appending at once never make a gap, a
duplicate sequence number or a broken chain, and the projections still equal a rebuild.

A seeded stress run, bounded in time: each writer appends transactions of random sizes (its
own seed) with random pauses, all released together."""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

from eventlog.errors import DatabaseBusy
from eventlog.events import FileUploaded
from projections import open_store, verify
from tests.backends import StoreFactory

WRITERS = 4
TRANSACTIONS = 25
SEED = 1414


def _event(writer: int, i: int) -> FileUploaded:
    return FileUploaded(
        record_key=f"W{writer}:X:2020:{i}",
        file_name=f"files/{writer}-{i}",
        file_uri="u",
        mime_type="image/png",
        size_bytes=i,
    )


def _writer(location: Any, writer: int, start_at: float, done: Any) -> None:
    rng = random.Random(SEED + writer)
    store = open_store(location, busy_timeout_ms=30_000)
    time.sleep(max(0.0, start_at - time.time()))
    n = 0
    for _ in range(TRANSACTIONS):
        size = rng.randint(1, 20)
        store.append([_event(writer, n + k) for k in range(size)], actor=f"writer:{writer}")
        n += size
        time.sleep(rng.random() * 0.01)
    store.close()
    done.put((writer, n))


def test_concurrent_writers_keep_the_sequence_dense_and_the_chain_whole(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()  # created (schema and projections) before the writers start
    ctx = multiprocessing.get_context("spawn")
    done = ctx.Queue()
    start_at = time.time() + 3.0  # every writer imported and connected by then
    procs = [
        ctx.Process(target=_writer, args=(store_factory.location, w, start_at, done))
        for w in range(WRITERS)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0, f"writer process exited {p.exitcode}"
    written = dict(done.get(timeout=5) for _ in procs)
    total = sum(written.values())
    assert store.last_seq() == total
    assert store.verify_chain() is None  # no gap, no duplicate, every hash links
    rows = list(store.read_raw())
    assert [r.seq for r in rows] == list(range(1, total + 1))
    for w, n in written.items():
        mine = [r for r in rows if r.actor == f"writer:{w}"]
        assert len(mine) == n
    assert verify(store) is None


def test_a_writer_waits_for_the_lock_then_gives_up_with_busy(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    """While one transaction appends, a second writer with a short busy timeout fails with
    DatabaseBusy, and the first commits untouched."""
    store = store_factory()
    other = store_factory(create=False, busy_timeout_ms=50)
    with store.write() as w:
        w.append([_event(0, 1)], actor="a")
        with pytest.raises(DatabaseBusy, match="locked"):
            other.append([_event(1, 1)], actor="b")
    assert store.last_seq() == 1
    other.append([_event(1, 1)], actor="b")
    assert store.last_seq() == 2 and store.verify_chain() is None
