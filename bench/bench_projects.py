"""Quota per project: end-to-end pages/s with 1 vs 2 ``[[gemini.projects]]`` against the emulator
(in process, over HTTP with the real SDK) holding per-key limits: each key may have
``MAX_JOBS`` jobs running, and each job takes ``JOB_SECONDS`` on the service, so the service's
limit, not the worker, sets the pace.

    uv run python bench/bench_projects.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from common import line

from commands.config import load_config
from commands.integrations.demo import png
from commands.worker.session import run
from gemini_emulator import Emulator

PAGES = int(os.environ.get("BENCH_PROJECT_PAGES", "400"))
BATCH = 20
MAX_JOBS = 2
JOB_SECONDS = 1.0
KEYS = {"a": "bench-key-a", "b": "bench-key-b"}


def one_run(tmp: Path, projects: int) -> float:
    image = png(16, 16, 1)
    for i in range(PAGES):
        path = tmp / "input" / "State" / f"School{i // 100}" / "2020" / f"{i % 100 + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    policy = {
        "timing": {"pending_seconds": JOB_SECONDS / 2, "running_seconds": JOB_SECONDS / 2},
        "limits": [{"key": "*", "max_active_jobs": MAX_JOBS}],
    }
    for name, key in KEYS.items():
        os.environ[f"BENCH_KEY_{name.upper()}"] = key
    with Emulator(policy, api_key=list(KEYS.values())) as emu:
        text = (
            f'[paths]\ninput_root = "input"\noutput_root = "output"\ndatabase = "data/log.db"\n'
            f'reports_dir = "data/reports"\n[gemini]\nbase_url = "{emu.url}"\n'
            f"[batching]\nbatch_size = {BATCH}\nmax_active_batches = {MAX_JOBS}\n"
            "poll_interval_seconds = 0.1\n"
        )
        for name in list(KEYS)[:projects]:
            text += (
                f'[[gemini.projects]]\nname = "{name}"\napi_key_env = "BENCH_KEY_{name.upper()}"\n'
            )
        (tmp / "c.toml").write_text(text)
        config = load_config(tmp / "c.toml")
        start = time.perf_counter()
        run(config, until_idle=True, max_cycles=10_000, sleep=lambda s: time.sleep(0.1))
        wall = time.perf_counter() - start
    written = sum(1 for _ in (tmp / "output").rglob("*.json"))
    assert written == PAGES, written
    return PAGES / wall


def main() -> list[dict]:
    rates = {}
    for n in (1, 2):
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
            rates[n] = one_run(Path(d), n)
    return [
        line(
            f"end to end, {PAGES} pages, 1 project ({MAX_JOBS} jobs per key)", rates[1], "pages/s"
        ),
        line(
            f"end to end, {PAGES} pages, 2 projects ({MAX_JOBS} jobs per key)",
            rates[2],
            "pages/s",
            baseline=rates[1],
            baseline_name="1 project",
        ),
    ]


if __name__ == "__main__":
    main()
