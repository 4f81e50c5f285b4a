""" "database not found" names where the path came from and suggests ``--config`` (issue 22,
item 6: run from the repository root after the demo, ``status``, ``replay.py`` and the scripts
said only the default path, and never that the demo's database is named by the demo's config).

Each case runs the CLI, ``replay.py`` or a seed script as a subprocess in a folder with no
database, and asserts the one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.pipeline import write_config

#: (script or None for ``python -m commands``, its arguments): each reads the log.
READERS = [
    (None, ["status"]),
    (None, ["analyze-failures", "--summary"]),
    ("replay.py", ["--verify-chain"]),
    ("scripts/analyze_failures.py", ["--summary"]),
    ("scripts/clear_failure_counts.py", ["--all", "--dry-run"]),
    ("scripts/nuke_database.py", ["--dry-run"]),
]
SUGGEST = "give the config that names your database with --config <path>"


def _config(folder: Path) -> Path:
    """``folder/gemini_batches.toml`` naming ``folder/data/gemini_batches.db`` (not made)."""
    folder.mkdir(parents=True, exist_ok=True)
    return write_config(folder, "http://127.0.0.1:9")


def _error(cwd: Path, script: str | None, args: list[str], **env: str) -> str:
    r = run_cli(*args, cwd=cwd, script=script, env=env or None)
    assert r.code == 1, r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


@pytest.mark.parametrize(("script", "args"), READERS, ids=lambda v: str(v))
def test_after_the_demo_no_config_here_suggests_the_demos(
    tmp_path: Path, script: str | None, args: list[str]
) -> None:
    _config(tmp_path / "demo")  # ./demo/gemini_batches.toml
    line = _error(tmp_path, script, args)
    nothing = " (nothing to nuke)" if script == "scripts/nuke_database.py" else ""
    assert line == (
        f"Error: database not found: {tmp_path}/data/gemini_batches.db{nothing}: the default, "
        "as no config was given (--config, $GEMINI_BATCHES_CONFIG) nor found "
        f"(./gemini_batches.toml); {SUGGEST}, e.g. --config demo/gemini_batches.toml "
        "(the demo's)"
    )


def test_without_a_demo_folder_no_example(tmp_path: Path) -> None:
    line = _error(tmp_path, None, ["status"])
    assert line.endswith(f"(./gemini_batches.toml); {SUGGEST}")


def test_a_config_given_with_config_is_named(tmp_path: Path) -> None:
    config = _config(tmp_path / "prod")
    for script, args in (
        (None, ["--config", str(config), "status"]),
        ("replay.py", ["--config", str(config)]),
    ):
        assert _error(tmp_path, script, args) == (
            f"Error: database not found: {tmp_path}/prod/data/gemini_batches.db: the [paths] "
            f"database of the config {config} (given with --config); {SUGGEST}"
        )


def test_a_config_from_the_environment_is_named(tmp_path: Path) -> None:
    config = _config(tmp_path / "prod")
    line = _error(tmp_path, None, ["status"], GEMINI_BATCHES_CONFIG=str(config))
    assert f"the [paths] database of the config {config} (from $GEMINI_BATCHES_CONFIG)" in line


def test_the_config_found_here_is_named_and_the_demos_suggested(tmp_path: Path) -> None:
    _config(tmp_path)  # ./gemini_batches.toml
    _config(tmp_path / "demo")
    line = _error(tmp_path, None, ["status"])
    assert line.endswith(
        "the [paths] database of the config gemini_batches.toml (found in the current folder); "
        f"{SUGGEST}, e.g. --config demo/gemini_batches.toml (the demo's)"
    )


def test_the_demos_own_config_is_not_suggested_again(tmp_path: Path) -> None:
    config = _config(tmp_path / "demo")
    line = _error(tmp_path, None, ["--config", "demo/gemini_batches.toml", "status"])
    assert line.endswith(f"(given with --config); {SUGGEST}"), line
    assert config.is_file()


def test_a_file_given_with_db_is_named_as_such(tmp_path: Path) -> None:
    line = _error(tmp_path, None, ["--db", "nowhere.db", "status"])
    assert line == "Error: database not found: nowhere.db (given with --db)"
