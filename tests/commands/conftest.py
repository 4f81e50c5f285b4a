from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from commands.cli import cli


def invoke(db: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run the CLI in-process against ``db``."""
    return CliRunner().invoke(cli, ["--db", str(db), *args], env=env)
