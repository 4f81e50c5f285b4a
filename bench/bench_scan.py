"""The scanner over a 1M-page tree with half the outputs present, candidates joined with the
projections, against ``find ROOT -type f`` on the same tree (warm cache).

    uv run --group bench python bench/bench_scan.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, line, median_time

from commands.rules.scan import ScanState
from commands.worker.scan import scan

PAGES = int(os.environ.get("BENCH_SCAN_PAGES", "1000000"))
PER_YEAR = 100  # pages per State/School/Year folder

PROBE = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
from common import peak_rss_mib
from commands.rules.scan import ScanState
from commands.worker.scan import scan
state = ScanState(inflight=set({inflight!r}), failures={failures!r}, dead=set(), rejected={{}})
d = scan(Path({inp!r}), Path({out!r}), state, max_retries=3, context_previous_page=True,
         limit=400)
print(d.counts["candidates"], int(peak_rss_mib()))
"""


def build(root: Path) -> None:
    """``PAGES`` empty page files (names are all a scan reads), outputs for every second one."""
    folders = PAGES // PER_YEAR
    for f in range(folders):
        state, school, year = f"State{f // 1000}", f"School{(f // 10) % 100}", str(2000 + f % 10)
        inp = root / "input" / state / school / year
        out = root / "output" / state / school / year
        inp.mkdir(parents=True)
        out.mkdir(parents=True)
        for p in range(1, PER_YEAR + 1):
            os.close(os.open(inp / f"{p}.png", os.O_CREAT | os.O_WRONLY, 0o644))
            if p % 2 == 0:
                os.close(os.open(out / f"{p}.json", os.O_CREAT | os.O_WRONLY, 0o644))


def run(tmp: Path) -> list[dict]:
    start = time.perf_counter()
    build(tmp)
    print(
        f"(built {PAGES:,} pages and {PAGES // 2:,} outputs in "
        f"{time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    inp, out = tmp / "input", tmp / "output"
    # Some records in flight and failing, as the projections would hold them.
    inflight = {f"State0:School{i % 100}:2001:{i % 100 + 1}" for i in range(1000)}
    failures = {f"State1:School{i % 100}:2003:{i % 100 + 1}": 1 + i % 3 for i in range(10_000)}
    state = ScanState(inflight=inflight, failures=failures, dead=set(), rejected={})

    def ours() -> None:
        scan(inp, out, state, max_retries=3, context_previous_page=True, limit=400)

    def find() -> None:
        subprocess.run(["find", str(tmp), "-type", "f"], stdout=subprocess.DEVNULL, check=True)

    find()
    ours()  # warm the cache for both
    t_find, t_ours = median_time(find), median_time(ours)
    probe = PROBE.format(
        root=str(ROOT),
        bench=str(Path(__file__).parent),
        inflight=sorted(inflight),
        failures=failures,
        inp=str(inp),
        out=str(out),
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    _, rss = (int(x) for x in done.stdout.split())
    return [
        line(
            f"scan of {PAGES:,} pages, half written (wall)",
            t_ours,
            "s",
            t_find,
            "find -type f",
            "<= 2x",
            higher_is_better=False,
        ),
        line(
            "scan, peak memory (a fresh process)",
            rss,
            "MiB",
            None,
            "",
            "<= 400 MiB",
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        run(Path(d))
