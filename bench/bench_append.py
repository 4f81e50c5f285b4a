"""Appending with group commit, through the public API (hash chain included), against a raw apsw
``executemany`` of the same encoded rows (same table, same pragmas) and the ``eventsourcing``
library (SQLite, ``Application.save``) saving the same payloads; then the same appends on
PostgreSQL (``bench/pg.py``: a throwaway server, or ``$GB_BENCH_POSTGRES_URL``) beside SQLite's.

    uv run --group bench python bench/bench_append.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from common import REPEATS, line, median_time
from peer import eventsourcing_app
from workload import events

from eventlog.chain import GENESIS_HASH, chain_hash
from eventlog.connection import apply_settings, connect
from eventlog.events import REGISTRY
from eventlog.store import EventStore, utc_now
from eventlog.timestamps import format_ts
from projections import open_store

N = int(os.environ.get("BENCH_APPEND_EVENTS", "200000"))
GROUP = 1000


def _chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run(tmp: Path) -> list[dict]:
    evs = list(events(N))[:N]
    groups = _chunks(evs, GROUP)
    path = tmp / "bench.db"

    def fresh() -> None:
        for p in tmp.glob("bench*"):
            p.unlink() if p.is_file() else shutil.rmtree(p)
        EventStore.open(path, create=True).close()

    def ours(projector: bool) -> None:
        store = open_store(path) if projector else EventStore.open(path)
        for g in groups:
            store.append(g, actor="run:bench")
        store.close()

    # The raw baseline inserts exactly the rows ours writes, encoded and hashed beforehand.
    rows, prev, ts = [], GENESIS_HASH, format_ts(utc_now())
    for seq, e in enumerate(evs, 1):
        payload = REGISTRY.encode(e).decode()
        t = type(e).__name__
        prev = chain_hash(prev, seq, ts, t, e.stream(), "run:bench", 1, payload)
        rows.append((seq, ts, t, e.stream(), "run:bench", 1, payload, prev))
    row_groups = _chunks(rows, GROUP)

    def raw() -> None:
        conn = connect(path, create=False)
        apply_settings(conn)
        sql = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        for g in row_groups:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, g)
            conn.execute("COMMIT")
        conn.close()

    t_raw = median_time(raw, setup=fresh)
    t_log = median_time(lambda: ours(False), setup=fresh)
    t_proj = median_time(lambda: ours(True), setup=fresh)
    out = [
        line(
            "append, log only, group commit (public API, hash chain)",
            N / t_log,
            "events/s",
            N / t_raw,
            "raw apsw executemany",
            ">= 0.5x raw",
        ),
        line(
            "append with every projection updated in the same transaction",
            N / t_proj,
            "events/s",
            N / t_raw,
            "raw apsw executemany",
            "(for information)",
        ),
    ]
    out += _postgres(groups, row_groups, N / t_log, N / t_proj)
    peer = _eventsourcing(tmp, evs)
    if peer is not None:
        out.append(
            line(
                "append vs eventsourcing Application.save",
                N / t_log,
                "events/s",
                peer,
                "eventsourcing",
                ">= 5x eventsourcing",
            )
        )
    return out


def _postgres(
    groups: list[list[Any]], row_groups: list[list[Any]], sqlite_log: float, sqlite_proj: float
) -> list[dict]:
    """The same appends on PostgreSQL (each repeat into a fresh schema), beside SQLite's and
    beside the server's own limit: a plain ``executemany`` of the same encoded rows, a
    transaction per group, into a plain table (no trigger, no lock) on the same server."""
    import pg

    from eventlog.postgres import PostgresEventStore
    from eventlog.postgres import connect as pg_connect
    from tests.postgres import new_schema_url

    with pg.server() as url:
        if url is None:
            return []
        where: list[str] = []

        def fresh() -> None:
            where[:] = [new_schema_url(url)]
            PostgresEventStore.open_url(where[0], create=True).close()

        def ours(projector: bool) -> None:
            loc = where[0]
            store = open_store(loc) if projector else PostgresEventStore.open_url(loc)
            for g in groups:
                store.append(g, actor="run:bench")
            store.close()

        def raw() -> None:
            conn = pg_connect(where[0], busy_timeout_ms=10_000)
            conn.execute(
                "CREATE TABLE plain (seq BIGINT PRIMARY KEY, ts TEXT, type TEXT, stream TEXT, "
                "actor TEXT, version INTEGER, payload TEXT, hash TEXT)"
            )
            for g in row_groups:
                conn.execute("BEGIN")
                conn.executemany("INSERT INTO plain VALUES (?, ?, ?, ?, ?, ?, ?, ?)", g)
                conn.execute("COMMIT")
            conn.close()

        t_raw = median_time(raw, setup=fresh)
        t_log = median_time(lambda: ours(False), setup=fresh)
        t_proj = median_time(lambda: ours(True), setup=fresh)
    return [
        line(
            "PostgreSQL: plain executemany of the same rows, a transaction per 1,000",
            N / t_raw,
            "events/s",
            None,
            "",
            "(the server's limit here)",
        ),
        line(
            "PostgreSQL: append with every projection, vs the plain executemany",
            N / t_proj,
            "events/s",
            N / t_raw,
            "plain executemany",
            ">= 0.3x (issue 19)",
        ),
        line(
            "PostgreSQL: append, log only, group commit (advisory lock, hash chain)",
            N / t_log,
            "events/s",
            sqlite_log,
            "SQLite, same appends",
            "(for information)",
        ),
        line(
            "PostgreSQL: append with every projection updated in the same transaction",
            N / t_proj,
            "events/s",
            sqlite_proj,
            "SQLite, same appends",
            ">= 0.5x SQLite's (issue 19)",
        ),
    ]


def _eventsourcing(tmp: Path, evs: list[Any]) -> float | None:
    payloads = [msgspec.to_builtins(e) for e in evs]
    n = len(payloads)

    def save() -> float | None:
        """Only ``app.save`` is timed; creating the domain events is the caller's business,
        as building ours is in our benchmark."""
        made = eventsourcing_app(tmp / "bench-es.db")
        if made is None:
            return None
        app, log = made
        spent = 0.0
        for i in range(0, n, GROUP):
            for data in payloads[i : i + GROUP]:
                log.append(data)
            start = time.perf_counter()
            app.save(log)
            spent += time.perf_counter() - start
        app.close()
        return spent

    times = [save() for _ in range(max(1, REPEATS // 2))]
    if None in times:
        return None
    return n / statistics.median(t for t in times if t is not None)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
