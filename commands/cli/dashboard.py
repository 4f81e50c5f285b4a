"""The ``dashboard`` command: the log in the browser (Datasette, read-only)."""

from __future__ import annotations

import click

from commands.cli.app import app, cli, operator_errors
from eventlog.errors import OperatorError


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8001,
    show_default=True,
    help="Port to listen on.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
@click.option(
    "--public",
    is_flag=True,
    help="Allow a --host other than this machine's loopback (the log becomes readable there).",
)
@click.pass_context
@operator_errors
def dashboard(ctx: click.Context, host: str, port: int, open_browser: bool, public: bool) -> None:
    """Serve the log read-only in the browser: canned failure-analysis queries and a dashboard
    of charts (Datasette with datasette-dashboards: uv sync --extra dashboard).

    Datasette opens the database read-only in its plain mode, so the page follows a log that
    `run --loop` is appending to. Ctrl-C stops it.

    Example: python -m commands dashboard --open
    """
    from commands.integrations import dashboard as d

    d.check_installed()
    warning = d.check_host(host, public)
    config = app(ctx).config
    if isinstance(app(ctx).store_location, str):  # [database] url, and no --db FILE given
        raise OperatorError(
            "the dashboard serves a SQLite log (Datasette reads SQLite only), and [database] url "
            "points at PostgreSQL: run it on a SQLite copy, or query PostgreSQL with its own tools"
        )
    with app(ctx).open():  # a missing or foreign file is one line here, not a Datasette error
        pass
    sock = d.bind(host, port)
    url = d.url_of(host, port)

    def ready() -> None:
        if warning:
            click.echo(warning, err=True)
        click.echo(f"dashboard: {url} (read-only; Ctrl-C stops)")

    d.serve(config, sock, url, open_browser=open_browser, on_ready=ready)
