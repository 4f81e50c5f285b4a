"""Audit the log: the projections as they stood at any point, one record's history, the chain.

A thin shell over :mod:`projections.replay`; read-only, never takes the write lock.

\b
Examples:
  python replay.py --until 1200 --show active-batches
  python replay.py --until 2026-11-28T10:00:00Z --show failures --json
  python replay.py --record California:LincolnHigh:2023:4
  python replay.py --verify-chain
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from commands.cli.app import app, echo_json, main, operator_errors
from commands.cli.render import clip, fitted_table, terminal_width
from eventlog.errors import OperatorError
from projections.replay import VIEWS, record_history, replay_for_views, resolve_until, view


@click.command(help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--until", help="A sequence number or an ISO 8601 time (default: the end).")
@click.option(
    "--show",
    "shows",
    multiple=True,
    type=click.Choice(list(VIEWS)),
    help="Which projection to print (repeatable; default: all four).",
)
@click.option("--record", "record_key", help="One record's full history up to --until.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--verify-chain", is_flag=True, help="Check the hash chain; name the first bad row.")
@click.option(
    "--verify-snapshots",
    is_flag=True,
    help="Refold the log and check every replay snapshot; name the first bad one.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML config (for the database path).",
)
@click.option("--db", type=click.Path(path_type=Path, dir_okay=False), help="Database file.")
@click.pass_context
@operator_errors
def replay_cli(
    ctx: click.Context,
    until: str | None,
    shows: tuple[str, ...],
    record_key: str | None,
    as_json: bool,
    verify_chain: bool,
    verify_snapshots: bool,
    config_path: Path | None,
    db: Path | None,
) -> None:
    from commands.cli.app import AppContext
    from projections import open_store

    ctx.obj = AppContext(config_path, db)
    with open_store(app(ctx).store_location, write=False) as store:
        if verify_chain:
            broken = store.verify_chain()
            if broken is not None:
                raise OperatorError(f"hash chain broken at event {broken.seq}: {broken.reason}")
            click.echo(f"hash chain intact through event {store.last_seq()}")
        if verify_snapshots:
            from projections import snapshots

            bad = snapshots.verify(store)
            if bad is not None:
                raise OperatorError(f"replay snapshot at event {bad.seq} is bad: {bad.reason}")
            click.echo("every replay snapshot matches a fold of the log")
        if (verify_chain or verify_snapshots) and until is None and not shows and not record_key:
            return
        seq = resolve_until(store, until)
        if record_key:
            history = record_history(store, record_key, seq)
            if not history:
                raise OperatorError(f"the log names no record {record_key!r} up to event {seq}")
            if as_json:
                echo_json({"until_seq": seq, "record_key": record_key, "history": history})
            else:
                width = terminal_width()
                click.echo(clip(f"{record_key} up to event {seq}:", width))
                click.echo(
                    fitted_table(
                        ["seq", "ts", "type", "actor", "details"],
                        [(h.seq, h.ts, h.type, h.actor, _details(h.event)) for h in history],
                        width,
                    )
                )
            return
        tables = replay_for_views(store, seq)
        chosen = list(shows) or list(VIEWS)
        views = {name: view(tables, name) for name in chosen}
        if as_json:
            echo_json({"until_seq": seq, **views})
            return
        width = terminal_width()
        click.echo(f"projections as of event {seq}")
        for name, rows in views.items():
            click.echo(f"\n{name} ({len(rows)})")
            if rows:
                click.echo(fitted_table(list(rows[0]), [list(r.values()) for r in rows], width))


def _details(event: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("type", "record_key"))


if __name__ == "__main__":
    main(command=replay_cli, prog_name="replay.py")
