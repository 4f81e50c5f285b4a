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
import ipaddress
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commands.config import Config
from eventlog.errors import OperatorError
from projections.dashboard_sql import Pricing, ProjectLimits, canned_queries, chart_queries

if TYPE_CHECKING:
    from datasette.app import Datasette

#: The dashboard's slug: its page is ``/-/dashboards/pipeline``.
SLUG = "pipeline"
DEFAULT_PORT = 8001
#: Datasette's per-statement time limit here: the charts read the whole log.
SQL_TIME_LIMIT_MS = 5000

#: Metric cards: (chart name, title, the ``status_counts`` column it shows).
METRICS = [
    ("written", "Pages written", "written"),
    ("in_flight", "In flight", "in_flight"),
    ("active_batches", "Active batches", "active_batches"),
    ("dead_letters", "Dead letters", "dead_letters"),
]


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


def _bar(x: dict[str, Any], y: dict[str, Any], **encoding: Any) -> dict[str, Any]:
    return {
        "height": 180,
        # SVG, not canvas: marks an operator's screen reader and the browser test can see.
        "usermeta": {"embedOptions": {"renderer": "svg", "actions": False}},
        "mark": {"type": "bar", "tooltip": True},
        "encoding": {"x": x, "y": y, **encoding},
    }


def _hours(field: str) -> dict[str, Any]:
    return {"field": field, "type": "temporal", "timeUnit": "yearmonthdatehours", "title": "hour"}


def _charts(config: Config, db: str) -> dict[str, dict[str, Any]]:
    sql = chart_queries(pricing_of(config))
    currency = "$" if config.pricing.currency == "USD" else f"{config.pricing.currency} "
    charts: dict[str, dict[str, Any]] = {}
    for name, title, field in METRICS:
        charts[name] = {
            "title": title,
            "db": db,
            "query": sql["status_counts"],
            "library": "metric",
            "display": {"field": field},
        }
    charts["retrying"] = {
        "title": "Retrying",
        "db": db,
        "query": sql["retrying"],
        "library": "metric",
        "display": {"field": "retrying"},
    }
    charts["spend_total"] = {
        "title": "Spend (estimated)",
        "db": db,
        "query": sql["spend_total"],
        "library": "metric",
        "display": {"field": "cost", "prefix": currency},
    }
    q = {"type": "quantitative"}
    charts["pages_written_per_hour"] = {
        "title": "Pages written per hour",
        "db": db,
        "query": sql["pages_written_per_hour"],
        "library": "vega-lite",
        "display": _bar(_hours("hour"), {"field": "pages", **q}),
    }
    charts["failures_per_hour"] = {
        "title": "Failures per hour, by error type",
        "db": db,
        "query": sql["failures_per_hour"],
        "library": "vega-lite",
        "display": _bar(
            _hours("hour"),
            {"field": "failures", **q},
            color={"field": "error_type", "type": "nominal"},
        ),
    }
    charts["failures_by_state"] = {
        "title": "Failures by state",
        "db": db,
        "query": sql["failures_by_state"],
        "library": "vega-lite",
        "display": _bar(
            {"field": "failures", **q}, {"field": "state", "type": "nominal", "sort": "-x"}
        ),
    }
    charts["records_by_status"] = {
        "title": "In flight, written, dead-lettered: records by status",
        "db": db,
        "query": sql["records_by_status"],
        "library": "vega-lite",
        "display": _bar(
            {"field": "status", "type": "nominal"},
            {"field": "records", **q},
            color={"field": "status", "type": "nominal", "legend": None},
        ),
    }
    charts["spend_per_day"] = {
        "title": f"Spend per day ({config.pricing.currency}, estimated)",
        "db": db,
        "query": sql["spend_per_day"],
        "library": "vega-lite",
        "display": _bar(
            {"field": "day", "type": "ordinal"}, {"field": "cost", **q, "title": "cost"}
        ),
    }
    return charts


#: The dashboard's grid: each row names the cards in it (a name repeated spans columns).
LAYOUT = [
    ["written", "in_flight", "active_batches", "retrying", "dead_letters", "spend_total"],
    ["pages_written_per_hour"] * 3 + ["failures_per_hour"] * 3,
    ["failures_by_state"] * 2 + ["records_by_status"] * 2 + ["spend_per_day"] * 2,
]


def metadata(config: Config, db: str) -> dict[str, Any]:
    """Datasette's metadata: the canned queries of ``db`` and the dashboard page (read-only)."""
    pricing = pricing_of(config)
    queries = {
        q.name: {"title": q.title, "sql": q.sql, "description": q.description, "write": False}
        for q in canned_queries(pricing, config.batching.max_retries, project_limits(config))
    }
    return {
        "title": "gemini-batches",
        "description": f"The event log at {config.paths.database}, read-only.",
        "databases": {db: {"queries": queries}},
        "plugins": {
            "datasette-dashboards": {
                SLUG: {
                    "title": "Pipeline",
                    "description": "Pages written, failures, what is in flight, and the spend.",
                    "layout": LAYOUT,
                    "charts": _charts(config, db),
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
        settings={"sql_time_limit_ms": SQL_TIME_LIMIT_MS},
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
