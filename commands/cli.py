"""The ``commands`` CLI: each command parses its flags, opens the log, calls one core function,
and prints. Operator mistakes become one-line errors with a non-zero exit; bugs keep their
traceback (logged at ERROR)."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import click
import msgspec

from commands.actor import operator_actor
from commands.logs import setup_logging
from eventlog.errors import OperatorError

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
        """The config, with ``--db`` (if given) as its database."""
        if self._config is None:
            from commands.config import load_config

            config = load_config(self._config_path)
            if self._db is not None:
                paths = config.paths.model_copy(update={"database": self._db})
                config = config.model_copy(update={"paths": paths})
            self._config = config
        return self._config

    @property
    def db_path(self) -> Path:
        return self._db if self._db is not None else self.config.paths.database

    def open(self, *, create: bool = False) -> EventStore:
        from projections import open_store

        return open_store(
            self.db_path, create=create, busy_timeout_ms=self.config.database.busy_timeout_ms
        )


def app(ctx: click.Context) -> AppContext:
    """The AppContext of this invocation (made with defaults when a command runs standalone)."""
    root = ctx.find_root()
    if not isinstance(root.obj, AppContext):
        root.obj = AppContext()
    return root.obj


def operator_errors(fn: F) -> F:
    """Turn :class:`OperatorError` into a one-line ``Error: ...`` and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
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


class ListOptionsCommand(click.Command):
    """A command whose ``multiple=True`` options also take space-separated values."""

    list_options: ClassVar[set[str]] = {"--states", "--schools"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, expand_list_options(args, self.list_options))


def echo_json(value: Any) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


# --- the group ---------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


# --- operator commands ---------------------------------------------------------------------------


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--no-scan", is_flag=True, help="Skip counting pending pages (no dataset walk).")
@click.pass_context
@operator_errors
def status(ctx: click.Context, as_json: bool, no_scan: bool) -> None:
    """Where the work stands: active batches and their age, in flight, pending, retrying,
    dead letters, the last run, and the spend.

    Example: python -m commands status --json
    """
    from commands.status import render, status

    with app(ctx).open() as store:
        result = status(store, app(ctx).config, scan=not no_scan)
    if as_json:
        echo_json(result)
    else:
        click.echo(render(result))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@operator_errors
def estimate(ctx: click.Context, as_json: bool) -> None:
    """What the pending pages should cost through the Batch API, before submitting them.

    Uses the mean tokens of past results in this log, or a stated assumption; prices come from
    [pricing] (with the batch discount). Retries are not included.

    Example: python -m commands estimate
    """
    from commands.cost import money
    from commands.estimate import estimate as run

    with app(ctx).open() as store:
        e = run(store, app(ctx).config)
    if as_json:
        echo_json(e)
        return
    click.echo(
        f"pending       {e.pages} pages"
        + (
            f" (+{e.waiting_for_previous_page} waiting for their previous page)"
            if e.waiting_for_previous_page
            else ""
        )
    )
    click.echo(
        f"per page      {e.prompt_tokens_per_page:,.0f} prompt + "
        f"{e.output_tokens_per_page:,.0f} output tokens, from {e.basis}"
    )
    if e.cost is None:
        click.echo(f"cost          unknown: no price for {e.model} in [pricing.models]")
        return
    click.echo(
        f"prices        {e.model}: {money(e.input_per_million or 0, e.currency)} / "
        f"{money(e.output_per_million or 0, e.currency)} per million prompt / output "
        f"tokens, {e.batch_discount:.0%} batch discount"
    )
    click.echo(
        f"estimate      {money(e.cost, e.currency)}"
        + (
            f" ({money(e.cost_with_waiting or 0, e.currency)} with the waiting pages)"
            if e.waiting_for_previous_page
            else ""
        )
    )


