from __future__ import annotations

from pathlib import Path

from eventlog.store import EventStore
from projections import open_store
from tests.commands.conftest import invoke
from tests.conftest import file_digest, run_cli
from tests.reads import scalar
from tests.scenario import all_events


def test_dry_run_prints_counts_and_changes_nothing(populated: Path) -> None:
    before = file_digest(populated)
    out = invoke(populated, "nuke", "--dry-run").output
    assert f"events  {len(all_events())}" in out and "failure_logs  4" in out
    assert file_digest(populated) == before


def test_confirm_keeps_an_owner_only_backup_then_starts_an_empty_log(populated: Path) -> None:
    result = invoke(populated, "nuke", "--confirm")
    assert result.exit_code == 0, result.output
    [backup] = populated.parent.glob("gemini_batches.backup-*.db")
    assert backup.stat().st_mode & 0o777 == 0o600
    old = EventStore.open(backup, write=False)
    assert old.last_seq() == len(all_events()) and old.verify_chain() is None
    old.close()
    assert not populated.exists()  # created afresh by the next command that writes
    fresh = open_store(populated, create=True)
    assert fresh.last_seq() == 0
    fresh.close()


def test_recreate_tables_creates_the_fresh_schema_at_once(populated: Path) -> None:
    assert invoke(populated, "nuke", "--confirm", "--recreate-tables").exit_code == 0
    s = open_store(populated)
    assert s.last_seq() == 0
    assert scalar(s, "SELECT count(*) FROM active_batches") == 0
    s.close()


def test_flags_must_say_what_to_do(populated: Path) -> None:
    before = file_digest(populated)
    assert "exactly one of --dry-run or --confirm" in invoke(populated, "nuke").output
    assert (
        "only goes with --confirm"
        in invoke(populated, "nuke", "--dry-run", "--recreate-tables").output
    )
    assert file_digest(populated) == before


def test_the_seed_script_takes_the_seed_flags(populated: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\n')
    env = {"GEMINI_BATCHES_CONFIG": str(config)}
    r = run_cli("--dry-run", script="scripts/nuke_database.py", env=env)
    assert r.code == 0 and "would back up" in r.out
    r = run_cli("--confirm", "--recreate-tables", script="scripts/nuke_database.py", env=env)
    assert r.code == 0, r.err
    assert len(list(populated.parent.glob("gemini_batches.backup-*.db"))) == 1


def test_nuke_is_refused_while_a_run_holds_the_lock(populated: Path) -> None:
    from commands.worker.runlock import RunLock

    before = file_digest(populated)
    with RunLock(populated).acquire():
        result = invoke(populated, "nuke", "--confirm")
    assert result.exit_code == 1 and "another run holds the lock" in result.output
    # The message names what nuke can do, not an option it lacks (nuke has no --wait).
    assert "--wait" not in result.output and "stop that run first" in result.output
    assert "nuke" in invoke(populated, "nuke", "--help").output
    assert "--wait" not in invoke(populated, "nuke", "--help").output
    assert file_digest(populated) == before
    assert not list(populated.parent.glob("*.backup-*"))
