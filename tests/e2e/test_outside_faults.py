"""Overlapping runs, operator commands during a run, a locked database, a full disk, and the
API key's secrecy: faults from outside the process."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from commands.config import load_config
from eventlog.events import BatchCleared, BatchSubmitted, FailuresReset, RecordFailed
from gemini_emulator import Emulator
from projections import open_store, verify
from tests.conftest import ROOT, default_sigint, run_cli
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config
from tests.reads import scalar

KEYS = keys_for(1, 2, 1, 8)
ENV = {"E2E_GEMINI_KEY": API_KEY}


def start(
    config: Path, *args: str, preexec: Callable[[], None] = default_sigint
) -> subprocess.Popen[str]:
    """A worker in the background; its output goes to files next to the config (a pipe nobody
    reads would fill up and block it). It starts with SIGINT's default action (``preexec``),
    whatever the suite's."""
    n = len(list(config.parent.glob("worker-*.err")))
    return subprocess.Popen(
        [sys.executable, "-m", "commands", "--config", str(config), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **ENV},
        stdout=subprocess.DEVNULL,
        stderr=(config.parent / f"worker-{n}.err").open("w"),
        text=True,
        preexec_fn=preexec,
    )


def stderr_of(config: Path) -> list[str]:
    return [p.read_text() for p in sorted(config.parent.glob("worker-*.err"))]


def test_two_runs_started_together_never_share_a_record(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {"timing": {"pending_seconds": 0.3}}
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url, batching={"batch_size": 4})
    runs = [start(config, "run", "--once") for _ in range(2)]
    codes = sorted(p.wait(timeout=60) for p in runs)
    assert codes == [0, 1], stderr_of(config)
    assert any("another run holds the lock" in err for err in stderr_of(config))
    # A second pair that waits for the lock instead: both succeed, one after the other.
    waiting = [start(config, "run", "--until-idle", "--wait", "60") for _ in range(2)]
    assert [p.wait(timeout=120) for p in waiting] == [0, 0]
    store = open_store(load_config(config).paths.database)
    submitted = Counter(
        k for r in store.read() if isinstance(r.event, BatchSubmitted) for k in r.event.record_keys
    )
    store.close()
    assert set(submitted) == set(KEYS) and max(submitted.values()) == 1
    assert check_final_state(load_config(config), emulator, KEYS) == {"written": len(KEYS)}


def test_operator_commands_work_while_a_run_is_active(tmp_path: Path, emulator: Emulator) -> None:
    # The first job waits 3 s: time enough for an operator to clear it while the run is active.
    emulator.policy = {
        "timing": {"pending_seconds": 0.3},
        "jobs": [{"nth": 1, "pending_seconds": 3.0}],
        "records": [{"match": "*", "outcome": "invalid_json", "times": 1}],
    }
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(
        tmp_path, emulator.url, batching={"batch_size": 4, "max_active_batches": 2}
    )
    db = load_config(config).paths.database
    ops = {"GEMINI_BATCHES_ACTOR": "ops@test"}

    def query(sql: str) -> list[tuple[Any, ...]]:
        if not db.exists():
            return []
        store = open_store(db)
        try:
            return store.query(sql)
        finally:
            store.close()

    def wait_for(sql: str) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = query(sql)
            if rows:
                return rows
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {sql}: {stderr_of(config)}")

    loop = start(config, "run", "--loop")
    try:
        [(first,)] = wait_for("SELECT batch_id FROM active_batches ORDER BY submitted_seq LIMIT 1")
        r = run_cli("--config", str(config), "clear-batch", first, "--reason", "test", env=ops)
        assert r.code == 0, r.err
        assert run_cli("--config", str(config), "status").code == 0
        wait_for("SELECT record_key FROM failure_counts")
        r = run_cli("--config", str(config), "reset-failures", "--all", env=ops)
        assert r.code == 0, r.err
        assert run_cli("--config", str(config), "status", "--json").code == 0
        # Everything written, the cleared job's late results seen, and every file cleaned up.
        wait_for(
            f"SELECT 1 WHERE (SELECT count(*) FROM record_status WHERE status = 'written')"
            f" = {len(KEYS)} AND NOT EXISTS (SELECT 1 FROM abandoned_batches) "
            "AND NOT EXISTS (SELECT 1 FROM uploaded_files)"
        )
    finally:
        loop.send_signal(signal.SIGINT)
        assert loop.wait(timeout=30) == 130, stderr_of(config)
    store = open_store(db)
    log = list(store.read())
    assert any(
        isinstance(r.event, BatchCleared) and r.actor == "operator:ops@test clear-batch"
        for r in log
    )
    assert any(
        isinstance(r.event, FailuresReset) and r.actor.startswith("operator:ops@test") for r in log
    )
    assert verify(store) is None and store.verify_chain() is None
    outcome = store.query("SELECT outcome FROM runs")
    store.close()
    assert outcome == [("interrupted",)]
    assert check_final_state(load_config(config), emulator, KEYS, billing=False) == {
        "written": len(KEYS)
    }


def test_a_database_locked_past_the_busy_timeout_is_a_clear_error(
    tmp_path: Path, emulator: Emulator
) -> None:
    make_dataset(tmp_path / "input", KEYS[:3])
    config = write_config(tmp_path, emulator.url)
    with config.open("a") as fh:
        fh.write("[database]\nbusy_timeout_seconds = 0.3\n")
    assert run_cli("--config", str(config), "run", env=ENV).code == 0
    db = load_config(config).paths.database
    holder = apsw.Connection(str(db))
    holder.execute("BEGIN IMMEDIATE")
    try:
        for args in (["run"], ["reset-failures", "--all"], ["clear-batch", "x"]):
            r = run_cli("--config", str(config), *args, env=ENV)
            assert r.code == 1 and "database is locked by another process" in r.err, r.err
            assert "Traceback" not in r.err
        assert run_cli("--config", str(config), "status").code == 0  # readers are not blocked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert run_cli("--config", str(config), "run", "--until-idle", env=ENV).code == 0
    assert check_final_state(load_config(config), emulator, KEYS[:3]) == {"written": 3}


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (needs the right to mount; skipped otherwise). Big enough for SQLite's WAL
    to reach its checkpoint once the filler is gone."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    filler.write_bytes(b"\0" * max(free - leave, 0))
    return filler