@cli.command("reset-failures", cls=ListOptionsCommand)
@click.option("--all", "all_", is_flag=True, help="Reset every failure count.")
@click.option("--states", multiple=True, help="Only these states (space-separated list).")
@click.option("--schools", multiple=True, help="Only these schools (space-separated list).")
@click.option("--year-start", type=int, help="Only years >= this.")
@click.option("--year-end", type=int, help="Only years <= this.")
@click.option("--dry-run", is_flag=True, help="List what would be reset; change nothing.")
@click.pass_context
@operator_errors
def reset_failures(
    ctx: click.Context,
    all_: bool,
    states: tuple[str, ...],
    schools: tuple[str, ...],
    year_start: int | None,
    year_end: int | None,
    dry_run: bool,
) -> None:
    """Reset failure counts so the scanner retries those pages (dead letters included).

    Appends a FailuresReset event recording the filter, the record keys and who ran it.

    \b
    Example: python -m commands reset-failures --states California --year-start 2020 --year-end 2023
    Example: python -m commands reset-failures --all --dry-run
    """
    from commands.reset_failures import reset_failures as run
    from eventlog.events import ResetFilter

    f = ResetFilter(
        all=all_,
        states=list(states),
        schools=list(schools),
        year_start=year_start,
        year_end=year_end,
    )
    max_retries = app(ctx).config.batching.max_retries
    with app(ctx).open() as store:
        matched = run(store, f, actor=operator_actor("reset-failures"), dry_run=dry_run)
    if dry_run:
        from commands.render import table

        click.echo(
            table(
                ["record_key", "failures", "last_error_type"],
                [(m.record_key, f"{m.count}/{max_retries}", m.last_error_type) for m in matched],
            )
        )
        click.echo(f"dry run: would reset {len(matched)} record(s) matching {f.describe()}")
    else:
        click.echo(f"reset failure counts of {len(matched)} record(s) matching {f.describe()}")


@cli.command("analyze-failures")
@click.option("--summary", is_flag=True, help="Totals and the top error types (the default).")
@click.option("--by-error-type", is_flag=True, help="Failures per error type.")
@click.option("--by-state", is_flag=True, help="Failures per state.")
@click.option("--by-school", is_flag=True, help="Failures per school.")
@click.option("--record-key", help="One record's status and every failure it had.")
@click.option(
    "--export-csv",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every failure log row to this CSV file.",
)
@click.pass_context
@operator_errors
def analyze_failures(
    ctx: click.Context,
    summary: bool,
    by_error_type: bool,
    by_state: bool,
    by_school: bool,
    record_key: str | None,
    export_csv: Path | None,
) -> None:
    """Why pages fail: totals, by error type, by state or school, one record, or a CSV export.

    \b
    Example: python -m commands analyze-failures --by-error-type
    Example: python -m commands analyze-failures --record-key California:LincolnHigh:2023:4
    """
    from commands import analyze_failures as af
    from commands.render import table

    chosen = summary or by_error_type or by_state or by_school or record_key or export_csv
    max_retries = app(ctx).config.batching.max_retries
    with app(ctx).open() as store, store.snapshot():
        conn = store.conn
        if summary or not chosen:
            s = af.summary(conn)
            click.echo(f"failures logged        {s.failures_logged}")
            click.echo(f"records that failed    {s.records_with_failures}")
            click.echo(f"records failing now    {s.records_failing_now}")
            click.echo(f"dead letters           {s.dead_letters}")
            click.echo(table(["error_type", "failures"], s.top_error_types))
        if by_error_type:
            click.echo(table(["error_type", "failures", "records"], af.by_error_type(conn)))
        if by_state:
            click.echo(table(["state", "failures", "records"], af.by_state(conn)))
        if by_school:
            click.echo(table(["state", "school", "failures", "records"], af.by_school(conn)))
        if record_key:
            r = af.record(conn, record_key)
            click.echo(f"{r.record_key}: {r.status}, {r.failure_count}/{max_retries} failures")
            click.echo(
                table(
                    ["seq", "failed_at", "batch_id", "error_type", "attempt", "message"],
                    [
                        (
                            f["seq"],
                            f["failed_at"],
                            f["batch_id"],
                            f["error_type"],
                            f"{f['attempt']}/{max_retries}",
                            f["message"],
                        )
                        for f in r.failures
                    ],
                )
            )
        if export_csv:
            n = af.export_csv(conn, export_csv)
            click.echo(f"wrote {n} failure row(s) to {export_csv}")


@cli.command("clear-batch")
@click.argument("batch_id")
@click.option("--reason", default="", help="Why (recorded in the event).")
@click.pass_context
@operator_errors
def clear_batch(ctx: click.Context, batch_id: str, reason: str) -> None:
    """Give up on a stuck batch: free its records so the next run submits them again.

    Appends a BatchCleared event (who and why). The job is not cancelled on the service; if it
    later succeeds, its results are still adopted. Also clears an open submission intent when
    given its display name.

    Example: python -m commands clear-batch batches/abc123 --reason "stuck PENDING for 3 days"
    """
    from commands.clear_batch import clear_batch as run

    with app(ctx).open() as store:
        done = run(store, batch_id, reason=reason, actor=operator_actor("clear-batch"))
    click.echo(f"cleared {done.kind} {done.batch_id}: {done.records_freed} record(s) freed")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print what would be removed; change nothing.")
