"""Every command has help text with an example, and the README documents it."""

from __future__ import annotations

import click

from commands.cli import cli
from tests.conftest import ROOT, run_cli


def test_python_m_commands_help_lists_every_command() -> None:
    r = run_cli("--help")
    assert r.code == 0
    for name in cli.commands:
        assert name in r.out


def test_every_command_has_help_with_an_example_and_is_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, command in cli.commands.items():
        assert isinstance(command, click.Command)
        assert command.help and len(command.help) > 20, name
        assert "Example" in command.help, f"{name} --help has no example"
        assert f"commands {name}" in readme, f"README does not document `commands {name}`"


def test_every_option_has_help_text() -> None:
    for name, command in cli.commands.items():
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"
