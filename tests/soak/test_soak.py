"""Soak: 20,000 pages through the emulator with 5% injected faults of every kind, to the end.

Run by hand (it takes minutes): ``uv run pytest -m soak -s -n 0``. Prints wall time and peak
memory of the worker; the README records the latest figures. The emulator runs as its own process,
as the real service would, and the worker as ``commands run --until-idle``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest

from commands.config import load_config
from eventlog.events import RecordFailed, RecordValidated, ResultDiscarded
from gemini_emulator import spawn
from gemini_emulator.policy import ENDPOINTS as EMULATED_ENDPOINTS
from gemini_emulator.policy import JobOutcome, RecordOutcome
from projections import open_store, verify
from tests.conftest import ROOT
from tests.pipeline import make_dataset, page_outcomes, write_config

pytestmark = pytest.mark.soak

PAGES = int(os.environ.get("SOAK_PAGES", "20000"))
KEY = "soak-key-0123456789"
#: ``python -m commands ...`` that prints its own peak RSS (VmHWM) when it exits. Not
#: ``RUSAGE_CHILDREN``: a forked child's ru_maxrss starts from the parent's (pytest's) size.
_REPORTS_PEAK_RSS = """
import atexit, runpy, sys

def _peak() -> None:
    with open("/proc/self/status") as status:
        hwm = next(line for line in status if line.startswith("VmHWM")).split()[1]
    print("PEAK_RSS_KIB", hwm, file=sys.stderr)

atexit.register(_peak)
sys.argv = ["commands", *sys.argv[1:]]
runpy.run_module("commands", run_name="__main__")
"""
P = 0.05  # every kind of fault, 5% of the time
# Every fault the emulator knows, so a new one joins the soak by itself. Not STUCK: a stuck job
# is cancelled only after `stuck_pending_hours`; its own test moves the clock instead.
RECORD_FAULTS = [o for o in get_args(RecordOutcome) if o != "valid"]
JOB_FAULTS = [o for o in get_args(JobOutcome) if o not in ("SUCCEEDED", "STUCK")]
# Every endpoint the worker calls (it never gets a single file or deletes a batch).
ENDPOINTS = [e for e in EMULATED_ENDPOINTS if e not in ("files.get", "batches.delete")]


def policy() -> dict[str, Any]:
    faults: list[dict[str, Any]] = []
    for endpoint in ENDPOINTS:
        faults += [
            {"endpoint": endpoint, "status": 503, "probability": P / 3},
            {"endpoint": endpoint, "status": 429, "probability": P / 3},
            {"endpoint": endpoint, "delay": 0.02, "probability": P / 3},
        ]
    faults += [
        {"endpoint": "batches.create", "status": 503, "after": True, "probability": P},
        {"endpoint": "files.upload_bytes", "status": 503, "after": True, "probability": P / 2},
    ]
    return {
        "seed": 2026,
        "timing": {"pending_seconds": 0.5, "running_seconds": 0.5},
        "records": [{"outcome": o, "probability": P / len(RECORD_FAULTS)} for o in RECORD_FAULTS],
        "jobs": [{"outcome": o, "probability": P / len(JOB_FAULTS)} for o in JOB_FAULTS],
        "faults": faults,
    }


def keys(n: int) -> list[str]:
    out = []
    for i in range(n):
        state, school, year, page = i // 10000, (i // 1000) % 10, (i // 100) % 10, i % 100 + 1
        out.append(f"State{state}:School{school}:{2010 + year}:{page}")
    return out


def test_soak(tmp_path: Path) -> None:
    all_keys = keys(PAGES)
    make_dataset(tmp_path / "input", all_keys)
    (tmp_path / "policy.json").write_text(json.dumps(policy()))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "E2E_GEMINI_KEY": KEY}
    with spawn(tmp_path / "policy.json", api_key=KEY) as url:
        config_path = write_config(
            tmp_path,
            url,
            batching={"batch_size": 500, "max_active_batches": 10, "poll_interval_seconds": 0.2},
            uploads={"upload_concurrency": 16, "upload_retry_backoff_seconds": 0.01},
            network={
                "api_retry_attempts": 4,
                "api_retry_backoff_seconds": 0.01,
                "request_timeout_seconds": 30,
            },
        )
        started = time.monotonic()
        worker = subprocess.run(
            [
                sys.executable,
                "-c",
                _REPORTS_PEAK_RSS,
                "--config",
                str(config_path),
                "-q",
                "run",
                "--until-idle",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - started
        peak_mib = int(worker.stderr.rsplit("PEAK_RSS_KIB ", 1)[1].split()[0]) / 1024
        assert worker.returncode == 0, worker.stderr[-3000:]
        with urllib.request.urlopen(f"{url}/_emulator/ledger") as answer:
            ledger = json.load(answer)

    config = load_config(config_path)
    store = open_store(config.paths.database)
    assert verify(store) is None and store.verify_chain() is None
    outcome = page_outcomes(store, config, all_keys)
    accounted = unreadable = 0
    errors: Counter[str] = Counter()
    events = 0
    for rec in store.read():
        events += 1
        e = rec.event
        if isinstance(e, RecordValidated | ResultDiscarded):
            accounted += 1
        elif isinstance(e, RecordFailed):
            errors[e.error_type] += 1
            if e.error_type == "unparseable_line":
                unreadable += 1  # billed, but the line was cut: not readable
            elif e.error_type not in ("error_line", "missing_line"):
                accounted += 1
    store.close()
    assert sum(outcome.values()) == PAGES
    creates = ledger["creates"]
    assert all(n == 1 for n in creates.values())  # no batch created twice
    # Every billed line is one the log accounts for (or one the service cut short).
    assert accounted <= len(ledger["billed"]) <= accounted + unreadable
    print(
        f"\nsoak: {PAGES} pages, {dict(outcome)}, {wall:.1f} s wall, worker peak RSS "
        f"{peak_mib:.0f} MiB, {events} events, {len(creates)} batches created, "
        f"{len(ledger['billed'])} lines billed, failures by type {dict(errors)}"
    )
