"""Submitting 2,000 pages when every upload takes 50 ms on the service, ``upload_concurrency`` 16:
the real submit step (image checks, uploads through the SDK, the upload events, the request file,
the batch), against the ideal 2000 x 0.05 / 16 seconds.

    uv run --group bench python bench/bench_uploads.py
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from common import line

from commands.config import load_config
from commands.gemini.sdk import Gateway
from commands.integrations.demo import png
from commands.schema import PageExtraction
from commands.worker.context import Worker
from commands.worker.cycle import CycleSummary
from commands.worker.scan import scan_for_cycle
from commands.worker.submit import submit
from gemini_emulator import spawn
from projections import open_store

PAGES = int(os.environ.get("BENCH_UPLOAD_PAGES", "2000"))
LATENCY = 0.05
CONCURRENCY = 16
KEY = "bench-key"


def run(tmp: Path) -> list[dict]:
    image = png(64, 64, 1)
    for i in range(PAGES):
        path = tmp / "input" / "S" / f"School{i // 500}" / "2020" / f"{i % 500 + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    policy = tmp / "policy.json"
    policy.write_text(json.dumps({"faults": [{"endpoint": "files.upload", "delay": LATENCY}]}))
    with spawn(policy) as url:
        (tmp / "c.toml").write_text(
            f'[paths]\ninput_root = "input"\noutput_root = "output"\n'
            f'database = "data/log.db"\n[gemini]\nbase_url = "{url}"\n'
            f"[batching]\nbatch_size = {PAGES}\nmax_active_batches = 1\n"
            f"[uploads]\nupload_concurrency = {CONCURRENCY}\n"
        )
        config = load_config(tmp / "c.toml")
        store = open_store(config.paths.database, create=True)
        gateway = Gateway.from_config(config, api_key=KEY)
        worker = Worker(config, store, gateway, "bench", PageExtraction)
        decision = scan_for_cycle(worker)
        start = time.perf_counter()
        summary = CycleSummary()
        worker.pools.run(submit(worker, decision, summary))
        took = time.perf_counter() - start
        worker.pools.close()
        assert summary.submitted == 1, summary
        store.close()
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
