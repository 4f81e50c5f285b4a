"""``dashboard``: the log in the browser through Datasette, read-only, with canned queries and a
dashboard page of charts (datasette-dashboards, Vega-Lite) and metric cards.

The only module that imports Datasette (the optional extra ``dashboard``), and only inside the
functions that serve: building the metadata needs neither. Datasette opens the database in its
plain mode (``mode=ro``: it follows a WAL log another process is appending to; never
``--immutable``, which shows stale pages of a live log). No write path is enabled: no canned
query writes, no actor is signed in, and Datasette refuses any statement but a read.

Every SQL text comes from :mod:`projections.dashboard_sql`, which takes the texts ``status`` and
``analyze-failures`` run where they overlap.
"""

from __future__ import annotations

import contextlib
import errno
import html
import ipaddress
import shlex
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commands.config import Config
from commands.integrations.dashboard_charts import LAYOUT, STUCK_FILTER, cards
from commands.models import row_for
from commands.rules import stuck
from commands.rules.tokens import default_page_tokens
from eventlog.errors import OperatorError
from projections.dashboard_sql import (
    CannedQuery,
    PageCost,
    Panels,
    Pricing,
    ProjectLimits,
    canned_queries,
    chart_queries,
)

if TYPE_CHECKING:
    from datasette.app import Datasette

#: The dashboard's slug: its page is ``/-/dashboards/pipeline``.
SLUG = "pipeline"
DEFAULT_PORT = 8001
#: Datasette's per-statement time limit here (the cards read aggregates: well under a second at
#: a million pages; an operator's own SQL may read more).
SQL_TIME_LIMIT_MS = 5000

#: Tables of the database's own bookkeeping, hidden from Datasette's home and database pages
#: (still served to whoever asks for them by name).
INTERNAL_TABLES = (
    "event_record_keys",  # the log's index of the keys an event lists (a record's history)
    "meta",
    "projection_checkpoints",
    "projection_gate",
    "replay_snapshots",
)


def pricing_of(config: Config) -> Pricing:
    prices = [
        (m, p.input_per_million, p.output_per_million) for m, p in config.pricing.models.items()
    ]
    return Pricing(prices, config.pricing.batch_discount, config.gemini.model)


def project_limits(config: Config) -> list[ProjectLimits]:
    """Each project's limits as ``status`` shows them (``[batching]``'s where it names none)."""
    return [
        ProjectLimits(p.name, p.max_active_batches or 0, p.max_enqueued_tokens or 0)
        for p in config.projects()
    ]


def database_name(path: Path) -> str:
    """The name Datasette gives the database file (its stem)."""
    return path.stem


def panels_of(config: Config) -> Panels:
    """What the panels need from the config: how a page to go is priced (as ``status``), the
    currency, the command line to copy, and ``status``'s stuck thresholds."""
    model = config.gemini.model
    price = config.pricing.price(model)
    where = f" --config {shlex.quote(str(config.source))}" if config.source else ""
    return Panels(
        page_cost=PageCost(
            model,
            None if price is None else (price.input_per_million, price.output_per_million),
            config.pricing.batch_discount,
            *default_page_tokens(
                row_for(model), config.gemini.media_resolution, len(config.gemini.prompt)
            ),
        ),
        currency=config.pricing.currency,
        command=f"python -m commands{where}",
        stuck_minutes=stuck.MINUTES,
        batch_hours=stuck.BATCH_HOURS,
    )


def queries_of(config: Config) -> list[CannedQuery]:
    """Every canned query, for ``config``."""
    return canned_queries(
        pricing_of(config), config.batching.max_retries, project_limits(config), panels_of(config)
    )


def charts(config: Config, db: str) -> dict[str, dict[str, Any]]:
    """The dashboard page's cards, each reading a canned query's text."""
    sql = chart_queries(queries_of(config), config.pricing.currency)
    return cards(sql, db, config.pricing.currency)


def metadata(config: Config, db: str) -> dict[str, Any]:
    """Datasette's metadata: the home page's link to the dashboard, the canned queries of
    ``db``, its internal tables hidden, and the dashboard page (all read-only)."""
    queries = {
        q.name: {"title": q.title, "sql": q.sql, "description": q.description, "write": False}
        for q in queries_of(config)
    }
    where = html.escape(str(config.paths.database))
    return {
        "title": "gemini-batches",
        "description_html": (
            f"<p>The event log at <code>{where}</code>, read-only.</p>"
            f'<p><a href="/-/dashboards/{SLUG}"><strong>The pipeline dashboard</strong></a>: '
            "how far along, what may be stuck, what is failing, what it costs.</p>"
        ),
        "databases": {
            db: {
                "queries": queries,
                "tables": {name: {"hidden": True} for name in INTERNAL_TABLES},
            }
        },
        "plugins": {
            "datasette-dashboards": {
                SLUG: {
                    "title": "Pipeline",
                    "description": "How far along, what may be stuck, what is failing, and "
                    "what it costs; every card is a canned query of the database page.",
                    "layout": LAYOUT,
                    "filters": {
                        STUCK_FILTER: {
                            "name": f"Stuck after (minutes; empty: {stuck.MINUTES:g})",
                            "type": "number",
                            "min": 0,
                        }
                    },
                    "charts": charts(config, db),
                }
            }
        },
    }


def make_datasette(config: Config) -> Datasette:
    """A Datasette over the configured database in plain (read-only) mode, with
    :func:`metadata`; not started."""
    from datasette.app import Datasette

    path = config.paths.database
    return Datasette(
        files=[str(path)],
        metadata=metadata(config, database_name(path)),
        # A live log: no answer may be reused from a cache (Datasette's default lets a browser
        # keep each for 5 s, and a reload then shows figures older than the log).
        settings={"sql_time_limit_ms": SQL_TIME_LIMIT_MS, "default_cache_ttl": 0},
    )


def check_installed() -> None:
    """Import what serving needs, now: a missing extra (an ImportError naming its first missing
    module, one line at the CLI's boundary) is said before the database is opened."""
    import datasette.app  # noqa: F401
    import datasette_dashboards  # noqa: F401
    import uvicorn  # noqa: F401


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, public: bool) -> str | None:
    """Refuse a non-loopback ``host`` without ``public``; with it, the warning to print."""
    if is_loopback(host):
        return None
    if not public:
        raise OperatorError(
            f"--host {host} would show the log to that network: add --public to mean it "
            "(the default, 127.0.0.1, keeps it on this machine)"
        )
    return (
        f"warning: --public: the whole log (record keys, error messages, spend) is readable "
        f"by anyone who can reach {host}; Datasette has no login here"
    )


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so a port in use is one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        in_use = e.errno == errno.EADDRINUSE
        reason = "is in use" if in_use else f"cannot be bound: {e.strerror or e}"
        raise OperatorError(f"port {port} on {host} {reason} (choose another with --port)") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def url_of(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/-/dashboards/{SLUG}"


def serve(
    config: Config,
    sock: socket.socket,
    url: str,
    *,
    open_browser: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve the dashboard on ``sock`` until interrupted."""
    import asyncio

    import uvicorn

    ds = make_datasette(config)
    asyncio.run(ds.invoke_startup())
    server = uvicorn.Server(uvicorn.Config(ds.app(), log_level="warning", lifespan="on"))
    if on_ready is not None:
        on_ready()
    if open_browser:
        threading.Timer(1.0, webbrowser.open, [url]).start()
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
