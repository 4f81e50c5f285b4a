"""The seed runbook's scripts (``scripts/``) take ``--config`` and ``--db`` like every command,
before or after their own flags: each run here as a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

#: Each script with a flag set that reads the database and changes nothing.
READ_ONLY = {
    "scripts/analyze_failures.py": ["--summary"],
    "scripts/clear_failure_counts.py": ["--all", "--dry-run"],
    "scripts/nuke_database.py": ["--dry-run"],
}
#: What each says when it read the database it was pointed at.
SAYS = {
    "scripts/analyze_failures.py": "records failing now",
    "scripts/clear_failure_counts.py": "dry run: would reset",
    "scripts/nuke_database.py": "would back up",
}


@pytest.mark.parametrize("script", sorted(READ_ONLY))
@pytest.mark.parametrize("where", ["before", "after"])
@pytest.mark.parametrize("option", ["--config", "--db", "--config=", "--db="])
def test_every_seed_script_takes_config_and_db_before_or_after_its_flags(
    populated: Path, tmp_path: Path, script: str, where: str, option: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\n')
    value = str(config) if option.startswith("--config") else str(populated)
    given = [option + value] if option.endswith("=") else [option, value]
    flags = READ_ONLY[script]
    args = [*given, *flags] if where == "before" else [*flags, *given]
    # No $GEMINI_BATCHES_CONFIG, and a working directory with no gemini_batches.toml: only the
    # flag can lead the script to the database.
    r = run_cli(*args, script=script, cwd=tmp_path)
    assert r.code == 0, r.err
    assert SAYS[script] in r.out, r.out


@pytest.mark.parametrize("script", sorted(READ_ONLY))
def test_db_after_config_wins_and_help_lists_both(script: str, tmp_path: Path) -> None:
    r = run_cli("--help", script=script)
    assert r.code == 0
    assert "--config" in r.out and "--db" in r.out
    # --db names the database even when the config names another (as on the CLI).
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{tmp_path / "elsewhere.db"}"\n')
    r = run_cli(
        "--config",
        str(config),
        *READ_ONLY[script],
        "--db",
        str(tmp_path / "none.db"),
        script=script,
        cwd=tmp_path,
    )
    assert r.code == 1 and "none.db" in r.err, r.err
