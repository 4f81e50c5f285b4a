"""The dashboard's SQL: its canned queries and its charts' queries, each named, read-only.

Where a question is also asked by ``status`` or ``analyze-failures``, the text is the one
:mod:`projections.queries` runs (``FAILURE_GROUPS_SQL``, ``STATUS_COUNTS_SQL``, ...), so the
dashboard and the commands never disagree; the panels (progress, what may be stuck, what is
failing, the cost) are :mod:`projections.panels`, :mod:`projections.progress` and
:mod:`projections.spend_sql`, and each chart or card reads the text of a canned query (wrapped
for a table card: :func:`projections.sql_text.table_sql`), so what the page shows is what the
query's JSON says. Datasette binds no hidden parameters, so what the config decides (prices,
``max_retries``) is written into the text as literals: numbers from pydantic-checked floats and
ints, and names through :func:`literal`. Parameters an operator types (``:record_key``,
``:stuck_after``) stay named parameters.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from eventlog.states import RecordStatus
from projections import panels, queries
from projections.progress import PageCost, progress_sql
from projections.spend_sql import Pricing, spend_per_day_sql, spend_sql
from projections.sql_text import NOW, literal, table_sql

__all__ = [
    "CannedQuery",
    "PageCost",
    "Panels",
    "Pricing",
    "ProjectLimits",
    "canned_queries",
    "chart_queries",
]


class ProjectLimits(msgspec.Struct, frozen=True):
    """What ``project_capacity`` needs from one project of the config (``Config.projects()``,
    its limits filled in from ``[batching]``): ``max_tokens`` 0 is no limit."""

    name: str
    max_batches: int
    max_tokens: int


class Panels(msgspec.Struct, frozen=True):
    """What the panels need from the config beyond the prices: how a page to go is priced, the
    currency, the command line an operator copies (``python -m commands --config ...``), and
    the stuck thresholds (``commands.rules.stuck``'s: minutes, and hours for a batch)."""

    page_cost: PageCost | None = None
    currency: str = "USD"
    command: str = "python -m commands"
    stuck_minutes: float = 60.0
    batch_hours: float = 24.0
    #: Rows of the latest-failures panel.
    latest_failures: int = 25


def _capacity_sql(projects: list[ProjectLimits]) -> str:
    """The status screen's line per project: batches / max, enqueued tokens / max (NULL: no
    limit), and its quota hold, in the config's order."""
    rows = ", ".join(
        f"({i}, {literal(p.name)}, {int(p.max_batches)}, {int(p.max_tokens)})"
        for i, p in enumerate(projects)
    )
    values = f"VALUES {rows}" if rows else "SELECT 0, '', 0, 0 WHERE 0"
    return (
        f"WITH limits(pos, project, max_batches, max_tokens) AS ({values}), "
        f"loads AS ({queries.PROJECT_LOADS_SQL}) "
        "SELECT l.project, coalesce(d.batches, 0) AS batches, l.max_batches, "
        "coalesce(d.tokens, 0) AS enqueued_tokens, "
        "CASE WHEN l.max_tokens > 0 THEN l.max_tokens END AS max_enqueued_tokens, "
        "q.held_since, q.retry_after FROM limits l LEFT JOIN loads d ON d.project = l.project "
        "LEFT JOIN submission_quota q ON q.project = l.project AND q.held_since IS NOT NULL "
        "ORDER BY l.pos"
    )


class CannedQuery(msgspec.Struct, frozen=True):
    name: str
    title: str
    sql: str
    description: str = ""


_RETRYING = ", ".join(
    literal(s)
    for s in (
        RecordStatus.FAILED,
        RecordStatus.PENDING,
        RecordStatus.RESERVED,
        RecordStatus.INFLIGHT,
    )
)


def canned_queries(
    pricing: Pricing,
    max_retries: int,
    projects: list[ProjectLimits],
    settings: Panels | None = None,
) -> list[CannedQuery]:
    """Every canned query, in the order the database page lists them: the panels' first."""
    p = settings or Panels()
    return [
        *_panel_queries(pricing, projects, p),
        *_failure_queries(p),
        *_batch_queries(max_retries, projects),
        *_spend_queries(pricing),
        *_worker_queries(),
    ]


def _progress(pricing: Pricing, p: Panels) -> str:
    return progress_sql(NOW, pricing, p.page_cost, p.currency)


def _panel_queries(pricing: Pricing, projects: list[ProjectLimits], p: Panels) -> list[CannedQuery]:
    """The dashboard's four questions: how far along, what may be stuck, what fails, the cost."""
    minutes = f"{p.stuck_minutes:g}"
    return [
        CannedQuery(
            "progress",
            "Progress: pages, rate, expected finish, spend and cost to go",
            _progress(pricing, p),
            "status --json's 'progress', with the log's last event and the time it was read",
        ),
        CannedQuery(
            "stuck",
            "What may be stuck",
            panels.stuck_sql(NOW, [x.name for x in projects], p.stuck_minutes, p.batch_hours),
            f"status --stuck-after MINUTES (stuck_after; empty: {minutes}): batches, intents, "
            "quota holds, workers and the last event, with their age; 'stuck' says why",
        ),
        CannedQuery(
            "latest_failures",
            "The latest failures",
            panels.latest_failures_sql(p.latest_failures),
            "newest first, with their messages and excerpts (every one: failure_log)",
        ),
        CannedQuery(
            "pages_written_per_hour",
            "Pages written per hour",
            panels.written_per_hour_sql(NOW),
            f"the last {panels.HOURS_SHOWN} hours, newest first (hourly_activity)",
        ),
        CannedQuery(
            "pages_written_per_day",
            "Pages written per day",
            panels.written_per_day_sql(NOW),
            "the whole job, newest first (hourly_activity, a day its 24 hours)",
        ),
        CannedQuery(
            "failures_per_hour",
            "Failed attempts and dead letters per hour",
            panels.failures_per_hour_sql(NOW),
            f"the last {panels.HOURS_SHOWN} hours, newest first (hourly_activity)",
        ),
        CannedQuery(
            "spend_per_day",
            "Spend per day",
            spend_per_day_sql(pricing, NOW),
            "newest first, at [pricing]'s prices: kept, and wasted on answers that failed",
        ),
    ]


def _failure_queries(p: Panels) -> list[CannedQuery]:
    """``analyze-failures``' questions, the dead letters with their reset, the failures in
    pages."""
    groups = queries.FAILURE_GROUPS_SQL
    in_pages = [
        CannedQuery(
            f"failures_in_pages_by_{column}",
            f"Pages that failed, by {column.replace('_', ' ')}, attempts beside",
            panels.failures_in_pages_sql(column),
            f"analyze-failures --by-{column.replace('_', '-')}, most pages first",
        )
        for column in ("state", "school", "error_type")
    ]
    return [
        CannedQuery(
            "failure_summary",
            "Failure summary",
            queries.FAILURE_SUMMARY_SQL,
            "analyze-failures --summary",
        ),
        CannedQuery(
            "failures_by_error_type",
            "Failures by error type",
            groups["error_type"],
            "analyze-failures --by-error-type",
        ),
        CannedQuery(
            "failures_by_state", "Failures by state", groups["state"], "analyze-failures --by-state"
        ),
        CannedQuery(
            "failures_by_school",
            "Failures by school",
            queries.FAILURES_BY_SCHOOL_SQL,
            "analyze-failures --by-school",
        ),
        *in_pages,
        CannedQuery(
            "record_failures",
            "One record's failures",
            queries.FAILURE_LOGS_OF_SQL.replace("?", ":record_key"),
            "analyze-failures --record-key KEY",
        ),
        CannedQuery(
            "record_history",
            "One record's full history from the log",
            "SELECT seq, ts, type, actor, payload FROM events WHERE stream = :record_key "
            "ORDER BY seq",
            "every event of the record's stream, oldest first",
        ),
        CannedQuery(
            "failure_log",
            "Every failure logged",
            queries.FAILURE_LOG_ROWS_SQL,
            "analyze-failures --export-csv (use the CSV link)",
        ),
        CannedQuery(
            "dead_letters",
            "Dead letters with their last error, and the command that resets them",
            panels.dead_letters_sql(p.command),
            "newest first; reset_command resets the failure counts of the page's state, school "
            "and year (the narrowest filter reset-failures takes)",
        ),
    ]


def _batch_queries(max_retries: int, projects: list[ProjectLimits]) -> list[CannedQuery]:
    """Retries, batches, quota and capacity, as ``status`` shows them."""
    return [
        CannedQuery(
            "retrying",
            "Pages on retry",
            f"SELECT f.record_key, f.count AS failures, {int(max_retries)} AS max_retries, "
            f"f.count || '/' || {int(max_retries)} AS retry, s.status, s.last_error_type "
            "FROM failure_counts f JOIN record_status s USING (record_key) "
            f"WHERE s.status IN ({_RETRYING}) ORDER BY f.count DESC, f.record_key",
            "page X is on retry n/max_retries",
        ),
        CannedQuery(
            "retrying_by_count",
            "Pages on retry, by failure count",
            queries.FAILING_BY_COUNT_SQL,
            "status: retrying",
        ),
        CannedQuery(
            "active_batches",
            "Active batches with age and progress",
            "SELECT batch_id, display_name, model, state, record_count, submitted_at, "
            "round((julianday('now') - julianday(submitted_at)) * 24, 2) AS age_hours, "
            "succeeded, failed, pending, transport, project FROM active_batches "
            "ORDER BY submitted_seq",
            "succeeded/failed/pending: the service's batchStats as last polled",
        ),
        CannedQuery(
            "quota_hold",
            "Creates held back by the quota",
            "SELECT project, held_since, retry_after, halvings, successes_since, message "
            "FROM submission_quota WHERE held_since IS NOT NULL ORDER BY project",
            "429 RESOURCE_EXHAUSTED: batches are halved until the service takes them again",
        ),
        CannedQuery(
            "project_capacity",
            "Capacity per project",
            _capacity_sql(projects),
            "status: batches/max_active_batches, enqueued tokens/max_enqueued_tokens, hold",
        ),
        CannedQuery(
            "deferred_submissions",
            "Held-back submissions and their pages",
            "SELECT display_name, model, reason, deferred_at, checked, "
            "CASE WHEN record_keys = '' THEN 0 ELSE length(record_keys) "
            "- length(replace(record_keys, char(10), '')) + 1 END AS pages "
            "FROM deferred_submissions ORDER BY deferred_seq",
        ),
        CannedQuery("status_counts", "Status figures", queries.STATUS_COUNTS_SQL, "status"),
    ]


def _spend_queries(pricing: Pricing) -> list[CannedQuery]:
    return [
        CannedQuery(
            "spend_by_run_and_model",
            "Spend per run and model",
            spend_sql(pricing, ("run_id", "model")),
            "cost and wasted_cost (results that failed) at the batch discount",
        ),
        CannedQuery(
            "spend_by_model",
            "Spend per model",
            spend_sql(pricing, ("model",)),
            "status: spend total",
        ),
    ]


def _worker_queries() -> list[CannedQuery]:
    return [
        CannedQuery(
            "workers",
            "Workers (several workers on one log)",
            "SELECT w.worker, w.run_id, w.first_seen_at, w.renewed_at, w.expires_at, "
            f"CASE WHEN w.expires_at <= {NOW} THEN 1 ELSE 0 END AS expired, "
            "(SELECT count(*) FROM leases l WHERE l.worker = w.worker) AS leases, "
            "coalesce((SELECT group_concat(partition, ', ') FROM (SELECT partition FROM leases l "
            "WHERE l.worker = w.worker ORDER BY partition)), '') AS partitions "
            "FROM workers w ORDER BY w.renewed_at DESC",
            "status: workers (expired: dead, or cut off from the log)",
        ),
        CannedQuery(
            "leases",
            "Partition leases",
            "SELECT partition, worker, acquired_at, renewed_at, expires_at, "
            f"CASE WHEN expires_at <= {NOW} THEN 1 ELSE 0 END AS expired "
            "FROM leases ORDER BY partition",
            "who holds each partition, until when (an expired one is taken over at the next "
            "renewal of a live worker)",
        ),
    ]


#: Table cards: (canned query, its columns, the text columns to escape and clip, rows shown).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "stuck": (
        ("kind", "name", "detail", "since", "age_hours", "stuck"),
        ("kind", "name", "detail", "stuck"),
        50,
    ),
    "latest_failures": (
        ("failed_at", "record_key", "error_type", "attempt", "message", "excerpt"),
        ("record_key", "error_type", "message", "excerpt"),
        10,
    ),
    "dead_letters": (
        ("record_key", "dead_lettered_at", "last_error_type", "last_error", "reset_command"),
        ("record_key", "last_error_type", "last_error", "reset_command"),
        10,
    ),
    "failures_in_pages_by_school": (
        ("state", "school", "pages", "attempts"),
        ("state", "school"),
        25,
    ),
}


def chart_queries(canned: Sequence[CannedQuery], currency: str) -> dict[str, str]:
    """The SQL of each card and chart of the dashboard page, by name: the text of one of the
    ``canned`` queries (:func:`canned_queries`), wrapped for the progress tiles, the status
    chart and the table cards (escaped, clipped, the first rows as the query orders them)."""
    sql = {q.name: q.sql for q in canned}
    charts = {
        name: sql[name]
        for name in (
            "pages_written_per_hour",
            "pages_written_per_day",
            "failures_per_hour",
            "spend_per_day",
            "failures_in_pages_by_state",
            "failures_in_pages_by_error_type",
        )
    }
    charts["progress"] = panels.progress_tiles_sql(sql["progress"], currency)
    charts["pages_by_status"] = panels.pages_by_status_sql(sql["progress"])
    for name, (columns, text, rows) in TABLES.items():
        charts[name] = table_sql(sql[name], columns, text, "none", rows=rows)
    return charts
