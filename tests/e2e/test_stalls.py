"""Bounded stalls on PostgreSQL: a worker stopped (SIGSTOP: a paused VM, a long GC pause) inside
a write transaction holds the write lock. The worker's connection has an idle-in-transaction
timeout of a third of a lease, so the server ends that session and the others append again
within the bound, long before any lease lapses; the stopped worker's transaction never commits,
and when it resumes it stops with one line (its connection is gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from commands.config import load_config
from eventlog.events import RunStarted
from gemini_emulator import Emulator
from projections import open_store, verify
from tests.conftest import ROOT
from tests.pipeline import check_final_state, keys_for, make_dataset, write_config
from tests.postgres import new_schema_url

KEY = "stalls-key-0123456789abcdef"
LEASE = 6.0


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "T"


def test_a_worker_stopped_inside_a_transaction_holds_the_others_up_a_third_of_a_lease_at_most(
    tmp_path: Path, postgres_server: str
) -> None:
    keys = keys_for(states=2, schools=1, years=1, pages=10)
    make_dataset(tmp_path / "input", keys)
    with Emulator({"timing": {"pending_seconds": 0.1, "running_seconds": 0.1}}, api_key=KEY) as emu:
        config_path = write_config(
            tmp_path,
            emu.url,
            batching={"batch_size": 5, "max_active_batches": 4},
            workers={"mode": "shared", "partition_by": "state", "lease_seconds": LEASE},
            database={"url": new_schema_url(postgres_server)},
        )
        config = load_config(config_path)
        env = {**os.environ, "E2E_GEMINI_KEY": KEY, "PYTHONPATH": str(ROOT)}
        stuck = subprocess.Popen(
            [
                *(sys.executable, str(ROOT / "tests/crash/worker.py")),
                *("--config", str(config_path), "run", "--loop", "--worker-id", "stuck"),
            ],
            env={**env, "STOP_AT": "during_projection_update", "STOP_NTH": "4"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not _stopped(stuck.pid):
                assert stuck.poll() is None and time.monotonic() < deadline, "never stopped"
                time.sleep(0.05)
            # Another writer, waiting for the write lock no longer than the rest of a lease.
            store = open_store(config.log_location, busy_timeout_ms=int(LEASE * 1000 * 2 / 3))
            try:
                began = time.monotonic()
                store.append([RunStarted(run_id="probe", command="probe")], actor="run:probe")
                waited = time.monotonic() - began
            finally:
                store.close()
            assert waited < LEASE * 2 / 3, waited
        finally:
            stuck.send_signal(signal.SIGCONT)
        _out, err = stuck.communicate(timeout=60)
        assert stuck.returncode == 1, err[-3000:]
        last = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(last) == 1 and "cannot use PostgreSQL" in last[0], err[-3000:]
        assert any(why in last[0] for why in ("idle-in-transaction", "terminat", "closed")), last
        store = open_store(config.log_location)
        try:
            assert store.verify_chain() is None
            assert verify(store) is None
        finally:
            store.close()
        # Its run is left for the next worker to record as crashed, once its renewal lapsed;
        # that worker's first cycle sweeps the request file the rolled-back intent never named.
        time.sleep(LEASE)
        finish = subprocess.run(
            [
                *(sys.executable, "-m", "commands", "--config", str(config_path)),
                *("run", "--until-idle", "--worker-id", "after"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert finish.returncode == 0, finish.stderr[-3000:]
        assert check_final_state(config, emu, keys) == {"written": len(keys)}
