"""End to end: 20,000 pages through the emulator (its own process, no latency, no faults) with
``run --until-idle``; prints pages/s and a profile of the worker naming its largest costs.

    uv run --group bench python bench/bench_e2e.py
"""

from __future__ import annotations

import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

from common import ROOT, line

from commands.integrations.demo import png
from eventlog.store import EventStore
from eventlog.timestamps import parse_ts
from gemini_emulator import spawn

PAGES = int(os.environ.get("BENCH_E2E_PAGES", "20000"))
KEY = "bench-key"


def run(tmp: Path) -> list[dict]:
    image = png(32, 32, 1)
    for i in range(PAGES):
        path = (
            tmp
            / "input"
            / f"State{i // 10000}"
            / f"School{(i // 100) % 100}"
            / "2020"
            / f"{i % 100 + 1}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_KEY": KEY}
    with spawn() as url:
        (tmp / "c.toml").write_text(
            f'[paths]\ninput_root = "input"\noutput_root = "output"\ndatabase = "data/log.db"\n'
            f'[gemini]\nbase_url = "{url}"\napi_key_env = "BENCH_KEY"\n'
            "[batching]\nbatch_size = 1000\nmax_active_batches = 8\n"
            "poll_interval_seconds = 0.1\n[uploads]\nupload_concurrency = 16\n"
        )
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(tmp / "worker.prof"),
                "-m",
                "commands",
                "--config",
                str(tmp / "c.toml"),
                "-q",
                "run",
                "--until-idle",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        assert done.returncode == 0, done.stderr[-2000:]
    written = sum(1 for _ in (tmp / "output").rglob("*.json"))
    assert written == PAGES, written
    out = [line(f"end to end, {PAGES:,} pages, no latency (profiled)", PAGES / wall, "pages/s")]
    print("where the wall time went, from the log (each gap charged to the event that ends it):")
    for kind, (seconds, count) in wall_by_event(tmp / "data" / "log.db")[:5]:
        print(f"  {seconds:6.2f} s ({seconds / wall:5.1%})  before {count:,} {kind}")
    stats = pstats.Stats(str(tmp / "worker.prof"))
    # Stats.stats is set by Stats.__init__ (load_stats); typeshed does not declare it.
    table = stats.stats  # type: ignore[attr-defined]
    rows = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)  # own time
    total = sum(v[2] for _, v in table.items())
    print("five largest costs of the worker's main thread (own time):")
    for (file, lineno, fn), (_, _, tt, ct, _) in rows[:5]:
        where = f"{Path(file).name}:{lineno}" if lineno else file
        print(f"  {tt:6.2f} s ({tt / total:5.1%})  {fn}  [{where}]  cumulative {ct:.2f} s")
    return out


def wall_by_event(db: Path) -> list[tuple[str, tuple[float, int]]]:
    """Seconds between consecutive events, summed by the type of the later one, largest first:
    the time spent uploading is charged to ``FileUploaded``, waiting for the service to
    ``BatchSucceeded``, processing results to ``RecordValidated``."""
    seconds: defaultdict[str, float] = defaultdict(float)
    events: Counter[str] = Counter()
    previous: datetime | None = None
    with EventStore.open(db, write=False) as store:
        for row in store.read_raw():
            moment = parse_ts(row.ts)
            if previous is not None:
                seconds[row.type] += (moment - previous).total_seconds()
                events[row.type] += 1
            previous = moment
    largest = sorted(seconds.items(), key=lambda kv: kv[1], reverse=True)  # as most_common()
    return [(kind, (s, events[kind])) for kind, s in largest]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        run(Path(d))
