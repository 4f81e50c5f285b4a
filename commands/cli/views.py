"""The read-only commands: status, estimate, analyze-failures, report."""

from __future__ import annotations

from pathlib import Path

import click

from commands.cli.app import app, cli, echo_json, operator_errors
from eventlog.errors import OperatorError


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--scan/--no-scan",
    default=False,
    help="Walk the input tree now to count the pages waiting to be submitted (slow on millions "
    "of pages). Without it, the pages known are the worker's last scan counts from the log, "
    "with their age.",
)
@click.option(
    "--stuck-after",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    metavar="MINUTES",
    help="Mark an open intent, a quota hold or a quiet log older than this (batches: 24 h).",
)
@click.pass_context
@operator_errors
def status(ctx: click.Context, as_json: bool, scan: bool, stuck_after: float) -> None:
    """Where the work stands: progress (pages known, written, to go, the recent rate and the
    expected finish), what may be stuck (the oldest batch, holds, intents, workers, the last
    event), retrying, dead letters, the last run, the spend and the cost to go.

    Example: python -m commands status --json
    """
    from commands.cli.render import status_text
    from commands.views.status import status

    with app(ctx).open() as store:
        result = status(store, app(ctx).config, scan=scan, stuck_after=stuck_after)
    if as_json:
        echo_json(result)
    else:
        click.echo(status_text(result))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@operator_errors
def estimate(ctx: click.Context, as_json: bool) -> None:
    """What the pending pages should cost through the Batch API, before submitting them.

    Uses the mean tokens of past results in this log, or a stated assumption; prices come from
    [pricing] (with the batch discount). Retries are not included. Before the first run (no
    database yet) it prices the whole dataset, and creates nothing.

    Example: python -m commands estimate
    """
    from commands.cli.render import estimate_text
    from commands.views.estimate import estimate as run
    from eventlog.errors import DatabaseNotFound

    try:
        store = app(ctx).open()
    except DatabaseNotFound:  # before the first run: from the dataset alone
        e = run(None, app(ctx).config)
    else:
        with store:
            e = run(store, app(ctx).config)
    if as_json:
        echo_json(e)
    else:
        click.echo(estimate_text(e))


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
    from commands.cli.render import table
    from commands.views import analyze_failures as af

    chosen = summary or by_error_type or by_state or by_school or record_key or export_csv
    max_retries = app(ctx).config.batching.max_retries
    with app(ctx).open() as store, store.snapshot():
        if summary or not chosen:
            s = af.summary(store)
            click.echo(f"failures logged        {s.failures_logged}")
            click.echo(f"records that failed    {s.records_with_failures}")
            click.echo(f"records failing now    {s.records_failing_now}")
            click.echo(f"dead letters           {s.dead_letters}")
            click.echo(table(["error_type", "failures"], s.top_error_types))
        if by_error_type:
            click.echo(table(["error_type", "failures", "records"], af.by_error_type(store)))
        if by_state:
            click.echo(table(["state", "failures", "records"], af.by_state(store)))
        if by_school:
            click.echo(table(["state", "school", "failures", "records"], af.by_school(store)))
        if record_key:
            r = af.record(store, record_key)
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
            n = af.export_csv(store, export_csv)
            click.echo(f"wrote {n} failure row(s) to {export_csv}")


@cli.command()
@click.option("--run", "run_id", help="The run id (see `status`); default: the last run.")
@click.option("--last", is_flag=True, help="The last run (the default).")
@click.pass_context
@operator_errors
def report(ctx: click.Context, run_id: str | None, last: bool) -> None:
    """Print the Markdown report of a run, computed again from the log.

    Example: python -m commands report --last
    """
    from commands.views import report as core

    if run_id and last:
        raise OperatorError("give --run ID or --last, not both")
    with app(ctx).open() as store:
        rid = run_id or core.last_run_id(store)
        click.echo(core.render(core.build(store, rid, app(ctx).config)), nl=False)
