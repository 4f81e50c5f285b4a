"""Shared helpers for the benchmarks: medians of repeated runs, one printed line per figure."""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))


def median_time(
    fn: Callable[[], Any], repeats: int = REPEATS, setup: Callable[[], Any] | None = None
) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs (``setup`` runs untimed before each)."""
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mib() -> float:
    """This process's peak resident memory so far: VmHWM, not ``ru_maxrss``, which can carry
    the parent's peak across fork and exec. Probes run in fresh processes import it too."""
    try:
        with open("/proc/self/status") as status:
            hwm = next(line for line in status if line.startswith("VmHWM:"))
        return int(hwm.split()[1]) / 1024
    except (OSError, StopIteration):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def line(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    baseline_name: str = "",
    target: str = "",
    higher_is_better: bool = True,
) -> dict:
    """Print one figure with its ratio to the baseline measured in the same run."""
    ratio = None if not baseline else value / baseline
    text = f"{name}: {value:,.2f} {unit}"
    if ratio is not None:
        text += f" | {baseline_name} {baseline:,.2f} {unit} | ratio {ratio:.2f}x"
    if target:
        text += f" | target {target}"
    print(text, flush=True)
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "baseline_name": baseline_name,
        "ratio": ratio,
        "target": target,
    }
