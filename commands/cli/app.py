"""The ``commands`` CLI: each command parses its flags, opens the log, calls one core function,
and prints. Operator mistakes become one-line errors with a non-zero exit; bugs keep their
traceback (logged at ERROR)."""

from __future__ import annotations

import copy
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar

import click
import msgspec

from commands.cli.logs import setup_logging
from commands.installation import command_prefix, missing_extra, suggest
from eventlog.errors import DatabaseNotFound, OperatorError

if TYPE_CHECKING:  # imported lazily: pydantic and the log are not needed for --help
    from commands.config import Config
    from eventlog.store import EventStore

log = logging.getLogger("commands")
F = TypeVar("F", bound=Callable[..., Any])

#: Exit status for an operator error (bad input, nothing matched, a database that cannot be used).
EXIT_OPERATOR = 1
#: Exit status for a bug (an unexpected exception, logged with its traceback).
EXIT_BUG = 70


class AppContext:
    """What every command needs: the config (read lazily, so ``--help`` never needs one)."""

    def __init__(self, config_path: Path | None = None, db: Path | None = None) -> None:
        self._config_path = config_path
        self._db = db
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The config, with ``--db`` (if given) as its database: a SQLite file, so it also
        clears ``[database] url`` (``log_location`` is then that file, for every command)."""
        if self._config is None:
            from commands.config import load_config

            config = load_config(self._config_path)
            if self._db is not None:
                paths = config.paths.model_copy(update={"database": self._db})
                database = config.database.model_copy(update={"url": ""})
                config = config.model_copy(update={"paths": paths, "database": database})
            self._config = config
        return self._config

    @property
    def db_path(self) -> Path:
        return self._db if self._db is not None else self.config.paths.database

    @property
    def store_location(self) -> Path | str:
        """``--db`` if given, else the config's log (its ``[database] url`` or SQLite file)."""
        return self._db if self._db is not None else self.config.log_location

    def database_not_found(self, error: DatabaseNotFound) -> str:
        """``error``'s message, saying where its path came from (``--db``, the config read and
        how it was chosen, or the default as none was) and suggesting ``--config``: the demo's
        config too when ``./demo`` has one and it was not the one read."""
        from commands.config import describe_config
        from commands.integrations.demo import CONFIG_NAME, DEFAULT_DIR

        if self._db is not None:
            return f"{error} (given with --db)"
        path, how = describe_config(self._config_path)
        where = (
            f"the [paths] database of the config {path} ({how})"
            if path
            else f"the default, as {how}"
        )
        demo = DEFAULT_DIR / CONFIG_NAME
        read_it = path is not None and path.resolve() == demo.resolve()
        example = f", e.g. --config {demo} (the demo's)" if demo.is_file() and not read_it else ""
        suggestion = f"give the config that names your database with --config <path>{example}"
        return f"{error}: {where}; {suggestion}"

    def open(self, *, create: bool = False) -> EventStore:
        from projections import open_store

        return open_store(
            self.store_location,
            create=create,
            busy_timeout_ms=self.config.database.busy_timeout_ms,
            scratch=self.config.paths.database,
        )