@click.option("--confirm", is_flag=True, help="Back up the database, then start an empty log.")
@click.option(
    "--recreate-tables", is_flag=True, help="With --confirm: create the fresh tables at once."
)
@click.pass_context
@operator_errors
def nuke(ctx: click.Context, dry_run: bool, confirm: bool, recreate_tables: bool) -> None:
    """Start over with an empty log. The old database is first copied to a timestamped backup.

    \b
    Example: python -m commands nuke --dry-run
    Example: python -m commands nuke --confirm --recreate-tables
    """
    from commands import nuke as core

    if dry_run == confirm:
        raise OperatorError("give exactly one of --dry-run or --confirm")
    if recreate_tables and not confirm:
        raise OperatorError("--recreate-tables only goes with --confirm")
    db = app(ctx).db_path
    core.require_exists(db)
    if dry_run:
        with app(ctx).open() as store:
            c = core.counts(store)
        click.echo(f"dry run: would back up and empty {c.database}")
        click.echo(f"  events  {c.events}")
        for name, n in c.tables.items():
            click.echo(f"  {name}  {n}")
        return
    backup = core.nuke(db, recreate_tables=recreate_tables)
    click.echo(f"backed up the old log to {backup}")
    click.echo(f"started an empty log at {db}" + (" (tables created)" if recreate_tables else ""))


@cli.command("rebuild-projections")
@click.option(
    "--verify",
    is_flag=True,
    help="Rebuild into a scratch copy and compare with the live tables; change nothing.",
)
@click.pass_context
@operator_errors
def rebuild_projections(ctx: click.Context, verify: bool) -> None:
    """Rebuild every projection table from the log (or, with --verify, check them).

    --verify exits non-zero naming the first row that differs.

    Example: python -m commands rebuild-projections --verify
    """
    from projections import rebuild
    from projections import verify as run_verify

    with app(ctx).open() as store:
        if verify:
            diff = run_verify(store)
            if diff is not None:
                raise OperatorError(f"projections differ from the log: {diff.describe()}")
            click.echo(f"projections match the log (through event {store.last_seq()})")
        else:
            last = rebuild(store)
            click.echo(f"rebuilt every projection from the log (through event {last})")


# --- the worker -----------------------------------------------------------------------------------


@cli.command()
@click.option("--once", "mode", flag_value="once", default=True, help="One cycle (the default).")
@click.option("--loop", "mode", flag_value="loop", help="Repeat every poll_interval_seconds.")
@click.option(
    "--until-idle",
    "mode",
    flag_value="idle",
    help="Repeat until nothing is in flight or left to submit.",
)
@click.option(
    "--wait",
    "wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another run's lock before giving up.",
)
@click.pass_context
@operator_errors
def run(ctx: click.Context, mode: str, wait: float) -> None:
    """Run the pipeline: poll active batches, scan the dataset, submit new batches, report.

    Reads the API key from the variable named by [gemini] api_key_env (default GEMINI_API_KEY).
    Only one run per database at a time; a second one exits with a message (or --wait).

    \b
    Example: python -m commands run --once
    Example: python -m commands --config prod.toml run --loop
    """
    from commands.progress import for_stderr
    from commands.run import run as run_pipeline

    result = run_pipeline(
        app(ctx).config,
        loop=mode == "loop",
        until_idle=mode == "idle",
        wait_for_lock=wait,
        progress=for_stderr(),
    )
    s = result.last
    click.echo(
        f"run {result.run_id}: {result.outcome} after {result.cycles} cycle(s); "
        f"{s.active} batch(es) active, {s.submitted} submitted in the last cycle"
    )
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")
    if result.outcome == "interrupted":
        ctx.exit(130)  # the shell's convention for Ctrl+C


