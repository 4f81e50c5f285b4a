"""Submitting 2,000 pages when every upload takes 50 ms on the service, ``upload_concurrency`` 16:
the real submit step (image checks, uploads through the SDK, an event per upload, the request
file, the batch), against the ideal 2000 x 0.05 / 16 seconds.

    uv run --group bench python bench/bench_uploads.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, line

from commands.config import load_config
from commands.cycle import Cycle, CycleSummary
from commands.demo import png
from commands.gateway import Gateway
from commands.schema import PageExtraction
from commands.worker import Worker
from projections import open_store

PAGES = int(os.environ.get("BENCH_UPLOAD_PAGES", "2000"))
LATENCY = 0.05
CONCURRENCY = 16
KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(tmp: Path) -> list[dict]:
    image = png(64, 64, 1)
    for i in range(PAGES):
        path = tmp / "input" / "S" / f"School{i // 500}" / "2020" / f"{i % 500 + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    (tmp / "policy.json").write_text(
        json.dumps({"faults": [{"endpoint": "files.upload", "delay": LATENCY}]})
    )
    port = free_port()
    emulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gemini_emulator",
            "--port",
            str(port),
            "--policy",
            str(tmp / "policy.json"),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert emulator.stdout is not None and "listening" in emulator.stdout.readline()
        (tmp / "c.toml").write_text(
            f'[paths]\ninput_root = "input"\noutput_root = "output"\n'
            f'database = "data/log.db"\n[gemini]\nbase_url = "http://127.0.0.1:{port}"\n'
            f"[batching]\nbatch_size = {PAGES}\nmax_active_batches = 1\n"
            f"[uploads]\nupload_concurrency = {CONCURRENCY}\n"
        )
        config = load_config(tmp / "c.toml")
        store = open_store(config.paths.database, create=True)
        cycle = Cycle(
            Worker(config, store, Gateway.from_config(config, api_key=KEY), "bench", PageExtraction)
        )
        decision = cycle.scan()
        start = time.perf_counter()
        summary = CycleSummary()
        cycle.submit(decision, summary)
        took = time.perf_counter() - start
        assert summary.submitted == 1, summary
        store.close()
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    ideal = PAGES * LATENCY / CONCURRENCY
    return [
        line(
            f"submit {PAGES:,} pages, {LATENCY * 1000:.0f} ms per upload, "
            f"concurrency {CONCURRENCY}",
            took,
            "s",
            ideal,
            "ideal",
            "<= 1.3x",
            higher_is_better=False,
        )
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
