"""A damaged, misplaced or read-only database, and a ``-wal`` file deleted under a running
worker: one ``Error:`` line naming the file and what to do, never a traceback, and the file left
as it was (real processes; the worker through the real SDK and the emulator).

As root, ``chmod`` does not deny writes, so the read-only folder is a read-only bind mount in a
private mount namespace (``unshare -m``); the test is skipped where that is unavailable."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from commands.config import load_config
from eventlog.events import RecordFailed, RunStarted
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT, Result, file_digest, run_cli
from tests.e2e.test_outside_faults import ENV, KEYS, start, stderr_of
from tests.e2e.test_signals_and_locks import started, wait_until
from tests.pipeline import make_dataset, write_config


def _log(db: Path) -> None:
    """A log of a few hundred pages (about 1 MB)."""
    s = open_store(db, create=True)
    for i in range(40):
        s.append(
            [
                RecordFailed(
                    record_key=f"California:S{i}:2020:{j}",
                    batch_id="batches/x",
                    error_type="invalid_json",
                    message="m" * 200,
                )
                for j in range(1, 20)
            ],
            actor="run:t",
        )
    s.close()


def _garbage_in_the_middle(db: Path) -> None:
    """Garbage over every third page from the 60th, the schema's own pages spared (where they lie
    moves with the number of tables): SQLite can still read what the file holds, and
    ``quick_check`` finds the damage."""
    connection = apsw.Connection(str(db))
    try:
        schema = {
            page
            for (page,) in connection.execute(
                "SELECT pageno FROM dbstat WHERE name = 'sqlite_schema'"
            )
        }
    finally:
        connection.close()
    with db.open("r+b") as f:
        for page in (p for p in range(60, 200, 3) if p + 1 not in schema):
            f.seek(4096 * page)
            f.write(b"\xde\xad\xbe\xef" * 4)


def _truncated(db: Path) -> None:
    with db.open("r+b") as f:
        f.truncate(4096 * 50 + 17)


def _not_a_database(db: Path) -> None:
    db.write_text("hello, I am a text file\n" * 100)


VARIANTS: dict[str, tuple[Callable[[Path], None], list[str]]] = {
    "garbage over pages": (_garbage_in_the_middle, ["malformed", "PRAGMA quick_check: ***"]),
    "truncated": (_truncated, ["malformed", "PRAGMA quick_check"]),
    "not a database": (_not_a_database, ["file is not a database", "point --db"]),
}
COMMANDS = [["status"], ["run", "--once"], ["replay.py"]]


def cli(config: Path, db: Path, command: list[str]) -> Result:
    if command[0] == "replay.py":
        return run_cli("--config", str(config), "--db", str(db), script="replay.py")
    return run_cli("--config", str(config), "--db", str(db), *command, env=ENV)


def one_error_line(r: Result, *words: str) -> str:
    assert r.code == 1, (r.code, r.err)
    assert "Traceback" not in r.err, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, r.err
    assert all(w in errors[0] for w in words), errors[0]
    return errors[0]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
@pytest.mark.parametrize("variant", VARIANTS)
def test_a_damaged_database_is_one_line_naming_the_file_and_what_to_do(
    tmp_path: Path, emulator: Emulator, variant: str, command: list[str]
) -> None:
    damage, words = VARIANTS[variant]
    db = tmp_path / "log.db"
    _log(db)
    damage(db)
    config = write_config(tmp_path, emulator.url)
    before = file_digest(db)
    line = one_error_line(cli(config, db, command), str(db), *words)
    if variant != "not a database":
        assert "restore the last backup" in line and "nuke --confirm" in line
    if not (variant == "garbage over pages" and command[0] == "run"):
        assert file_digest(db) == before
    # (A run opens a log whose damage lies in pages it has not read yet, and may append its
    # RunStarted before its reads reach them: then it stops at the first damaged page.)
    assert emulator.policy.calls("batches.create") == 0


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    p = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return p.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="no private mount namespace here")
@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_a_database_in_a_read_only_folder_is_one_line(
    tmp_path: Path, emulator: Emulator, command: list[str]
) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "log.db"
    _log(db)
    config = write_config(tmp_path, emulator.url)
    before = file_digest(db)
    args = (
        [sys.executable, "-m", "commands"]
        if command[0] != "replay.py"
        else [
            sys.executable,
            str(ROOT / "replay.py"),
        ]
    )
    args += ["--config", str(config), "--db", str(db), *command[1:]]
    if command[0] != "replay.py":
        args.insert(args.index(str(db)) + 1, command[0])
    script = f'mount --bind -o ro {folder} {folder} && exec "$@"'
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, "sh", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "mount" in p.stderr and p.returncode != 1:
        pytest.skip(f"cannot bind-mount read-only here: {p.stderr[-200:]}")
    line = one_error_line(Result(p.returncode, p.stdout, p.stderr), str(folder))
    assert "read-only" in line.lower() or "Read-only" in line
    assert file_digest(db) == before


@pytest.mark.parametrize("command", [["status"], ["run", "--once"]], ids=["status", "run"])
def test_a_database_whose_folder_is_a_file_is_one_line(
    tmp_path: Path, emulator: Emulator, command: list[str]
) -> None:
    (tmp_path / "afile").write_text("x")
    config = write_config(tmp_path, emulator.url)
    db = tmp_path / "afile" / "log.db"
    one_error_line(cli(config, db, command), str(tmp_path / "afile"))


def test_a_worker_whose_wal_is_deleted_stops_at_once(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {"timing": {"pending_seconds": 30}}  # the job stays in flight
    make_dataset(tmp_path / "input", KEYS[:4])
    config = write_config(tmp_path, emulator.url, batching={"poll_interval_seconds": 0.2})
    worker = start(config, "run", "--loop")
    wait_until(lambda: started(config))
    wal = Path(f"{load_config(config).paths.database}-wal")
    wait_until(wal.exists)
    wal.unlink()
    assert worker.wait(timeout=30) == 1, stderr_of(config)
    err = stderr_of(config)[0]
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"{wal} was deleted or replaced" in errors[0], err
    assert "stopped before writing blind" in errors[0] and "--verify-chain" in errors[0]
    assert "Cannot record the end" not in err  # it wrote nothing more
    # What it had committed was in the deleted file; its close checkpointed it into the
    # database (a measured fact of SQLite here, not promised): the run's start is still there.
    s = open_store(load_config(config).paths.database)
    try:
        assert any(isinstance(r.event, RunStarted) for r in s.read())
    finally:
        s.close()
