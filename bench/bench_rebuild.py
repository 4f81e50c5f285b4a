"""Rebuilding every projection from a 1M-event log, against reading the same rows, decoding them
with msgspec and folding them into a dict (the floor any rebuild stands on), and against the
``eventsourcing`` library reading its notification log and decoding; then the same log copied
into PostgreSQL (``bench/pg.py``) and rebuilt there, beside SQLite's rebuild.

    uv run --group bench python bench/bench_rebuild.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import msgspec
from common import REPEATS, line, median_time, peak_rss_mib
from peer import eventsourcing_app
from workload import events

from eventlog.events import Event
from eventlog.store import EventStore
from projections import fold, open_store, verify

N = int(os.environ.get("BENCH_REBUILD_EVENTS", "1000000"))


def build_log(path: Path, n: int) -> None:
    """A log of ``n`` events of the realistic mix, written through the public API."""
    store = EventStore.open(path, create=True)
    batch: list[Event] = []
    for e in events(n):
        batch.append(e)
        if len(batch) == 5000:
            store.append(batch, actor="run:bench")
            batch = []
    if batch:
        store.append(batch, actor="run:bench")
    store.close()


def run(tmp: Path) -> list[dict]:
    path = tmp / "rebuild.db"
    start = time.perf_counter()
    build_log(path, N)
    print(f"(built a {N:,}-event log in {time.perf_counter() - start:.1f} s)", flush=True)
    store = EventStore.open(path)
    n = store.last_seq()
    decoder = msgspec.json.Decoder()

    def baseline() -> None:
        counts: dict[str, int] = {}
        for row in store.read_raw(chunk=10_000):
            data = decoder.decode(row.payload)
            key = data.get("record_key") or data.get("batch_id") or row.stream
            counts[key] = counts.get(key, 0) + 1

    def ours() -> None:
        fold(store.read(chunk=10_000))

    t_base = median_time(baseline)
    t_fold = median_time(ours)
    out = [
        line(
            "rebuild: fold the whole log into every projection (in memory)",
            n / t_fold,
            "events/s",
            n / t_base,
            "read + msgspec decode + dict fold",
            ">= 0.5x",
        )
    ]
    store.close()
    live = open_store(path)  # installs the projection tables: a full rebuild, written to disk
    t_live = median_time(lambda: _rebuild(live), repeats=max(1, REPEATS // 2))
    out.append(
        line(
            "rebuild-projections, including writing every table",
            n / t_live,
            "events/s",
            n / t_base,
            "read + msgspec decode + dict fold",
            "(for information)",
        )
    )
    assert verify(live) is None
    live.close()
    out += _postgres(path, n, n / t_fold, n / t_live)
    peer = _eventsourcing(tmp, n)
    if peer is not None:
        out.append(
            line(
                "rebuild vs eventsourcing notification log read + decode",
                n / t_fold,
                "events/s",
                peer,
                "eventsourcing",
                ">= 3x",
            )
        )
    print(f"(peak RSS {peak_rss_mib():.0f} MiB)", flush=True)
    return out


def _postgres(path: Path, n: int, sqlite_fold: float, sqlite_live: float) -> list[dict]:
    """Copy the log into PostgreSQL (``migrate-to-postgres``'s core), then fold and rebuild it."""
    import pg

    from commands.actions.migrate import migrate
    from tests.postgres import new_schema_url

    with pg.server() as url:
        if url is None:
            return []
        loc = new_schema_url(url)
        start = time.perf_counter()
        migrate(path, loc)
        print(f"(copied into PostgreSQL in {time.perf_counter() - start:.1f} s)", flush=True)
        store = open_store(loc)
        t_fold = median_time(lambda: fold(store.read(chunk=10_000)))
        t_live = median_time(lambda: _rebuild(store), repeats=max(1, REPEATS // 2))
        assert verify(store) is None
        store.close()
    return [
        line(
            "PostgreSQL: rebuild, fold the whole log (in memory)",
            n / t_fold,
            "events/s",
            sqlite_fold,
            "SQLite, same log",
            "(for information)",
        ),
        line(
            "PostgreSQL: rebuild-projections, including writing every table (COPY)",
            n / t_live,
            "events/s",
            sqlite_live,
            "SQLite, same log",
            "(for information)",
        ),
    ]


def _rebuild(store: EventStore) -> None:
    from projections import rebuild

    rebuild(store)


def _eventsourcing(tmp: Path, n: int) -> float | None:
    made = eventsourcing_app(tmp / "rebuild-es.db")
    if made is None:
        return None
    app, log = made
    for i, e in enumerate(events(n), 1):
        log.append(msgspec.to_builtins(e))
        if i % 5000 == 0:
            app.save(log)
    app.save(log)

    def read() -> None:
        start = 1
        while True:
            items = app.recorder.select_notifications(start=start, limit=10_000)
            if not items:
                return
            for item in items:
                app.mapper.to_domain_event(item)
            start = items[-1].id + 1

    rate = n / median_time(read, repeats=max(1, REPEATS // 2))
    app.close()
    return rate


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
