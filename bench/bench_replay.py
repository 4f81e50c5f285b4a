"""``replay.py --until`` at points across a 5M-event log, each as a fresh process (wall time and
peak memory), against a full replay of the same log.

    uv run --group bench python bench/bench_replay.py
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_rebuild import build_log
from common import ROOT, line, peak_rss_mib

from eventlog.store import EventStore
from projections import open_store, snapshots, verify
from projections.replay import replay

N = int(os.environ.get("BENCH_REPLAY_EVENTS", "5000000"))
POINTS = int(os.environ.get("BENCH_REPLAY_POINTS", "8"))

PROBE = """
import runpy, sys, time
sys.argv = ["replay.py", *sys.argv[1:]]
start = time.perf_counter()
try:
    runpy.run_path("replay.py", run_name="__main__")
except SystemExit as e:
    code = e.code
took = time.perf_counter() - start
sys.path.insert(0, "bench")
from common import peak_rss_mib
print(f"PROBE {took:.3f} {peak_rss_mib():.0f}", file=sys.stderr)
"""


def build(path: Path) -> None:
    build_log(path, N)  # the log alone, fast
    open_store(path).close()  # projections and snapshots, built by one rebuild


def probe(db: Path, until: int) -> tuple[float, float]:
    """Wall seconds (process start to exit, imports included) and peak RSS in MiB."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--db", str(db), "--until", str(until), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-2000:]
    rss = float(done.stderr.strip().rsplit("PROBE ", 1)[1].split()[1])
    return wall, rss


def run(tmp: Path) -> list[dict]:
    db = tmp / "replay.db"
    started = time.perf_counter()
    build(db)
    store = EventStore.open(db, write=False)
    last = store.last_seq()
    print(
        f"(built a {last:,}-event log with its projections and "
        f"{last // snapshots.EVERY} snapshots in {time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    rng = random.Random(7)
    # The worst case sits just before a snapshot: a whole interval to fold.
    points = [
        last,
        snapshots.EVERY * (last // snapshots.EVERY) - 1,
        1,
        *(rng.randint(1, last) for _ in range(POINTS - 3)),
    ]
    results = [probe(db, p) for p in points]
    worst_wall = max(w for w, _ in results)
    worst_rss = max(r for _, r in results)
    start = time.perf_counter()
    replay(store, last)
    full = time.perf_counter() - start
    # Speed is not bought with correctness: a fresh fold of this log equals the live tables row
    # for row, and every snapshot the --until probes started from equals a fold up to its point.
    difference = verify(store)
    assert difference is None, difference.describe()
    print(
        f"(verified: a replay of all {last:,} events equals the live projections, and every "
        "snapshot equals a fold of the log up to it)",
        flush=True,
    )
    store.close()
    return [
        line(
            f"replay.py --until (worst of {len(points)} points of {last:,} events)",
            worst_wall,
            "s",
            full,
            "full replay of the log",
            "<= 1.5 s",
            higher_is_better=False,
        ),
        line(
            "replay.py --until, peak memory (worst point)",
            worst_rss,
            "MiB",
            peak_rss_mib(),
            "full replay in this process",
            "<= 300 MiB",
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
