"""The worker and its integrations: run, demo, prefect-run, prefect-serve."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from commands.cli.app import app, cli, operator_errors
from eventlog.errors import OperatorError


def _seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A finite number of seconds (``inf`` and ``nan`` pass a FloatRange)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number of seconds", ctx, param)
    return value


#: ``run --until-idle`` ended with pages held back (EX_TEMPFAIL: try again later).
EXIT_HELD_BACK = 75

_MODES = {"once": "--once", "loop": "--loop", "until_idle": "--until-idle"}


@cli.command()
@click.option("--once", is_flag=True, help="One cycle (the default).")
@click.option("--loop", is_flag=True, help="Repeat every poll_interval_seconds.")
@click.option(
    "--until-idle", is_flag=True, help="Repeat until nothing is in flight or left to submit."
)
@click.option(
    "--wait",
    "wait",
    type=click.FloatRange(min=0),
    callback=_seconds,
    default=0.0,
    show_default=True,
    help="Seconds to wait for another run's lock before giving up.",
)
@click.option(
    "--worker-id",
    help='With [workers] mode = "shared": this worker\'s name in the leases (default host:pid).',
)
@click.pass_context
@operator_errors
def run(
    ctx: click.Context,
    once: bool,
    loop: bool,
    until_idle: bool,
    wait: float,
    worker_id: str | None,
) -> None:
    """Run the pipeline: poll active batches, scan the dataset, submit new batches, report.

    Reads the API key from the variable named by [gemini] api_key_env (default GEMINI_API_KEY).
    Only one run per database at a time; a second one exits with a message (or --wait).
    --until-idle exits 75 when it ends with pages held back by a hold that persists (the service
    keeps answering 429 or leaving creates unanswered), or after 10 cycles in which the service
    answered nothing about batches (an outage): run again later.
    With [workers] mode = "shared", several runs share the database, each on the partitions
    it holds a lease on.

    \b
    Example: python -m commands run --once
    Example: python -m commands --config prod.toml run --loop
    Example: python -m commands --config shared.toml run --loop --worker-id host-a
    """
    from commands.cli.progress import for_stderr
    from commands.worker.session import BLIND_CYCLES
    from commands.worker.session import run as run_pipeline

    given = [flag for name, flag in _MODES.items() if ctx.params[name]]
    if len(given) > 1:
        raise click.UsageError(
            f"give one of --once, --loop, --until-idle, not {' and '.join(given)}"
        )
    result = run_pipeline(
        app(ctx).config,
        loop=loop,
        until_idle=until_idle,
        wait_for_lock=wait,
        progress=for_stderr(),
        worker_id=worker_id,
    )
    s = result.last
    click.echo(
        f"run {result.run_id}: {result.outcome} after {result.cycles} cycle(s); "
        f"{s.active} batch(es) active, {s.submitted} submitted in the last cycle"
    )
    if result.report_path is not None:
        click.echo(f"report: {result.report_path}")
    if until_idle and s.stalled and result.outcome == "ok":
        click.echo(f"{s.held_back} page(s) held back: {s.hold}; run again later")
        ctx.exit(EXIT_HELD_BACK)
    if until_idle and s.blind and not s.idle and result.outcome == "ok":
        click.echo(
            f"the service answered nothing about batches for {BLIND_CYCLES} cycles "
            f"(last: {s.last_error}); {s.active} batch(es) and {s.open_intents} open "
            "submission(s) wait in the log: run again later"
        )
        ctx.exit(EXIT_HELD_BACK)
    if result.outcome == "interrupted":  # the shell's convention: 128 + the signal's number
        ctx.exit(143 if result.signal == "SIGTERM" else 130)


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
    from commands.cli.render import status_text
    from commands.integrations import demo as d

    def started(config: Any, url: str) -> None:
        click.echo(f"demo: {d.page_count()} pages in {config.paths.input_root}, emulator at {url}")

    def progress(n: int, s: Any) -> None:
        click.echo(
            f"  cycle {n}: {s.active} active, {s.submitted} submitted, "
            f"{s.scan.get('written', 0)}/{s.scan.get('pages', 0)} written, "
            f"{s.scan.get('dead_letters', 0)} dead-lettered"
        )

    done = d.run_demo(folder, on_start=started, on_cycle=progress)
    click.echo("")
    click.echo(status_text(done.status))
    click.echo("")
    click.echo(f"finished in {done.seconds:.1f}s; outputs in {done.config.paths.output_root}")
    click.echo(f"report: {done.report_path}")
    click.echo(f"explore: {d.explore_command(done.config_path)}")
    click.echo(f"dashboard: {d.dashboard_command(done.config_path)}")


def _prefect_flow() -> Any:
    """The flow's module: importing it imports Prefect (a missing extra is one line: ``main``)."""
    from commands.integrations import prefect_flow

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
    type=click.FloatRange(min=0, min_open=True),
    callback=_seconds,
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
    if cron is not None and not cron.strip():
        raise OperatorError("--cron is empty: give a schedule, e.g. '*/10 * * * *'")
    flow = _prefect_flow()
    source = app(ctx).config.source
    flow.serve(str(source) if source else None, interval, cron)
