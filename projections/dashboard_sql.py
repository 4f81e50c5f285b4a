"""The dashboard's SQL: its canned queries and its charts' queries, each named, read-only.

Where a question is also asked by ``status`` or ``analyze-failures``, the text is the one
:mod:`projections.queries` runs (``FAILURE_GROUPS_SQL``, ``STATUS_COUNTS_SQL``, ...), so the
dashboard and the commands never disagree. Datasette binds no hidden parameters, so what the
config decides (prices, ``max_retries``) is written into the text as literals: numbers from
pydantic-checked floats and ints, and names through :func:`_literal`. Parameters an operator
types (``:record_key``) stay named parameters.
"""

from __future__ import annotations

import msgspec

from eventlog.events import RecordFailed, RecordValidated, ResultDiscarded
from eventlog.states import RecordStatus
from projections import queries

__all__ = ["CannedQuery", "Pricing", "ProjectLimits", "canned_queries", "chart_queries"]


class Pricing(msgspec.Struct, frozen=True):
    """What the spend queries need from ``[pricing]``: (model, input, output) per million tokens
    at list price, the batch discount, and the model rows without one are priced as."""

    prices: list[tuple[str, float, float]]
    batch_discount: float
    default_model: str


class ProjectLimits(msgspec.Struct, frozen=True):
    """What ``project_capacity`` needs from one project of the config (``Config.projects()``,
    its limits filled in from ``[batching]``): ``max_tokens`` 0 is no limit."""

    name: str
    max_batches: int
    max_tokens: int


