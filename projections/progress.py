"""Reads of the job's progress: the pages the scans counted (``dataset_counts``) and the pages
written per hour (``hourly_activity``). Each reads a few rows: no log scan, no tree walk.

:func:`progress_sql` is the dashboard's progress in one statement (SQLite): the counts through
the very texts ``status`` runs, the rates, the finish and the cost to go as ``status`` computes
them in Python (``tests/projections/test_progress_sql.py`` holds the two equal)."""

from __future__ import annotations

import msgspec

from eventlog.store import EventStore
from projections import queries
from projections.spend_sql import Pricing, spend_total_sql
from projections.sql_text import literal, number

__all__ = [
    "DATASET_TOTAL_SQL",
    "PageCost",
    "dataset_counts",
    "dataset_total",
    "progress_sql",
    "written_per_hour",
]

#: The pages known and when the newest count was made (the dashboard's card reads the same).
DATASET_TOTAL_SQL = "SELECT coalesce(sum(pages), 0), max(counted_at) FROM dataset_counts"


def dataset_counts(store: EventStore) -> dict[tuple[str, str], tuple[str, int]]:
    """(state, school) -> (its folder's path, pages) as last counted."""
    rows = store.query("SELECT state, school, path, pages FROM dataset_counts")
    return {(state, school): (path, pages) for state, school, path, pages in rows}


def dataset_total(store: EventStore) -> tuple[int, str | None]:
    """Pages known (the last counts summed) and the time of the newest count."""
    row = store.query_one(DATASET_TOTAL_SQL)
    return (int(row[0]), row[1]) if row else (0, None)


def written_per_hour(store: EventStore, since_hour: str) -> dict[str, int]:
    """Pages written per hour bucket from ``since_hour`` on."""
    rows = store.query(
        "SELECT hour, sum(written) FROM hourly_activity WHERE hour >= ? GROUP BY hour",
        (since_hour,),
    )
    return {hour: int(n) for hour, n in rows}


class PageCost(msgspec.Struct, frozen=True):
    """How a page to go is priced (``commands.views.progress`` in Python): the configured
    ``model``'s mean billed tokens per result so far, else the estimator's defaults, at its
    ``price`` (input, output per million; None: no price) with the batch discount."""

    model: str
    price: tuple[float, float] | None
    batch_discount: float
    default_prompt_tokens: int
    default_output_tokens: int


def _half_even(x: str) -> str:
    """``round(x)`` as Python rounds a float to an int (half to even), for ``x >= 0``."""
    whole = f"CAST({x} AS INTEGER)"
    return (
        f"CASE WHEN {x} - {whole} > 0.5 THEN {whole} + 1 WHEN {x} - {whole} < 0.5 THEN {whole} "
        f"ELSE {whole} + {whole} % 2 END"
    )


def _per_page_sql(c: PageCost | None) -> str:
    """``per_page(cost, basis)``: what a page costs, and on what basis (``_cost_per_page``)."""
    if c is None:
        return "per_page(cost, basis) AS (SELECT NULL, 'no model priced')"
    model = literal(c.model)
    if c.price is None:
        return f"per_page(cost, basis) AS (SELECT NULL, {literal(f'no price for {c.model}')})"
    tokens = (
        "SELECT results, CASE WHEN results > 0 THEN 1.0 * prompt / results END AS p, "
        "CASE WHEN results > 0 THEN 1.0 * output / results END AS o FROM (SELECT "
        "coalesce(sum(results), 0) AS results, coalesce(sum(prompt_tokens), 0) AS prompt, "
        f"coalesce(sum(output_tokens), 0) AS output FROM token_usage WHERE model = {model})"
    )
    prompt = f"CASE WHEN results > 0 THEN {_half_even('p')} ELSE {c.default_prompt_tokens} END"
    output = f"CASE WHEN results > 0 THEN {_half_even('o')} ELSE {c.default_output_tokens} END"
    unit_in, unit_out = (number(v) for v in c.price)
    cost = (
        f"(({prompt}) * {unit_in} + ({output}) * {unit_out}) / 1e6 "
        f"* (1 - {number(c.batch_discount)})"
    )
    defaults = f"the estimator's defaults (no result of {c.model} billed yet)"
    basis = (
        f"CASE WHEN results > 0 THEN 'the mean billed over ' || printf('%,d', results) || "
        f"{literal(f' results of {c.model}')} ELSE {literal(defaults)} END"
    )
    return f"per_page(cost, basis) AS (SELECT {cost}, {basis} FROM ({tokens}))"


