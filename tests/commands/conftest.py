from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from commands.cli import cli
from projections import open_store
from tests.scenario import scenario


@pytest.fixture
def populated(db_path: Path) -> Path:
    """A database holding the whole scripted scenario (closed, so its file is settled)."""
    s = open_store(db_path, create=True)
    for actor, group in scenario():
        s.append(group, actor=actor)
    s.close()
    return db_path


def invoke(db: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process against ``db``."""
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env)