def _capacity_sql(projects: list[ProjectLimits]) -> str:
    """The status screen's line per project: batches / max, enqueued tokens / max (NULL: no
    limit), and its quota hold, in the config's order."""
    rows = ", ".join(
        f"({i}, {_literal(p.name)}, {int(p.max_batches)}, {int(p.max_tokens)})"
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


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tag(event: type) -> str:
    return _literal(str(event.__struct_config__.tag))  # type: ignore[attr-defined]


def _prices_cte(p: Pricing) -> str:
    rows = ", ".join(f"({_literal(m)}, {float(i)!r}, {float(o)!r})" for m, i, o in sorted(p.prices))
    values = f"VALUES {rows}" if rows else "SELECT '', 0.0, 0.0 WHERE 0"
    return f"prices(model, input_per_million, output_per_million) AS ({values})"


def _priced_model(column: str, p: Pricing) -> str:
    """The name a row's model is priced under (as ``PricingConfig.price``: no ``models/``)."""
    return (
        f"CASE WHEN {column} = '' THEN {_literal(p.default_model)} "
        f"WHEN {column} LIKE 'models/%' THEN substr({column}, 8) ELSE {column} END"
    )


def _cost(prompt: str, output: str, p: Pricing) -> str:
    return (
        f"(({prompt}) * pr.input_per_million + ({output}) * pr.output_per_million) / 1e6 "
        f"* (1 - {float(p.batch_discount)!r})"
    )


def _spend_sql(p: Pricing, group: tuple[str, ...]) -> str:
    """Spend per ``group`` columns of ``token_usage`` (``model`` is the priced name); cost is
    NULL for a model without a price, as ``status`` says "cost unknown"."""
    keys = ", ".join(group)
    return (
        f"WITH {_prices_cte(p)}, usage AS (SELECT run_id, "
        f"{_priced_model('model', p)} AS model, results, prompt_tokens, output_tokens, "
        "failed_results, failed_prompt_tokens, failed_output_tokens FROM token_usage) "
        f"SELECT {', '.join(f'u.{k} AS {k}' for k in group)}, sum(u.results) AS results, "
        "sum(u.prompt_tokens) AS prompt_tokens, sum(u.output_tokens) AS output_tokens, "
        "sum(u.failed_results) AS failed_results, "
        f"sum({_cost('u.prompt_tokens', 'u.output_tokens', p)}) AS cost, "
        f"sum({_cost('u.failed_prompt_tokens', 'u.failed_output_tokens', p)}) AS wasted_cost "
        "FROM usage u LEFT JOIN prices pr ON pr.model = u.model "
        f"GROUP BY {', '.join(f'u.{k}' for k in group)} ORDER BY {keys}"
    )


def _spend_per_day_sql(p: Pricing) -> str:
    billed = ", ".join(_tag(e) for e in (RecordValidated, RecordFailed, ResultDiscarded))
    return (
        f"WITH {_prices_cte(p)}, billed AS (SELECT date(ts) AS day, type, "
        "coalesce(json_extract(payload, '$.prompt_tokens'), 0) AS prompt, "
        "coalesce(json_extract(payload, '$.output_tokens'), 0) AS output, "
        "coalesce(json_extract(payload, '$.model'), '') AS model "
        f"FROM events WHERE type IN ({billed})) "
        f"SELECT b.day AS day, sum({_cost('b.prompt', 'b.output', p)}) AS cost, "
        f"coalesce(sum(CASE WHEN b.type != {_tag(RecordValidated)} "
        f"THEN {_cost('b.prompt', 'b.output', p)} END), 0) AS wasted_cost "
        f"FROM billed b LEFT JOIN prices pr ON pr.model = ({_priced_model('b.model', p)}) "
        "GROUP BY b.day ORDER BY b.day"
    )


_RETRYING = ", ".join(
    _literal(s)
    for s in (
        RecordStatus.FAILED,
        RecordStatus.PENDING,
        RecordStatus.RESERVED,
        RecordStatus.INFLIGHT,
    )
)


#: Now, as the log writes timestamps (UTC, ISO 8601 with ``Z``; milliseconds are enough here).
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def canned_queries(
    pricing: Pricing, max_retries: int, projects: list[ProjectLimits]
) -> list[CannedQuery]:
    """Every canned query, in the order the database page lists them."""
    groups = queries.FAILURE_GROUPS_SQL
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
            "Dead letters with their last error",
            "SELECT d.record_key, d.failures, d.max_retries, d.dead_lettered_at, "
            "f.error_type AS last_error_type, f.message AS last_error, "
            "f.failed_at AS last_failed_at FROM dead_letters d LEFT JOIN failure_logs f "
            "ON f.seq = (SELECT max(seq) FROM failure_logs WHERE record_key = d.record_key) "
            "ORDER BY d.dead_lettered_seq",
            "reset-failures makes them eligible again",
        ),
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
        CannedQuery(
            "spend_by_run_and_model",
            "Spend per run and model",
            _spend_sql(pricing, ("run_id", "model")),
            "cost and wasted_cost (results that failed) at the batch discount",
        ),
        CannedQuery(
            "spend_by_model",
            "Spend per model",
            _spend_sql(pricing, ("model",)),
            "status: spend total",
        ),
        CannedQuery("status_counts", "Status figures", queries.STATUS_COUNTS_SQL, "status"),
        CannedQuery(
            "workers",
            "Workers (several workers on one log)",
            "SELECT w.worker, w.run_id, w.first_seen_at, w.renewed_at, w.expires_at, "
            f"CASE WHEN w.expires_at <= {_NOW} THEN 1 ELSE 0 END AS expired, "
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
            f"CASE WHEN expires_at <= {_NOW} THEN 1 ELSE 0 END AS expired "
            "FROM leases ORDER BY partition",
            "who holds each partition, until when (an expired one is taken over at the next "
            "renewal of a live worker)",
        ),
    ]


def chart_queries(pricing: Pricing) -> dict[str, str]:
    """The SQL of each chart of the dashboard page, by chart name."""
    written = _tag(RecordValidated)
    by_model = _spend_sql(pricing, ("model",))
    return {
        "pages_written_per_hour": (
            "SELECT substr(ts, 1, 13) || ':00:00Z' AS hour, count(*) AS pages FROM events "
            f"WHERE type = {written} GROUP BY hour ORDER BY hour"
        ),
        "failures_per_hour": (
            "SELECT substr(failed_at, 1, 13) || ':00:00Z' AS hour, error_type, "
            "count(*) AS failures FROM failure_logs GROUP BY hour, error_type "
            "ORDER BY hour, error_type"
        ),
        "failures_by_state": queries.FAILURE_GROUPS_SQL["state"],
        "records_by_status": (
            "SELECT status, count(*) AS records FROM record_status GROUP BY status ORDER BY status"
        ),
        "spend_per_day": _spend_per_day_sql(pricing),
        "spend_total": (f"SELECT round(coalesce(sum(cost), 0), 4) AS cost FROM ({by_model})"),
        "status_counts": queries.STATUS_COUNTS_SQL,
        "retrying": (
            f"SELECT coalesce(sum(records), 0) AS retrying FROM ({queries.FAILING_BY_COUNT_SQL})"
        ),
    }
