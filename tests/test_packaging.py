"""What an installation of the package puts on a machine: one console script, ``gemini-batches``.

A second script named ``commands`` (the package's name, and a word every shell user types) would
shadow or be shadowed by anything else called that on the PATH.
"""

from __future__ import annotations

import tomllib
from importlib import metadata

from tests.conftest import ROOT

SCRIPTS = {"gemini-batches": "commands.cli:main"}


def test_gemini_batches_is_the_only_console_script_in_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == SCRIPTS
    assert "gui-scripts" not in project and "entry-points" not in project


def test_the_installed_distribution_declares_only_gemini_batches() -> None:
    """The entry points of the build `uv sync` installed (its ``entry_points.txt``)."""
    installed = metadata.distribution("gemini-batches").entry_points
    assert {e.name: e.value for e in installed if e.group == "console_scripts"} == SCRIPTS
    assert {e.group for e in installed} == {"console_scripts"}
