"""Several workers on one log (``[workers] mode = "shared"``), on SQLite and on a real PostgreSQL
server, real subprocesses and the real SDK over HTTP against the emulator, with faults on (503s
on create, get and download, invalid JSON) and two projects (two API keys): one worker is
SIGKILLed mid-run, another is cut off (its lease renewals blocked while it goes on cycling), the
third takes over their partitions and finishes: every page written or dead-lettered exactly once,
nothing billed twice, each batch reached only with its own project's key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from commands.config import Config, load_config
from eventlog.errors import OperatorError
from eventlog.events import (
    BatchSubmissionIntended,
    LeaseAcquired,
    LeaseRenewed,
    LeaseTakenOver,
    RunFinished,
)
from eventlog.store import Recorded
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT
from tests.pipeline import (
    check_final_state,
    keys_for,
    make_dataset,
    peak_project_loads,
    write_config,
)
from tests.postgres import new_schema_url

KEYS = keys_for(states=4, schools=3, years=1, pages=20)  # 240 pages
POLICY = {
    "timing": {"pending_seconds": 0.2, "running_seconds": 0.3},
    "records": [
        {"match": KEYS[7], "outcome": "invalid_json", "times": 1},
        {"match": KEYS[100], "outcome": "missing_line", "times": 1},
        {"match": KEYS[150], "outcome": "invalid_json"},  # always: dead-lettered
    ],
    "faults": [
        {"endpoint": "batches.create", "calls": [3], "status": 503},
        {"endpoint": "batches.create", "calls": [9], "status": 503, "after": True},
        {"endpoint": "batches.get", "calls": [5, 6, 20], "status": 503},
        {"endpoint": "files.download", "calls": [2, 7], "status": 503},
    ],
}
KEY_A, KEY_B = "workers-key-a-0123456789", "workers-key-b-0123456789"
#: Both keys, as every worker's environment holds them.
KEYS_ENV = {"E2E_KEY_A": KEY_A, "E2E_KEY_B": KEY_B, "E2E_GEMINI_KEY": KEY_A}
PROJECTS = [
    {"name": "a", "api_key_env": "E2E_KEY_A", "max_active_batches": 3},
    {"name": "b", "api_key_env": "E2E_KEY_B", "max_active_batches": 3},
]
LEASE_SECONDS = 3.0


def start(
    config: Path, worker_id: str, mode: str = "--until-idle", **env: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests/crash/worker.py"),
            "--config",
            str(config),
            "run",
            mode,
            "--worker-id",
            worker_id,
        ],
        env={**os.environ, **KEYS_ENV, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def chained_records(config: Config) -> list[Recorded]:
    """Every event of the log, its hash chain checked."""
    store = open_store(config.log_location)
    try:
        assert store.verify_chain() is None
        return list(store.read())
    finally:
        store.close()


def sweep(mode: str, config: Path) -> None:
    """One more worker, ``sweeper``, alone: its first cycle sweeps what the others left on the
    service; it must end cleanly."""
    done = subprocess.run(
        [
            *(sys.executable, str(ROOT / "tests/crash/worker.py"), "--config", str(config)),
            *("run", mode, "--worker-id", "sweeper"),
        ],
        env={**os.environ, **KEYS_ENV, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def status_of(config: Path) -> str:
    """``status``'s screen (exit 0)."""
    status = subprocess.run(
        [sys.executable, "-m", "commands", "--config", str(config), "status"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert status.returncode == 0, status.stderr[-2000:]
    return status.stdout


def wait_for_leases(config: Config, workers: set[str], timeout: float = 60) -> None:
    """Until each of ``workers`` has held a lease (a worker starting takes a while)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            store = open_store(config.log_location, write=False)
        except OperatorError:  # not created yet
            time.sleep(0.1)
            continue
        try:
            holders = {
                w
                for r in store.read()
                if isinstance(r.event, LeaseAcquired | LeaseTakenOver)
                for w in (getattr(r.event, "worker", ""), getattr(r.event, "to_worker", ""))
            }
        finally:
            store.close()
        if workers <= holders:
            return
        time.sleep(0.1)
    raise AssertionError(f"no lease taken by {workers} in {timeout}s")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The emulator with both projects' keys, each seeing only its own jobs and files."""
    with Emulator(POLICY, api_key=[KEY_A, KEY_B]) as emu:
        yield emu


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    """``[database]`` of the shared log: the SQLite file, or a fresh schema on the server."""
    if request.param == "sqlite":
        return {}
    return {"url": new_schema_url(request.getfixturevalue("postgres_server"))}


def test_three_workers_two_projects_one_killed_one_cut_off(
    tmp_path: Path, emulator: Emulator, database: dict[str, str]
) -> None:
    make_dataset(tmp_path / "input", KEYS)
    config_path = write_config(
        tmp_path,
        emulator.url,
        batching={"batch_size": 10, "max_active_batches": 6, "max_retries": 2},
        workers={
            "mode": "shared",
            "partition_by": "school_hash",
            "partitions": 6,
            "lease_seconds": LEASE_SECONDS,
        },
        database=database,
    )
    with config_path.open("a") as f:
        for p in PROJECTS:
            f.write("[[gemini.projects]]\n" + "".join(f"{k} = {v!r}\n" for k, v in p.items()))
    config = load_config(config_path)
    assert config.log_location == database.get("url", config.paths.database)
    began = time.monotonic()
    killed = start(config_path, "killed", CRASH_AT="after_submitted_event", CRASH_NTH="2")
    cut_off = start(config_path, "cut-off", SKIP_RENEWALS_AFTER="3")
    wait_for_leases(config, {"killed", "cut-off"})
    healthy = start(config_path, "healthy")
    outs = {}
    for name, proc in (("killed", killed), ("healthy", healthy), ("cut-off", cut_off)):
        out, err = proc.communicate(timeout=120)
        outs[name] = (proc.returncode, out, err)
    assert outs["killed"][0] == -signal.SIGKILL, outs["killed"][2][-2000:]
    assert outs["healthy"][0] == 0, outs["healthy"][2][-3000:]
    assert outs["cut-off"][0] == 0, outs["cut-off"][2][-3000:]
    assert "stopped touching it" in outs["cut-off"][2], "\n".join(
        line for line in outs["cut-off"][2].splitlines() if "Scan:" not in line
    )[-6000:]
    seconds = time.monotonic() - began

    records = chained_records(config)
    events = [r.event for r in records]
    # Each worker took leases; the dead and the cut-off one's were taken over after they lapsed.
    takers = Counter((e.from_worker, e.to_worker) for e in events if isinstance(e, LeaseTakenOver))
    assert any(f == "killed" for f, _ in takers), takers
    assert any(f == "cut-off" for f, _ in takers), takers
    # Every batch holds one partition's pages, and every partition at most one holder at a time.
    for e in events:
        if isinstance(e, BatchSubmissionIntended):
            assert e.partition, e.display_name
    # No project ever had more batches active or intended than its limit, whichever worker
    # submitted them (each re-decides its admission inside the intent's own transaction).
    limits = Counter({str(p["name"]): int(str(p["max_active_batches"])) for p in PROJECTS})
    assert peak_project_loads(records) <= limits, peak_project_loads(records)
    # Both projects took batches; each job was reached only with its own key.
    assert {e.project for e in events if isinstance(e, BatchSubmissionIntended)} == {"a", "b"}
    assert emulator.service.foreign_lookups == 0, emulator.service.foreign_lookups
    # The calls the faults broke were made (and absorbed: the checks below).
    calls = emulator.service.policy.all_calls()
    for endpoint, n in (("batches.create", 9), ("batches.get", 20), ("files.download", 7)):
        assert calls.get(endpoint, 0) >= n, calls
    holder: dict[str, str] = {}
    for rec in records:
        e = rec.event
        if isinstance(e, LeaseAcquired):
            assert e.partition not in holder, (rec.seq, e)
            holder[e.partition] = e.worker
        elif isinstance(e, LeaseTakenOver):
            assert holder.get(e.partition) == e.from_worker, (rec.seq, e)
            holder[e.partition] = e.to_worker
        elif type(e).__name__ == "LeaseReleased":
            holder.pop(e.partition, None)  # type: ignore[attr-defined]
    # Once the cut-off worker's last renewal ran out, it appended nothing but its run's end.
    renewals = [e for e in events if isinstance(e, LeaseRenewed) and e.worker == "cut-off"]
    cut_run, lapsed_at = renewals[-1].run_id, renewals[-1].expires_at
    late = [
        type(r.event).__name__ for r in records if r.actor == f"run:{cut_run}" and r.ts >= lapsed_at
    ]
    assert set(late) <= {"RunFinished"}, Counter(late)
    assert any(r.actor == f"run:{cut_run}" and r.ts < lapsed_at for r in records)

    # One more worker, alone now: its first cycle sweeps what the dead left on the service.
    sweep("--once", config_path)
    status = status_of(config_path)
    listed = {line.split()[0]: line for line in status.splitlines() if "  run " in line}
    assert set(listed) == {"healthy", "killed", "cut-off", "sweeper"}, status
    assert "EXPIRED  partitions: none" in listed["killed"], listed["killed"]
    assert "EXPIRED  partitions: none" in listed["cut-off"], listed["cut-off"]
    assert "workers       " in status and "still running" not in status, status

    # No run lock in shared mode: the last run is "still running" while its worker renews its
    # leases, and "ended without a trace" once a SIGKILL let them lapse.
    watcher = start(config_path, "watcher", "--loop")
    try:
        wait_for_leases(config, {"watcher"})
        live = status_of(config_path)
        assert "still running" in live and "without a trace" not in live, live
    finally:
        watcher.kill()
        watcher.communicate(timeout=30)
    time.sleep(LEASE_SECONDS + 0.5)
    dead = status_of(config_path)
    assert "ended without a trace" in dead and "still running" not in dead, dead
    outcome = check_final_state(config, emulator, KEYS)
    assert outcome == {"written": len(KEYS) - 1, "dead_lettered": 1}
    assert seconds < 90, seconds


def test_a_worker_paused_past_its_lease_stops_when_it_wakes_and_appends_nothing_more(
    tmp_path: Path, emulator: Emulator, database: dict[str, str]
) -> None:
    """SIGSTOP for longer than ``lease_seconds`` (a VM migration, a long GC pause, a network
    partition): a worker started meanwhile records the paused one's run as crashed and takes its
    partitions. On SIGCONT the paused worker stops at its next append or renewal with one line
    and exit 1, appending nothing as the dead run (no renewal, no lease, no second end)."""
    keys = KEYS[:120]
    make_dataset(tmp_path / "input", keys)
    config_path = write_config(
        tmp_path,
        emulator.url,
        batching={"batch_size": 10, "max_active_batches": 4, "max_retries": 2},
        workers={"mode": "shared", "partition_by": "school_hash", "partitions": 4}
        | {"lease_seconds": LEASE_SECONDS},
        database=database,
    )
    config = load_config(config_path)
    paused = start(config_path, "paused", "--loop")
    healthy = start(config_path, "healthy")
    try:
        wait_for_leases(config, {"paused", "healthy"})
        paused.send_signal(signal.SIGSTOP)
        time.sleep(LEASE_SECONDS + 1)
        replacement = start(config_path, "replacement")
        paused_run = _run_of(config, "paused")
        _wait_for(config, lambda recs: any(_ends(r.event, paused_run) for r in recs))
    finally:
        paused.send_signal(signal.SIGCONT)
    _out, err = paused.communicate(timeout=60)
    assert paused.returncode == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err[-3000:]
    # Its next append or renewal is refused; or, stopped inside a transaction on PostgreSQL,
    # it finds the connection the server ended (a third of a lease idle in a transaction).
    assert "was recorded as ended by another worker" in errors[0] or (
        database and "the connection is closed" in errors[0]
    ), errors
    assert "Traceback" not in err, err[-3000:]
    for name, proc in (("healthy", healthy), ("replacement", replacement)):
        rest = proc.communicate(timeout=120)
        assert proc.returncode == 0, (name, rest[1][-3000:])

    records = chained_records(config)
    ended = [r.seq for r in records if _ends(r.event, paused_run)]
    assert len(ended) == 1, ended  # recorded once, by the replacement: never a second end
    after = [
        (r.seq, type(r.event).__name__)
        for r in records
        if r.actor == f"run:{paused_run}" and r.seq > ended[0]
    ]
    assert after == [], after
    assert any(r.actor == f"run:{paused_run}" for r in records if r.seq < ended[0])

    sweep("--until-idle", config_path)
    assert check_final_state(config, emulator, keys) == {"written": len(keys)}


def _ends(event: object, run_id: str) -> bool:
    return isinstance(event, RunFinished) and event.run_id == run_id


def _run_of(config: Config, worker: str) -> str:
    """The run of ``worker`` (from its lease renewals)."""
    runs = _wait_for(
        config,
        lambda recs: [
            r.event.run_id
            for r in recs
            if isinstance(r.event, LeaseRenewed) and r.event.worker == worker
        ],
    )
    return str(runs[0])


def _wait_for(config: Config, found: Callable[[list[Recorded]], Any], timeout: float = 60) -> Any:
    """Read the log until ``found(records)`` is truthy; returns what it answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        store = open_store(config.log_location, write=False)
        try:
            answer = found(list(store.read()))
        finally:
            store.close()
        if answer:
            return answer
        time.sleep(0.2)
    raise AssertionError(f"not seen in the log within {timeout}s")
