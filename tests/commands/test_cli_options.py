"""Where people type options: ``--config`` and ``--db`` after the command's name too, for every
command and for ``replay.py``; the one after the name wins. And flags that contradict each other
or are out of range are refused with one line before anything runs."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from commands.cli import cli
from commands.cli.app import hoist_options
from tests.conftest import file_digest, run_cli

TAKES_VALUE = {"--config", "--db", "--log-format"}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["status"], ["status"]),
        (["status", "--config", "p.toml"], ["--config", "p.toml", "status"]),
        (["status", "--db=x.db", "--json"], ["--db=x.db", "status", "--json"]),
        (
            ["--db", "a.db", "-v", "status", "--db", "b.db"],
            ["--db", "a.db", "-v", "--db", "b.db", "status"],
        ),
        (
            ["--log-format", "json", "reset-failures", "--states", "A", "B", "--db", "x"],
            ["--log-format", "json", "--db", "x", "reset-failures", "--states", "A", "B"],
        ),
        (["status", "--", "--db", "x"], ["status", "--", "--db", "x"]),  # after --: an argument
        (["status", "--db"], ["status", "--db"]),  # no value: click says so
        (["--help"], ["--help"]),
        ([], []),
    ],
)
def test_hoist_options(args: list[str], expected: list[str]) -> None:
    assert hoist_options(args, TAKES_VALUE) == expected


@pytest.mark.parametrize("name", sorted(cli.commands))
@pytest.mark.parametrize("option", ["--config", "--db"])
def test_every_command_takes_config_and_db_after_its_name(name: str, option: str) -> None:
    key = "config_path" if option == "--config" else "db"
    before = cli.make_context("commands", [option, "first.x", name], resilient_parsing=True)
    after = cli.make_context("commands", [name, option, "second.x"], resilient_parsing=True)
    both = cli.make_context(
        "commands", [option, "first.x", name, option, "second.x"], resilient_parsing=True
    )
    assert before.params[key] == Path("first.x")
    assert after.params[key] == Path("second.x")
    assert both.params[key] == Path("second.x")  # the one after the name wins
    assert isinstance(cli.commands[name], click.Command)


def test_status_config_after_the_command_as_the_issue_typed_it(
    tmp_path: Path, populated: Path
) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\ninput_root = "{tmp_path / "in"}"\n')
    first = run_cli("--config", str(config), "status", "--no-scan")
    second = run_cli("status", "--no-scan", "--config", str(config))
    assert first.code == second.code == 0, second.err
    assert first.out == second.out and "No such option" not in second.err


@pytest.mark.parametrize(
    "args",
    [
        ["--db", "{db}", "analyze-failures", "--summary"],
        ["analyze-failures", "--summary", "--db", "{db}"],
        ["analyze-failures", "--db={db}", "--summary"],
        ["--db", "{other}", "analyze-failures", "--summary", "--db", "{db}"],
    ],
)
def test_db_in_either_position_gives_the_same_result(
    populated: Path, tmp_path: Path, args: list[str]
) -> None:
    reference = run_cli("--db", str(populated), "analyze-failures", "--summary")
    r = run_cli(*(a.format(db=populated, other=tmp_path / "none.db") for a in args))
    assert (r.code, r.out, r.err) == (reference.code, reference.out, reference.err)
    assert r.code == 0 and not (tmp_path / "none.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--db", "{db}", "--verify-chain"],
        ["--verify-chain", "--db", "{db}"],
        ["--verify-chain", "--config", "{config}"],
        ["--config", "{config}", "--verify-chain"],
    ],
)
def test_replay_takes_config_and_db_anywhere(
    populated: Path, tmp_path: Path, args: list[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\n')
    r = run_cli(*(a.format(db=populated, config=config) for a in args), script="replay.py")
    assert r.code == 0 and r.out.startswith("hash chain intact"), r.err


STARTUP = [
    (["run", "--wait", "-5"], "Invalid value for '--wait': -5.0 is not in the range x>=0"),
    (["run", "--wait", "inf"], "Invalid value for '--wait': inf is not a finite number"),
    (["run", "--wait", "nan"], "Invalid value for '--wait'"),
    (
        ["run", "--once", "--loop"],
        "give one of --once, --loop, --until-idle, not --once and --loop",
    ),
    (["run", "--loop", "--until-idle"], "not --loop and --until-idle"),
    (["run", "--once", "--loop", "--until-idle"], "not --once and --loop and --until-idle"),
    (["prefect-serve", "--interval", "-1"], "Invalid value for '--interval': -1.0 is not in the"),
    (["prefect-serve", "--interval", "0"], "Invalid value for '--interval': 0.0 is not in the"),
    (["prefect-serve", "--interval", "inf"], "inf is not a finite number of seconds"),
    (["prefect-serve", "--interval", "5", "--cron", "* * * * *"], "give --interval or --cron"),
    (["prefect-serve", "--cron", " "], "--cron is empty"),
]


@pytest.mark.parametrize(("args", "message"), STARTUP)
def test_contradictory_or_out_of_range_flags_are_one_line_and_change_nothing(
    populated: Path, args: list[str], message: str
) -> None:
    before = file_digest(populated)
    r = run_cli("--db", str(populated), *args, env={"GEMINI_API_KEY": "k"})
    assert r.code in (1, 2)
    assert r.err.startswith("Error: ") and r.err.count("\n") == 1, r.err
    assert message in r.err and "Traceback" not in r.err
    assert file_digest(populated) == before


def test_db_points_every_command_at_that_sqlite_file_over_a_database_url(
    tmp_path: Path, populated: Path
) -> None:
    """The README: ``--db FILE`` points one command at a SQLite file, also when the config's
    ``[database] url`` names PostgreSQL (``run`` opens ``config.log_location``)."""
    from commands.cli.app import AppContext

    config = tmp_path / "pg.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    ctx = AppContext(config, populated)
    assert ctx.config.log_location == populated == ctx.store_location
    assert ctx.config.database.url == ""
    assert AppContext(config).config.log_location == "postgresql://nobody@127.0.0.1:1/none"
    r = run_cli("--config", str(config), "--db", str(populated), "status", "--no-scan")
    assert r.code == 0, r.err
