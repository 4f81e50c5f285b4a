"""The operator's audits on a log of a million pages (issue 21, point 5): ``rebuild-projections
--verify`` (wall time, peak memory), ``replay.py --record KEY``, ``replay.py --until N`` (the
worst of a few points) and the size of ``replay_snapshots``, each command in a fresh process.

The log is built with the store API from the realistic mix of ``bench/workload.py`` (batches of
500 pages, 2% failures that stay failed: the failures view grows with the log), then its
projections and snapshots by one rebuild. With ``BENCH_BASE`` naming a checkout of an earlier
commit, the log is built by that code and measured with it first ("before"); a copy is then
opened by this code (the schema migration: index and backfill, timed), rebuilt (the snapshots
rewritten, timed) and measured again ("after"), in the same run on the same log.

    git archive 75c9356 | tar -x -C /tmp/gb-base
    BENCH_BASE=/tmp/gb-base uv run python bench/bench_scale.py
    BENCH_SCALE_PAGES=2000000 BENCH_BASE=/tmp/gb-base uv run python bench/bench_scale.py
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT
from workload import BATCH, key

PAGES = int(os.environ.get("BENCH_SCALE_PAGES", "1000000"))
BASE = os.environ.get("BENCH_BASE")
DIR = os.environ.get("BENCH_DIR")

#: Runs a module or script as ``__main__`` and reports its wall time and peak RSS on stderr.
PROBE = """
import runpy, sys, time
target, args = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
try:
    if target.endswith(".py"):
        sys.argv = [target, *args]
        runpy.run_path(target, run_name="__main__")
    else:
        sys.argv = [target, *args]
        runpy.run_module(target, run_name="__main__", alter_sys=True)
except SystemExit as e:
    if e.code not in (0, None):
        raise
took = time.perf_counter() - start
with open("/proc/self/status") as status:
    hwm = next(line for line in status if line.startswith("VmHWM:"))
print(f"PROBE {took:.3f} {int(hwm.split()[1]) / 1024:.0f}", file=sys.stderr)
"""

BUILD = """
import sys, time
from eventlog.store import EventStore
from projections import open_store
from workload import batch_events
path, pages = sys.argv[1], int(sys.argv[2])
start = time.perf_counter()
store = EventStore.open(path, create=True)  # the log alone, fast
for b in range(pages // 500):
    store.append(batch_events(b, b * 500), actor="run:bench")
store.close()
built = time.perf_counter()
open_store(path).close()  # projections and snapshots: one rebuild
print(f"BUILD {built - start:.1f} {time.perf_counter() - built:.1f}", file=sys.stderr)
"""


def _env(code: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{code}{os.pathsep}{code / 'bench'}"}


def probe(code: Path, target: str, *args: str) -> tuple[float, float, str]:
    """Run ``target`` (``replay.py``, or ``commands``) of checkout ``code`` in a fresh process:
    its wall time in seconds (imports included), peak RSS in MiB, and stdout."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, target, *args],
        cwd=code,
        env=_env(code),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    took, rss = done.stderr.strip().rsplit("PROBE ", 1)[1].split()[:2]
    return float(took), float(rss), done.stdout


def build(code: Path, path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(path), str(PAGES)],
        cwd=code,
        env=_env(code),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    log, projections = done.stderr.strip().rsplit("BUILD ", 1)[1].split()
    print(f"(built {PAGES:,} pages with {code.name}: log {log} s, projections {projections} s)")


def sizes(path: Path) -> dict[str, float]:
    conn = sqlite3.connect(path)
    try:
        events, last = conn.execute("SELECT count(*), max(seq) FROM events").fetchone()
        n, snap = conn.execute(
            "SELECT count(*), sum(length(state)) FROM replay_snapshots"
        ).fetchone()
    finally:
        conn.close()
    return {
        "events": events,
        "last": last,
        "snapshots": n,
        "snapshot_mib": (snap or 0) / 2**20,
        "file_mib": path.stat().st_size / 2**20,
    }


def audits(code: Path, db: Path, label: str) -> dict[str, float]:
    """The figures of one checkout on one log, each printed as it comes."""
    s = sizes(db)
    wall, rss, out = probe(code, "commands", "rebuild-projections", "--verify", "--db", str(db))
    assert "projections match the log" in out, out
    figures = {"verify_s": wall, "verify_mib": rss}
    print(f"{label}: rebuild-projections --verify {wall:.1f} s, peak RSS {rss:.0f} MiB", flush=True)
    record = key(BATCH * (PAGES // BATCH // 2) + 7)  # a failed page, half-way through
    wall, rss, out = probe(code, "replay.py", "--db", str(db), "--record", record, "--json")
    assert '"RecordFailed"' in out, out[:2000]
    figures |= {"record_s": wall, "record_mib": rss}
    print(f"{label}: replay.py --record {record} {wall:.2f} s, {rss:.0f} MiB", flush=True)
    every, last = 100_000, int(s["last"])
    # The worst case sits just before a snapshot: a whole interval to fold after it.
    wanted = (last, every * (last // every) - 1, every * (last // every // 2) + every // 2)
    points = sorted({p for p in wanted if 1 <= p <= last})
    worst = (0.0, 0.0)
    for point in points:
        wall, rss, _ = probe(code, "replay.py", "--db", str(db), "--until", str(point), "--json")
        print(f"{label}: replay.py --until {point} {wall:.2f} s, {rss:.0f} MiB", flush=True)
        worst = (max(worst[0], wall), max(worst[1], rss))
    figures |= {"until_s": worst[0], "until_mib": worst[1]}
    figures |= {"snapshots": s["snapshots"], "snapshot_mib": s["snapshot_mib"]}
    print(
        f"{label}: replay_snapshots {s['snapshots']} rows, {s['snapshot_mib']:.2f} MiB "
        f"(log {s['events']:,} events, file {s['file_mib']:,.0f} MiB)",
        flush=True,
    )
    return figures


def upgrade(db: Path) -> None:
    """This code opens the earlier log (the schema migration), then rebuilds its projections
    (the snapshots rewritten as deltas)."""
    wall, rss, _ = probe(ROOT, "commands", "status", "--no-scan", "--db", str(db))
    print(f"after: first open (schema 2: index and backfill) {wall:.1f} s, {rss:.0f} MiB")
    wall, rss, _ = probe(ROOT, "commands", "rebuild-projections", "--db", str(db))
    print(f"after: rebuild-projections {wall:.1f} s, {rss:.0f} MiB", flush=True)


def run(tmp: Path) -> None:
    db = tmp / "scale.db"
    if BASE is None:
        build(ROOT, db)
        audits(ROOT, db, "after")
        return
    base = Path(BASE).resolve()
    build(base, db)
    theirs = tmp / "before.db"
    shutil.copyfile(db, theirs)
    before = audits(base, theirs, "before")
    theirs.unlink()
    upgrade(db)
    after = audits(ROOT, db, "after")
    print(f"\n{'figure':<14} {'before':>10} {'after':>10}")
    for name, value in before.items():
        print(f"{name:<14} {value:>10.2f} {after[name]:>10.2f}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=DIR) as d:
        run(Path(d))