def _rates_sql(now: str) -> str:
    """``clock`` (now, and its hour buckets) and ``rates`` (pages written per hour over the last
    hour and the last day, as ``rules.progress.rate_per_hour``: the oldest hour in proportion to
    the part of it within the window) from ``hourly_activity``."""
    bucket = "'%Y-%m-%dT%H'"
    return (
        f"clock AS MATERIALIZED (SELECT now, strftime({bucket}, now) AS cur, "
        f"strftime({bucket}, now, '-1 hours') AS lo1, strftime({bucket}, now, '-24 hours') "
        "AS lo24, (julianday(now) - julianday(strftime('%Y-%m-%dT%H:00:00', now))) * 24 "
        f"AS frac FROM (SELECT {now} AS now)), "
        "hours AS (SELECT hour, sum(written) AS written FROM hourly_activity, clock "
        "WHERE hour >= lo24 AND hour <= cur GROUP BY hour), "
        "rates AS (SELECT ((SELECT coalesce(sum(written), 0) FROM hours, clock WHERE hour > lo1) "
        "+ coalesce((SELECT written FROM hours, clock WHERE hour = lo1), 0) * (1 - frac)) "
        "AS last_hour, ((SELECT coalesce(sum(written), 0) FROM hours, clock WHERE hour > lo24) "
        "+ coalesce((SELECT written FROM hours, clock WHERE hour = lo24), 0) * (1 - frac)) "
        "/ 24.0 AS last_day FROM clock)"
    )


def progress_sql(now: str, pricing: Pricing, page: PageCost | None, currency: str) -> str:
    """``status``'s progress (:class:`commands.rules.progress.Progress`'s fields, by name) as of
    ``now`` (an SQL expression of a stored timestamp's text), in one statement over the same
    texts ``status`` runs (:data:`queries.STATUS_COUNTS_SQL`, :data:`queries.FAILING_BY_COUNT_SQL`,
    :data:`DATASET_TOTAL_SQL`) and a few rows of ``hourly_activity``; the rates, the expected
    finish and the cost to go computed as :mod:`commands.rules.progress` computes them. Then the
    log's last event (``events``, ``last_event_at``) and ``as_of`` (now)."""
    return (
        f"WITH {_rates_sql(now)}, counts AS ({queries.STATUS_COUNTS_SQL}), "
        f"known(pages, counted_at) AS ({DATASET_TOTAL_SQL}), "
        f"retrying(n) AS (SELECT coalesce(sum(records), 0) FROM ({queries.FAILING_BY_COUNT_SQL})), "
        f"spend AS ({spend_total_sql(pricing)}), {_per_page_sql(page)}, "
        "last(seq, ts) AS (SELECT seq, ts FROM events ORDER BY seq DESC LIMIT 1), "
        "job AS (SELECT known.pages AS known, known.counted_at, c.written, c.in_flight, "
        "retrying.n AS retrying, c.dead_letters, c.rejected_inputs, "
        "max(0, known.pages - c.written - c.dead_letters) AS to_go, rates.last_hour, "
        "rates.last_day, CASE WHEN rates.last_day != 0 THEN rates.last_day "
        "ELSE rates.last_hour END AS per_hour, clock.now "
        "FROM known, counts c, retrying, rates, clock), "
        "finish AS (SELECT CASE WHEN to_go <= 0 THEN 0.0 WHEN per_hour <= 0 THEN NULL "
        "ELSE to_go / per_hour END AS hours FROM job) "
        "SELECT known, counted_at, written, in_flight, retrying, dead_letters, rejected_inputs, "
        "to_go, CASE WHEN known > 0 THEN round(100.0 * written / known, 2) END AS percent_done, "
        "round(last_hour, 1) AS pages_per_hour_last_hour, "
        "round(last_day, 1) AS pages_per_hour_last_day, "
        "CASE WHEN to_go > 0 AND per_hour > 0 THEN strftime('%Y-%m-%dT%H:%M:%SZ', "
        "julianday(now) + finish.hours / 24.0) END AS expected_finish, "
        f"round(finish.hours, 2) AS hours_to_go, {literal(currency)} AS currency, "
        "spend.cost AS spend, spend.wasted_cost AS wasted, "
        "round(per_page.cost * to_go, 4) AS cost_to_go, per_page.basis AS cost_basis, "
        "coalesce(last.seq, 0) AS events, last.ts AS last_event_at, now AS as_of "
        "FROM job, finish, spend, per_page LEFT JOIN last ON 1"
    )
