"""Run every benchmark and print the table the README records (medians, ratios, targets).

    uv sync --group bench
    uv run --group bench python bench/run_all.py            # everything (~35 min on 2 cores)
    BENCH_ONLY=append,scan uv run --group bench python bench/run_all.py

Each benchmark builds its own data in a temporary folder (``$BENCH_DIR`` to choose the disk).
Python files are byte-compiled first: start-up figures without .pyc files measure the compiler.
"""

from __future__ import annotations

import compileall
import os
import platform
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import bench_append
import bench_e2e
import bench_rebuild
import bench_replay
import bench_results
import bench_scan
import bench_startup
import bench_uploads
from common import ROOT

BENCHES = {
    "append": bench_append,
    "rebuild": bench_rebuild,
    "replay": bench_replay,
    "scan": bench_scan,
    "results": bench_results,
    "uploads": bench_uploads,
    "startup": bench_startup,
    "e2e": bench_e2e,
}


def main() -> None:
    only = [b for b in os.environ.get("BENCH_ONLY", "").split(",") if b]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    for path in (ROOT, Path(sys.prefix)):
        compileall.compile_dir(str(path), quiet=2, workers=0)
    rows: list[dict] = []
    for name, module in BENCHES.items():
        if only and name not in only:
            continue
        print(f"\n== {name}", flush=True)
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
            rows += module.run(Path(d))
    disk = shutil.disk_usage(os.environ.get("BENCH_DIR") or tempfile.gettempdir())
    print(
        f"\n{datetime.now(UTC):%Y-%m-%d}, {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores, "
        f"{disk.total // 2**30} GiB disk\n"
    )
    print("| path | figure | baseline (same run) | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        base = f"{r['baseline']:,.2f} {r['unit']} ({r['baseline_name']})" if r["baseline"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        print(f"| {r['name']} | {r['value']:,.2f} {r['unit']} | {base} | {ratio} | {r['target']} |")


if __name__ == "__main__":
    main()
