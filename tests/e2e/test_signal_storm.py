"""Every end recorded: SIGTERM and SIGINT sent to shared-mode workers on PostgreSQL while a
statement is on the wire (a read, an append, a pipelined projection write), in a loop over many
points of a run. Each run records its end (``RunFinished(interrupted)``) and lets its leases go:
the signal takes effect once the statement or write transaction under way has ended, so the
connection is free for the end (never "another command is already in progress")."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from commands.config import load_config
from eventlog.events import RunFinished
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT, default_sigint
from tests.pipeline import keys_for, make_dataset, write_config
from tests.postgres import new_schema_url

KEYS = keys_for(states=2, schools=2, years=1, pages=10)
#: The N-th wait for the server at which the signal is sent: start-up reads, the first
#: appends, a cycle's reads and writes, later cycles.
POINTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 20, 24, 30, 38, 48, 60, 75]


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_statement_still_records_the_run_end(
    tmp_path: Path, postgres_server: str, signame: str
) -> None:
    make_dataset(tmp_path / "input", KEYS)
    with Emulator(
        {"timing": {"pending_seconds": 0.2, "running_seconds": 0.2}}, api_key="k" * 24
    ) as emu:
        config_path = write_config(
            tmp_path,
            emu.url,
            batching={"batch_size": 5, "max_active_batches": 4},
            workers={"mode": "shared", "partition_by": "state", "lease_seconds": 30.0},
            database={"url": new_schema_url(postgres_server)},
        )
        config = load_config(config_path)
        for n in POINTS:
            done = subprocess.run(
                [
                    *(sys.executable, str(ROOT / "tests/crash/worker.py")),
                    *("--config", str(config_path), "run", "--loop", "--worker-id", f"w{n}"),
                ],
                env={
                    **os.environ,
                    "E2E_GEMINI_KEY": "k" * 24,
                    "PYTHONPATH": str(ROOT),
                    "SIGNAL_AT": f"{n}:{signame}",
                },
                capture_output=True,
                text=True,
                timeout=120,
                preexec_fn=default_sigint,  # whatever the suite's SIGINT action
            )
            code = 128 + getattr(signal, signame)
            assert done.returncode == code, (n, done.returncode, done.stderr[-3000:])
            assert "Cannot record the end" not in done.stderr, (n, done.stderr[-3000:])
    store = open_store(config.log_location)
    try:
        assert store.verify_chain() is None
        ends = {
            r.event.run_id: r.event.outcome
            for r in store.read()
            if isinstance(r.event, RunFinished)
        }
        runs = [r[0] for r in store.query("SELECT run_id FROM runs ORDER BY started_seq")]
        held = store.query("SELECT partition, worker FROM leases")
    finally:
        store.close()
    assert len(runs) == len(POINTS)
    assert {ends.get(run) for run in runs} == {"interrupted"}, ends
    assert held == [], held  # every run let its leases go on the way out
