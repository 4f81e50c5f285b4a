"""Kill the worker (SIGKILL, a real subprocess) while batches are active, restart it, and prove
nothing was lost and nothing was billed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from commands.config import load_config
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config
from tests.reads import scalar

KEYS = keys_for(states=1, schools=2, years=1, pages=12)  # 24 pages, 3 batches of 8
POLICY = {
    "timing": {"pending_seconds": 0.05, "running_seconds": 0.05},
    "records": [
        {"match": KEYS[5], "outcome": "invalid_json", "times": 1},
        {"match": KEYS[9], "outcome": "missing_line", "times": 1},
    ],
}


def worker(
    config: Path, *args: str, crash_at: str = "", nth: int = 1, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "E2E_GEMINI_KEY": API_KEY,
        "CRASH_AT": crash_at,
        "CRASH_NTH": str(nth),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "tests/crash/worker.py"), "--config", str(config), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def setup(tmp_path: Path, emulator: Emulator) -> Path:
    emulator.policy = POLICY
    make_dataset(tmp_path / "input", KEYS)
    return write_config(tmp_path, emulator.url, batching={"batch_size": 8, "max_active_batches": 2})


# With failing answers in the mix (test_every_step.py covers every point with clean answers).
@pytest.mark.parametrize(
    ("point", "nth"),
    [("after_create_before_event", 1), ("after_output_write", 1), ("after_result_events", 1)],
)
def test_sigkill_at_a_side_effect_boundary_then_restart(
    tmp_path: Path, emulator: Emulator, point: str, nth: int
) -> None:
    config = setup(tmp_path, emulator)
    first = worker(config, "run", "--until-idle", crash_at=point, nth=nth)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    store = open_store(load_config(config).paths.database)
    busy = scalar(
        store,
        "SELECT (SELECT count(*) FROM active_batches) + (SELECT count(*) FROM submission_intents)",
    )
    store.close()
    assert busy > 0  # the kill happened while batches were active
    second = worker(config, "run", "--until-idle")
    assert second.returncode == 0, second.stderr[-2000:]
    outcome = check_final_state(load_config(config), emulator, KEYS)
    assert outcome == {"written": len(KEYS)}


def test_an_external_kill_9_during_a_loop_then_restart(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {**POLICY, "timing": {"pending_seconds": 0.5, "running_seconds": 0.5}}
    config = setup(tmp_path, emulator)
    db = load_config(config).paths.database
    env = {**os.environ, "E2E_GEMINI_KEY": API_KEY, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands", "--config", str(config), "run", "--loop"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if db.exists():
                store = open_store(db)
                active = scalar(store, "SELECT count(*) FROM active_batches")
                store.close()
                if active:
                    break
            time.sleep(0.05)
        else:
            pytest.fail("no batch became active")
        subprocess.run(["kill", "-9", str(proc.pid)], check=True)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    second = worker(config, "run", "--until-idle")
    assert second.returncode == 0, second.stderr[-2000:]
    assert check_final_state(load_config(config), emulator, KEYS) == {"written": len(KEYS)}