def test_disk_full_while_writing_outputs_then_recovery(
    tmp_path: Path, emulator: Emulator, tiny_disk: Path
) -> None:
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(
        tmp_path,
        emulator.url,
        paths={"output_root": str(tiny_disk / "out")},
        batching={"batch_size": 16},
    )
    filler = _fill(tiny_disk, leave=6 * 4096)
    r = run_cli("--config", str(config), "run", "--until-idle", env=ENV)
    assert r.code == 1 and "cannot write output" in r.err and "No space left" in r.err
    assert r.err.count("Traceback") == 0
    cfg = load_config(config)
    store = open_store(cfg.paths.database)
    assert verify(store) is None
    inflight = scalar(store, "SELECT count(*) FROM inflight_records")
    written = {
        r[0] for r in store.query("SELECT record_key FROM record_status WHERE status = 'written'")
    }
    assert store.query("SELECT outcome FROM runs") == [("error",)]
    store.close()
    assert inflight > 0  # the unwritten results wait in their batch: nothing lost
    for key in written:  # every output the log calls written is on disk, whole
        state, school, year, page = key.split(":")
        assert (cfg.paths.output_root / state / school / year / f"{page}.json").stat().st_size
    filler.unlink()
    assert run_cli("--config", str(config), "run", "--until-idle", env=ENV).code == 0
    assert check_final_state(cfg, emulator, KEYS) == {"written": len(KEYS)}


def test_disk_full_while_writing_the_log_then_recovery(
    tmp_path: Path, emulator: Emulator, tiny_disk: Path
) -> None:
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(
        tmp_path, emulator.url, paths={"database": str(tiny_disk / "gemini_batches.db")}
    )
    assert run_cli("--config", str(config), "status", "--no-scan").code == 1  # no db yet
    filler = _fill(tiny_disk, leave=160 * 1024)
    r = run_cli("--config", str(config), "run", "--until-idle", env=ENV)
    assert r.code == 1 and "disk full" in r.err and "Traceback" not in r.err, r.err
    filler.unlink()
    cfg = load_config(config)
    assert run_cli("--config", str(config), "run", "--until-idle", env=ENV).code == 0
    store = open_store(cfg.paths.database)
    assert verify(store) is None and store.verify_chain() is None
    store.close()
    assert check_final_state(cfg, emulator, KEYS, billing=False) == {"written": len(KEYS)}


def test_the_api_key_appears_in_no_artifact_of_a_run(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {
        "records": [{"match": KEYS[1], "outcome": "invalid_json", "times": 1}],
        # A service that echoes the key in its error message must not leak it either.
        "faults": [
            {
                "endpoint": "batches.get",
                "calls": [1],
                "status": 400,
                "message": f"bad request for key {API_KEY}",
            },
            {
                "endpoint": "files.upload",
                "calls": [2],
                "status": 503,
                "message": f"unavailable for {API_KEY}",
            },
        ],
    }
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url)
    outputs = []
    for fmt in ("text", "json"):
        r = run_cli(
            "--config", str(config), "--log-format", fmt, "-v", "run", "--until-idle", env=ENV
        )
        outputs.append(r.out + r.err)
    cfg = load_config(config)
    outputs += [
        run_cli("--config", str(config), *a).out
        for a in (
            ["status"],
            ["report", "--last"],
            ["analyze-failures", "--export-csv", str(tmp_path / "f.csv")],
        )
    ]
    assert all(API_KEY not in text for text in outputs)
    secret = API_KEY.encode()
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    conn = sqlite3.connect(cfg.paths.database)
    rows = conn.execute("SELECT * FROM events").fetchall()
    conn.close()
    assert rows and all(API_KEY not in str(row) for row in rows)
    # The injected 400 and 503 did happen, scrubbed.
    store = open_store(cfg.paths.database)
    failed = [r.event for r in store.read() if isinstance(r.event, RecordFailed)]
    store.close()
    assert failed and any("***" in text for text in outputs)


def test_the_database_backups_and_reports_are_owner_only(
    tmp_path: Path, emulator: Emulator
) -> None:
    make_dataset(tmp_path / "input", KEYS[:2])
    config = write_config(tmp_path, emulator.url)
    assert run_cli("--config", str(config), "run", env=ENV).code == 0
    cfg = load_config(config)
    assert run_cli("--config", str(config), "nuke", "--confirm").code == 0
    [backup] = cfg.paths.database.parent.glob("*.backup-*")
    [report] = cfg.paths.reports_dir.glob("*.md")
    for path in (backup, report, cfg.paths.reports_dir, cfg.paths.database.parent):
        assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
    lock = Path(f"{cfg.paths.database}.lock")
    assert lock.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    "hostile", ["x' OR '1'='1", "California'; DROP TABLE events; --", "%", "_"]
)
def test_sql_filters_are_parameterised(populated: Path, hostile: str) -> None:
    before = populated.read_bytes()
    r = run_cli("--db", str(populated), "reset-failures", "--states", hostile)
    assert r.code == 1 and "no failure counts match" in r.err
    r = run_cli("--db", str(populated), "analyze-failures", "--record-key", hostile)
    assert r.code == 1 and "nothing about record" in r.err
    assert populated.read_bytes() == before
