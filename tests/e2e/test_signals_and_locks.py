"""SIGTERM ends a run as Ctrl+C does, recorded in the log; ``run --loop`` waits out a database
held past the busy timeout instead of exiting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from commands.config import load_config
from eventlog.events import BatchSubmitted, RunFinished, RunStarted
from gemini_emulator import Emulator
from tests.conftest import file_digest, ignore_sigint, run_cli
from tests.e2e.test_outside_faults import ENV, KEYS, start, stderr_of
from tests.pipeline import check_final_state, events, make_dataset, write_config


def wait_until(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def started(config: Path, runs: int = 1) -> bool:
    if not load_config(config).paths.database.exists():
        return False
    return sum(isinstance(e, RunStarted) for e in events(load_config(config))) >= runs


def in_flight(config: Path) -> bool:
    """A job was created (and stays in flight: the tests' emulator keeps it pending).

    The tests signal a run from then on, not at a fixed delay after it started: on a loaded
    machine the first create can last longer than such a delay, and a signal landing in it
    meets google-genai building its pydantic models (deferred to first use), where pydantic
    turns the KeyboardInterrupt into a SchemaError: the run ends as an error, exit 70 (seen under
    pytest-xdist). That window is the product's, not what these tests are about."""
    return any(isinstance(e, BatchSubmitted) for e in events(load_config(config)))


@pytest.mark.parametrize(
    ("signum", "code", "words"),
    [
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
        (signal.SIGINT, 130, "stopped by the operator (Ctrl+C)"),
    ],
)
def test_a_signal_ends_the_run_with_run_finished(
    tmp_path: Path, emulator: Emulator, signum: int, code: int, words: str
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 30}}  # the job stays in flight
    make_dataset(tmp_path / "input", KEYS[:4])
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    worker = start(config, "run", "--loop")
    wait_until(lambda: started(config))
    wait_until(lambda: in_flight(config))
    worker.send_signal(signum)
    assert worker.wait(timeout=30) == code, stderr_of(config)
    finished = [e for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert [(f.outcome, words in f.message) for f in finished] == [("interrupted", True)]
    assert "Traceback" not in stderr_of(config)[0]
    status = run_cli("--config", str(config), "status")
    assert status.code == 0 and "still running" not in status.out and "interrupted" in status.out
    # The next run finds nothing to mark as crashed.
    assert run_cli("--config", str(config), "run", "--once", env=ENV).code == 0
    outcomes = [e.outcome for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert outcomes == ["interrupted", "ok"]


def test_a_run_started_with_sigint_ignored_still_stops_on_kill_int(
    tmp_path: Path, emulator: Emulator
) -> None:
    """A worker started from a shell script with ``&`` inherits SIGINT as ignored; the run sets
    its own handler (``commands.worker.session.sigterm_as_interrupt``), so ``kill -INT`` stops
    it as Ctrl+C does: exit 130 and ``RunFinished(interrupted)``."""
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import signal; print(signal.getsignal(signal.SIGINT) == signal.SIG_IGN)",
        ],
        preexec_fn=ignore_sigint,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "True"  # the child starts as `cmd &` starts it
    emulator.policy = {"timing": {"pending_seconds": 30}}
    make_dataset(tmp_path / "input", KEYS[:4])
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    worker = start(config, "run", "--loop", preexec=ignore_sigint)
    wait_until(lambda: started(config))
    wait_until(lambda: in_flight(config))
    os.kill(worker.pid, signal.SIGINT)
    try:
        code = worker.wait(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert code == 130, stderr_of(config)
    finished = [e for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert [f.outcome for f in finished] == ["interrupted"]
    assert "stopped by the operator (Ctrl+C)" in finished[0].message
    assert "Traceback" not in stderr_of(config)[0]


def test_a_repeated_sigterm_does_not_cut_the_end_of_the_run_off(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 30}}
    make_dataset(tmp_path / "input", KEYS[:4])
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    worker = start(config, "run", "--loop")
    wait_until(lambda: started(config))
    wait_until(lambda: in_flight(config))
    for _ in range(5):
        worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 143
    finished = [e for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert [f.outcome for f in finished] == ["interrupted"]


@pytest.mark.parametrize("held_seconds", [1.5, 3.0])
def test_run_loop_waits_out_a_database_lock(
    tmp_path: Path, emulator: Emulator, held_seconds: float
) -> None:
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    with config.open("a") as fh:
        fh.write("[database]\nbusy_timeout_seconds = 0.2\n")
    assert run_cli("--config", str(config), "run", "--once", env=ENV).code == 0
    worker = start(config, "run", "--loop")
    wait_until(lambda: started(config, 2))
    db = load_config(config).paths.database
    holder = apsw.Connection(str(db))
    # The loop is writing meanwhile: wait for its transaction to end rather than fail at once
    # when a loaded machine makes one last long enough to meet this BEGIN.
    holder.set_busy_timeout(30_000)
    holder.execute("BEGIN IMMEDIATE")
    try:
        wait_until(lambda: "database busy" in stderr_of(config)[0])
        time.sleep(held_seconds)
        assert worker.poll() is None, stderr_of(config)  # still running
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        wait_until(lambda: check_written(config, emulator) == {"written": len(KEYS)}, 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 143
    err = stderr_of(config)[0]
    assert "Cycle skipped, database busy" in err and "Traceback" not in err
    outcomes = [e.outcome for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert outcomes == ["ok", "interrupted"]


def check_written(config: Path, emulator: Emulator) -> dict[str, int] | None:
    try:
        return check_final_state(load_config(config), emulator, KEYS)
    except (AssertionError, apsw.BusyError):
        return None


def test_run_once_still_fails_on_a_lock(tmp_path: Path, emulator: Emulator) -> None:
    """Only --loop waits: a one-off run reports the lock and exits 1 (as before)."""
    make_dataset(tmp_path / "input", KEYS[:2])
    config = write_config(tmp_path, emulator.url)
    with config.open("a") as fh:
        fh.write("[database]\nbusy_timeout_seconds = 0.2\n")
    assert run_cli("--config", str(config), "run", "--once", env=ENV).code == 0
    holder = apsw.Connection(str(load_config(config).paths.database))
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = run_cli("--config", str(config), "run", "--once", env=ENV)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert r.code == 1 and "database is locked" in r.err


def test_status_never_shows_a_run_killed_with_sigkill_as_running(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 30}}  # the job stays in flight
    make_dataset(tmp_path / "input", KEYS[:4])
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    worker = start(config, "run", "--loop")
    wait_until(lambda: started(config))
    alive = run_cli("--config", str(config), "status", "--no-scan")
    assert alive.code == 0 and "still running" in alive.out, alive.out
    worker.send_signal(signal.SIGKILL)
    assert worker.wait(timeout=30) == -signal.SIGKILL
    logged = len(events(load_config(config)))
    dead = run_cli("--config", str(config), "status")
    assert dead.code == 0, dead.err
    assert "still running" not in dead.out
    assert "ended without a trace (crashed or killed); the next run records it" in dead.out
    # (The first open after the kill checkpoints the WAL into the file; from then on the file is
    # stable, and status only looks.)
    db = load_config(config).paths.database
    before = file_digest(db)
    as_json = json.loads(run_cli("--config", str(config), "status", "--json").out)
    assert as_json["last_run"]["outcome"] is None and as_json["last_run"]["running"] is False
    assert file_digest(db) == before and len(events(load_config(config))) == logged
    # The next run records the dead one as crashed, and status says so.
    assert run_cli("--config", str(config), "run", "--once", env=ENV).code == 0
    outcomes = [e.outcome for e in events(load_config(config)) if isinstance(e, RunFinished)]
    assert outcomes == ["crashed", "ok"]
    after = run_cli("--config", str(config), "status", "--no-scan")
    assert "last run" in after.out and ": ok," in after.out and "without a trace" not in after.out