@cli.command()
@click.option(
    "--dir",
    "folder",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("demo"),
    show_default=True,
    help="Folder for the synthetic dataset, config, database and outputs.",
)
@click.pass_context
@operator_errors
def demo(ctx: click.Context, folder: Path) -> None:
    """A synthetic dataset through the built-in Gemini emulator, with faults, end to end.

    Writes PNG pages and a config into --dir, starts the emulator, runs cycles until every page
    is written or dead-lettered, then prints the status and the report's path.

    Example: python -m commands demo --dir /tmp/demo
    """
    import time

    from commands import demo as d
    from commands.config import load_config
    from commands.run import run as run_pipeline
    from commands.status import render, status
    from gemini_emulator import Emulator

    started = time.monotonic()
    d.prepare(folder)
    key = d.demo_key()
    with Emulator(d.POLICY, api_key=key) as emulator:
        config = load_config(d.write_config(folder, emulator.url))
        click.echo(
            f"demo: {d.page_count()} pages in {config.paths.input_root}, emulator at {emulator.url}"
        )

        def progress(n: int, s: Any) -> None:
            click.echo(
                f"  cycle {n}: {s.active} active, {s.submitted} submitted, "
                f"{s.scan.get('written', 0)}/{s.scan.get('pages', 0)} written, "
                f"{s.scan.get('dead_letters', 0)} dead-lettered"
            )

        result = run_pipeline(
            config, until_idle=True, max_cycles=200, api_key=key, on_cycle=progress
        )
    from projections import open_store

    with open_store(config.paths.database) as store:
        click.echo("")
        click.echo(render(status(store, config)))
    click.echo("")
    click.echo(
        f"finished in {time.monotonic() - started:.1f}s; outputs in {config.paths.output_root}"
    )
    click.echo(f"report: {result.report_path}")
    click.echo(
        f"explore: python -m commands --config {folder / 'gemini_batches.toml'} "
        "analyze-failures --summary"
    )


@cli.command()
@click.option("--run", "run_id", help="The run id (see `status`); default: the last run.")
@click.option("--last", is_flag=True, help="The last run (the default).")
@click.pass_context
@operator_errors
def report(ctx: click.Context, run_id: str | None, last: bool) -> None:
    """Print the Markdown report of a run, computed again from the log.

    Example: python -m commands report --last
    """
    from commands import report as core

    if run_id and last:
        raise OperatorError("give --run ID or --last, not both")
    with app(ctx).open() as store:
        rid = run_id or core.last_run_id(store)
        click.echo(core.render(core.build(store, rid, app(ctx).config)), nl=False)


# --- Prefect (optional extra) -----------------------------------------------------------------


def _prefect_flow() -> Any:
    try:
        from commands import prefect_flow
    except ImportError as e:
        raise OperatorError(
            f"Prefect is not installed ({e}): run `uv sync --extra prefect` first"
        ) from None
    return prefect_flow


@cli.command("prefect-run")
@click.pass_context
@operator_errors
def prefect_run(ctx: click.Context) -> None:
    """Run one cycle as a Prefect flow (report and counts published as artifacts).

    Needs the optional extra: uv sync --extra prefect.

    Example: python -m commands --config prod.toml prefect-run
    """
    flow = _prefect_flow()
    source = app(ctx).config.source
    counts = flow.gemini_batches(config_path=str(source) if source else None)
    click.echo(", ".join(f"{k} {v}" for k, v in counts.items()))


@cli.command("prefect-serve")
@click.option(
    "--interval",
    type=float,
    help="Seconds between flow runs (default: [batching] poll_interval_seconds).",
)
@click.option("--cron", help="A cron schedule instead of an interval, e.g. '*/10 * * * *'.")
@click.pass_context
@operator_errors
def prefect_serve(ctx: click.Context, interval: float | None, cron: str | None) -> None:
    """Serve the flow on a schedule; runs appear in the Prefect UI with their artifacts.

    Needs the optional extra: uv sync --extra prefect.

    Example: python -m commands --config prod.toml prefect-serve --cron "*/10 * * * *"
    """
    if interval is not None and cron is not None:
        raise OperatorError("give --interval or --cron, not both")
    flow = _prefect_flow()
    source = app(ctx).config.source
    flow.serve(str(source) if source else None, interval, cron)


# --- entry points --------------------------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    command: click.Command | None = None,
    prog_name: str | None = None,
) -> None:
    """Run ``command`` (default: the whole CLI) and exit.

    Every operator mistake, usage errors included, is one ``Error: ...`` line on stderr: 1 for an
    operator error, 2 for a usage error. A bug is logged at ERROR with its traceback: exit 70.
    """
    if command is not None and command is not cli:
        setup_logging()
    try:
        rc = (command or cli).main(
            args=list(argv) if argv is not None else None,
            prog_name=prog_name,
            standalone_mode=False,
        )
    except click.UsageError as e:
        hint = f" (see: {e.ctx.command_path} --help)" if e.ctx is not None else ""
        click.echo(f"Error: {e.format_message()}{hint}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(EXIT_OPERATOR)
    except Exception:
        if not logging.getLogger().handlers:
            setup_logging()
        log.exception("internal error (a bug): please report it with the traceback above")
        sys.exit(EXIT_BUG)
    sys.exit(rc if isinstance(rc, int) else 0)