def app(ctx: click.Context) -> AppContext:
    """The AppContext of this invocation (made with defaults when a command runs standalone)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj


def operator_errors(fn: F) -> F:
    """Turn :class:`OperatorError` into a one-line ``Error: ...`` and a non-zero exit; a
    database not found says where its path came from (:meth:`AppContext.database_not_found`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DatabaseNotFound as e:
            ctx = click.get_current_context(silent=True)
            message = app(ctx).database_not_found(e) if ctx is not None else str(e)
            raise click.ClickException(message) from None
        except OperatorError as e:
            raise click.ClickException(str(e)) from None

    return wrapper  # type: ignore[return-value]


def expand_list_options(args: Sequence[str], names: set[str]) -> list[str]:
    """Let ``--states A B --schools C`` (the seed's syntax) mean ``--states A --states B ...``."""
    out: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        out.append(arg)
        if arg == "--":
            out.extend(args[i + 1 :])
            break
        if arg in names and i + 1 < len(args):
            out.append(args[i + 1])
            i += 2
            while i < len(args) and not args[i].startswith("-"):
                out.extend((arg, args[i]))
                i += 1
            continue
        i += 1
    return out


class SuggestingCommand(click.Command):
    """A command whose help text types each ``python -m commands ...`` it shows the way this
    installation needs (:func:`commands.installation.suggest`), so its examples work pasted."""

    def format_help_text(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        text = inspect.cleandoc(self.help or "").partition("\f")[0]
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(suggest(text))


class ListOptionsCommand(SuggestingCommand):
    """A command whose ``multiple=True`` options also take space-separated values."""

    list_options: ClassVar[set[str]] = {"--states", "--schools"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_list_options(args, self.list_options))


def echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


#: The group options a command also takes after its name (``status --config prod.toml``).
ANYWHERE_OPTIONS = ("--config", "--db")


def hoist_options(args: Sequence[str], takes_value: set[str]) -> list[str]:
    """Move ``--config X`` and ``--db X`` (or ``--db=X``) found after the command's name to just
    before it, after any given there, so the one after the name wins. ``takes_value``: the group
    options that take a value (to find the command's name). Nothing after ``--`` moves."""
    args = list(args)
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        i += 2 if args[i] in takes_value else 1
    if i >= len(args) or args[i] == "--":
        return args
    moved: list[str] = []
    kept: list[str] = []
    j = i + 1
    while j < len(args):
        arg = args[j]
        if arg == "--":
            kept += args[j:]
            break
        if arg in ANYWHERE_OPTIONS and j + 1 < len(args):
            moved += args[j : j + 2]
            j += 2
            continue
        if arg.startswith(tuple(f"{name}=" for name in ANYWHERE_OPTIONS)):
            moved.append(arg)
        else:
            kept.append(arg)
        j += 1
    return [*args[:i], *moved, args[i], *kept]


class OptionsAnywhereGroup(SuggestingCommand, click.Group):
    """A group whose ``--config`` and ``--db`` may also come after the command's name; its
    commands' help, and its own, suggest commands typed as :class:`SuggestingCommand` does."""

    command_class = SuggestingCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag and not p.count
            for name in p.opts
        }
        return super().parse_args(ctx, hoist_options(args, takes_value))


# --- the group ---------------------------------------------------------------------------------


@click.group(cls=OptionsAnywhereGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config (default: $GEMINI_BATCHES_CONFIG, else ./gemini_batches.toml, "
    "else defaults).",
)
@click.option(
    "--db",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Database file; overrides [paths] database (default data/gemini_batches.db).",
)
@click.option("-v", "--verbose", count=True, help="More logging (-v: DEBUG).")
@click.option("-q", "--quiet", count=True, help="Less logging (WARNING and above).")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per log line, with run, batch and record fields.",
)
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: Path | None,
    db: Path | None,
    verbose: int,
    quiet: int,
    log_format: str,
) -> None:
    """Run page images through the Gemini Batch API, with every transition in an event log.

    \b
    Start with:   python -m commands demo
    Then:         python -m commands status
    """
    setup_logging(verbose - quiet, log_format)
    ctx.obj = AppContext(config_path, db)


# --- entry points --------------------------------------------------------------------------------


def standalone(name: str) -> click.Command:
    """The group's command ``name`` as a program of its own (the seed runbook's ``scripts/``):
    its flags, plus the group's ``--config`` and ``--db``, which may come anywhere among them."""
    command = cli.commands[name]
    callback = command.callback
    assert callback is not None
    shared = [p for p in cli.params if p.name in ("config_path", "db")]

    @functools.wraps(callback)
    def run(*args: Any, config_path: Path | None, db: Path | None, **kwargs: Any) -> Any:
        click.get_current_context().obj = AppContext(config_path, db)
        return callback(*args, **kwargs)

    own = copy.copy(command)
    own.params = [*command.params, *shared]
    own.callback = run
    return own


def main(
    argv: Sequence[str] | None = None,
    command: click.Command | None = None,
    prog_name: str | None = None,
) -> None:
    """Run ``command`` (default: the whole CLI) and exit.

    Every operator mistake, usage errors included, is one ``Error: ...`` line on stderr: 1 for an
    operator error, 2 for a usage error; an optional extra not installed is an operator error,
    naming the command that installs it. A bug is logged at ERROR with its traceback: exit 70.
    A command the line suggests is typed the way this installation needs, and so is the whole
    CLI's name in its usage lines (``prog_name`` left out: :func:`command_prefix`, whether it
    was started as ``python -m commands`` or as the console script).
    """
    if command is not None and command is not cli:
        setup_logging()
    elif prog_name is None:
        prog_name = command_prefix()
    try:
        rc = (command or cli).main(
            args=list(argv) if argv is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.UsageError as e:
        hint = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        click.echo(f"Error: {suggest(e.format_message())}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {suggest(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_OPERATOR)
    except ImportError as e:
        line = missing_extra(e)
        if line is None:
            _bug()
        click.echo(f"Error: {line}", err=True)
        sys.exit(EXIT_OPERATOR)
    except Exception:
        _bug()
    sys.exit(rc if isinstance(rc, int) else 0)


def _bug() -> NoReturn:
    """Log the exception being handled at ERROR, with its traceback, and exit 70."""
    if not logging.getLogger().handlers:
        setup_logging()
    log.exception("internal error (a bug): please report it with the traceback below")
    sys.exit(EXIT_BUG)
