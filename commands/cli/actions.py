"""Operator actions, each an event in the log: reset-failures, clear-batch, nuke, and
rebuild-projections."""

from __future__ import annotations

import click

from commands.actor import operator_actor
from commands.cli.app import ListOptionsCommand, app, cli, operator_errors
from eventlog.errors import DatabaseNotFound, OperatorError


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
    from commands.actions.reset_failures import reset_failures as run
    from commands.actions.reset_failures import written
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
    n_written = written(matched)
    history = (
        f"; {n_written} of them already written (their counts are history: the reset clears "
        "them, and written pages are not sent again)"
        if n_written
        else ""
    )
    if dry_run:
        from commands.cli.render import table

        click.echo(
            table(
                ["record_key", "failures", "last_error_type", "status"],
                [
                    (m.record_key, f"{m.count}/{max_retries}", m.last_error_type, m.status)
                    for m in matched
                ],
            )
        )
        click.echo(
            f"dry run: would reset {len(matched)} record(s) matching {f.describe()}{history}"
        )
    else:
        click.echo(
            f"reset failure counts of {len(matched)} record(s) matching {f.describe()}{history}"
        )


@cli.command("clear-batch")
@click.argument("batch_id")
@click.option("--reason", default="", help="Why (recorded in the event).")
@click.option(
    "--cancel", is_flag=True, help="Also cancel the job on the service (needs the API key)."
)
@click.pass_context
@operator_errors
def clear_batch(ctx: click.Context, batch_id: str, reason: str, cancel: bool) -> None:
    """Give up on a stuck batch: free its records so the next run submits them again.

    Appends a BatchCleared event (who and why). With --cancel the job is first cancelled on the
    service, so it does not run on and bill; without it the job may still run, and if it later
    succeeds its results are adopted or discarded by the first-result rule. Also clears an open
    submission intent when given its display name.

    Example: python -m commands clear-batch batches/abc123 --reason "stuck PENDING for 3 days"
    """
    from commands.actions.clear_batch import batch_project, cancel_on_service
    from commands.actions.clear_batch import clear_batch as run

    with app(ctx).open() as store:
        if cancel:
            from commands.gemini.sdk import Gateway, api_key_from_env, project_key_from_env

            config = app(ctx).config
            projects = {p.name: p for p in config.projects()}
            name = batch_project(store, batch_id)  # None: not active, nothing is cancelled
            project = projects.get(name) if name is not None else next(iter(projects.values()))
            if project is None:
                raise OperatorError(
                    f"cannot cancel {batch_id}: its project {name} is not in the config "
                    "([[gemini.projects]]), so there is no key for it; nothing was cleared"
                )
            key = project_key_from_env(project) if config.gemini.projects else None
            port = Gateway.from_config(config, api_key=key or api_key_from_env(config))
            try:
                cancel_on_service(store, port, batch_id)
            finally:
                port.close()
        done = run(store, batch_id, reason=reason, actor=operator_actor("clear-batch"))
    click.echo(f"cleared {done.kind} {done.batch_id}: {done.records_freed} record(s) freed")
    if done.kind == "batch" and cancel:
        click.echo(f"cancelled {done.batch_id} on the service")
    elif done.kind == "batch":
        click.echo(
            "the job may still run on the service (and bill): if it finishes, its late results "
            "are adopted or discarded by the first-result rule; pass --cancel to cancel it there"
        )


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
    from commands.actions import nuke as core

    if dry_run == confirm:
        raise OperatorError("give exactly one of --dry-run or --confirm")
    if recreate_tables and not confirm:
        raise OperatorError("--recreate-tables only goes with --confirm")
    location = app(ctx).store_location
    db = app(ctx).db_path
    if isinstance(location, str):  # [database] url: the log is in PostgreSQL
        with app(ctx).open() as store:
            c = core.counts(store)
        if dry_run:
            click.echo(
                f"dry run: would copy {c.database} into a SQLite backup beside {db}, "
                "then drop its tables"
            )
            click.echo(f"  events  {c.events}")
            for name, n in c.tables.items():
                click.echo(f"  {name}  {n}")
            return
        backup = core.nuke_postgres(
            location,
            db,
            recreate_tables=recreate_tables,
            busy_timeout_ms=app(ctx).config.database.busy_timeout_ms,
        )
        click.echo(
            f"backed up the old log ({c.events} events) to {backup} "
            "(restore: migrate-to-postgres with --db on it)"
        )
        click.echo(
            f"started an empty log at {c.database}"
            + (" (tables created)" if recreate_tables else "")
        )
        return
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

    --verify folds the log into a scratch database beside it (removed afterwards; memory does
    not grow with the log) and exits non-zero naming the first row that differs in each table.

    Example: python -m commands rebuild-projections --verify
    """
    from projections import differences, rebuild

    with app(ctx).open() as store:
        if verify:
            found = differences(store)
            for diff in found[1:]:
                click.echo(f"also differs: {diff.describe()}", err=True)
            if found:
                more = f" (and {len(found) - 1} more, above)" if len(found) > 1 else ""
                raise OperatorError(f"projections differ from the log: {found[0].describe()}{more}")
            click.echo(f"projections match the log (through event {store.last_seq()})")
        else:
            last = rebuild(store)
            click.echo(f"rebuilt every projection from the log (through event {last})")


@cli.command("migrate-to-postgres")
@click.argument("url")
@click.pass_context
@operator_errors
def migrate_to_postgres(ctx: click.Context, url: str) -> None:
    """Copy this SQLite log into the PostgreSQL database URL, event for event, and prove the
    chain and every projection equal (resumable; the SQLite file is only read).

    Then set [database] url = URL in the config.

    Example: python -m commands migrate-to-postgres postgresql://gb@db.example/gemini_batches
    """
    from commands.actions import migrate as core
    from eventlog.postgres import is_url, redact

    if not is_url(url):
        raise OperatorError(f"not a postgresql:// URL: {redact(url)}")
    db = app(ctx).db_path
    if not db.exists():
        raise DatabaseNotFound(f"database not found: {db}")
    m = core.migrate(db, url, busy_timeout_ms=app(ctx).config.database.busy_timeout_ms)
    click.echo(f"copied {m.copied} events from {db} to {redact(url)}")
    click.echo(f"hash chain equal through event {m.last_seq} ({m.last_hash[:16]}...)")
    click.echo(f"projections equal: {m.tables} tables, {m.rows} rows")
