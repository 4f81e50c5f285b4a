"""Shared fixtures: a fresh store on disk, a scripted scenario, and a CLI runner (in-process and
as a real subprocess)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from eventlog.store import EventStore
from gemini_emulator import Emulator
from projections import open_store
from tests.backends import BACKENDS, Backend, StoreFactory, on_server

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler.protocol import Scheduling

ROOT = Path(__file__).resolve().parent.parent

#: Test modules whose tests share a costly module-scoped fixture (Prefect's test server, the
#: dashboard's demo): under pytest-xdist each goes whole to one worker, so it starts once.
ONE_WORKER_MODULES = frozenset(
    {"tests/commands/test_prefect_flow.py", "tests/commands/test_dashboard.py"}
)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> Scheduling | None:
    """``--dist loadgroup`` (the addopts): tests handed out one by one as workers free up, but
    each of :data:`ONE_WORKER_MODULES` as one unit, the biggest units first. (xdist's own
    loadgroup reads the ``xdist_group`` mark from an ``@group`` suffix its workers write into
    node ids, which pytest 9.2 no longer takes: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModuleGroups(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else super()._split_scope(nodeid)

    return ModuleGroups(config, log)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "gemini_batches.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[EventStore]:
    s = open_store(db_path, create=True)
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The session's PostgreSQL server URL: ``$GB_TEST_POSTGRES_URL`` (under pytest-xdist, a
    database of this worker's own on it), or a throwaway server started now and stopped at the
    end, one per worker (``tests/postgres.py``); skips (fails under CI=1) when none can be had."""
    from tests import postgres

    url = os.environ.get(postgres.ENV_URL)
    if url:
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker:
            try:
                url = postgres.worker_database(url, worker)
            except postgres.NoServer as e:
                postgres.unavailable(str(e))
                return
        yield url
        return
    try:
        server = postgres.throwaway_server()
        url = server.__enter__()
    except postgres.NoServer as e:
        postgres.unavailable(str(e))
        return
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session", params=BACKENDS, ids=lambda b: b.name)
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each storage backend the store's contract suite runs on (``tests/backends.py``)."""
    b: Backend = request.param
    if b.name == "postgresql":
        return on_server(b, request.getfixturevalue("postgres_server"))
    return b


@pytest.fixture
def store_factory(backend: Backend, db_path: Path) -> Iterator[StoreFactory]:
    """Opens stores of ``backend`` at this test's location (``db_path`` for SQLite, a fresh
    schema for PostgreSQL); all closed at teardown."""
    location = db_path if backend.name == "sqlite" else backend.new_location(db_path.parent)
    factory = StoreFactory(backend, location)
    yield factory
    factory.close_all()


@pytest.fixture
def populated(db_path: Path) -> Path:
    """A database holding the whole scripted scenario (closed, so its file is settled)."""
    from tests.scenario import scenario

    s = open_store(db_path, create=True)
    for actor, group in scenario():
        s.append(group, actor=actor)
    s.close()
    return db_path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    script: str | None = None,
    timeout: float = 60,
) -> Result:
    """Run ``python -m commands ARGS`` (or ``python SCRIPT ARGS``) as a real subprocess."""
    cmd = [sys.executable, str(ROOT / script)] if script else [sys.executable, "-m", "commands"]
    full_env = {k: v for k, v in os.environ.items() if k != "GEMINI_BATCHES_CONFIG"}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    p = subprocess.run(
        [*cmd, *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def default_sigint() -> None:
    """``preexec_fn`` of a child a test sends SIGINT to: it starts with SIGINT's default action
    whatever the suite's own, so the test does not depend on how the suite was started (one
    started with ``&`` from a shell script has SIGINT ignored, and its children inherit that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignore_sigint() -> None:
    """``preexec_fn`` of a child started as a shell script's ``cmd &`` starts it: SIGINT
    ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def file_digest(path: Path) -> str:
    """sha256 of the database file and its WAL (if any): proof that nothing was written."""
    h = hashlib.sha256()
    for suffix in ("", "-wal"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A running emulator that accepts only ``tests.pipeline.API_KEY``."""
    from tests.pipeline import API_KEY

    with Emulator(api_key=API_KEY) as emu:
        yield emu
