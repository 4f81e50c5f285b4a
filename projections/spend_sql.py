"""Money in SQL: tokens times ``[pricing]``'s per-model prices with the batch discount, as
``commands.rules.cost`` computes it in Python for ``status`` (a model priced by its own entry,
else by the longest entry naming it as a prefix followed by ``-``; an empty model is the
configured one; ``models/`` is not part of a name; a model without a price makes the total NULL,
as ``status`` says "cost unknown").

Spend per day reads ``hourly_activity`` (a day is its 24 rows summed), never the log.
"""

from __future__ import annotations

import msgspec

from projections.sql_text import days_cte, literal, number

__all__ = ["Pricing", "spend_per_day_sql", "spend_sql", "spend_total_sql"]


class Pricing(msgspec.Struct, frozen=True):
    """What the spend queries need from ``[pricing]``: (model, input, output) per million tokens
    at list price, the batch discount, and the model rows without one are priced as."""

    prices: list[tuple[str, float, float]]
    batch_discount: float
    default_model: str


def prices_cte(p: Pricing) -> str:
    """``prices(model, input_per_million, output_per_million)``."""
    rows = ", ".join(f"({literal(m)}, {number(i)}, {number(o)})" for m, i, o in sorted(p.prices))
    values = f"VALUES {rows}" if rows else "SELECT '', 0.0, 0.0 WHERE 0"
    return f"prices(model, input_per_million, output_per_million) AS ({values})"


def priced_name(column: str, p: Pricing) -> str:
    """The name a row's model is priced under (``PricingConfig.price``'s: no ``models/``)."""
    default = p.default_model.removeprefix("models/")
    return (
        f"CASE WHEN {column} = '' THEN {literal(default)} "
        f"WHEN substr({column}, 1, 7) = 'models/' THEN substr({column}, 8) ELSE {column} END"
    )


def price_entry(name: str) -> str:
    """The ``prices`` entry that prices the model named ``name`` (an expression): its own, else
    the longest naming it as a prefix followed by ``-``; NULL when none does. (Its own is the
    longest that matches; SQLite 3.40 cannot order a subquery by an outer column.)"""
    return (
        f"(SELECT q.model FROM prices q WHERE q.model = {name} "
        f"OR substr({name}, 1, length(q.model) + 1) = q.model || '-' "
        "ORDER BY length(q.model) DESC LIMIT 1)"
    )


def _cost(prompt: str, output: str, p: Pricing) -> str:
    """What ``prompt`` + ``output`` tokens cost at the row's price (``usage``'s columns), as
    ``token_cost`` computes it."""
    return (
        f"(({prompt}) * input_per_million + ({output}) * output_per_million) / 1e6 "
        f"* (1 - {number(p.batch_discount)})"
    )


#: The token columns of ``token_usage`` and ``hourly_activity`` the spend reads.
_TOKENS = "results, prompt_tokens, output_tokens, failed_prompt_tokens, failed_output_tokens"


def _usage_cte(p: Pricing, source: str, keys: str) -> str:
    """``usage``: ``source``'s ``keys`` and tokens, with the ``prices`` row of their model
    (``price`` is NULL for a model without one)."""
    named = f"SELECT *, {priced_name('model', p)} AS priced FROM {source}"
    matched = f"SELECT *, {price_entry('priced')} AS entry FROM ({named})"
    return (
        f"usage AS (SELECT {keys}, {_TOKENS}, pr.model AS price, pr.input_per_million, "
        f"pr.output_per_million FROM ({matched}) LEFT JOIN prices pr ON pr.model = entry)"
    )


def spend_sql(p: Pricing, group: tuple[str, ...]) -> str:
    """Spend per ``group`` columns of ``token_usage`` (``model`` is the priced name); cost is
    NULL for a model without a price."""
    keys = ", ".join(k if k != "model" else "priced AS model" for k in group)
    names = ", ".join(group)
    return (
        f"WITH {prices_cte(p)}, {_usage_cte(p, 'token_usage', keys + ', failed_results')} "
        f"SELECT {names}, sum(results) AS results, sum(prompt_tokens) AS prompt_tokens, "
        "sum(output_tokens) AS output_tokens, sum(failed_results) AS failed_results, "
        f"sum({_cost('prompt_tokens', 'output_tokens', p)}) AS cost, "
        f"sum({_cost('failed_prompt_tokens', 'failed_output_tokens', p)}) AS wasted_cost "
        f"FROM usage GROUP BY {names} ORDER BY {names}"
    )


def spend_total_sql(p: Pricing) -> str:
    """``status``'s spend total: ``cost`` and ``wasted_cost`` over every run and model (NULL when
    a model has no price), and the tokens."""
    return (
        f"WITH {prices_cte(p)}, {_usage_cte(p, 'token_usage', 'priced')} "
        "SELECT CASE WHEN count(price) = count(*) THEN "
        f"coalesce(sum({_cost('prompt_tokens', 'output_tokens', p)}), 0.0) END AS cost, "
        "CASE WHEN count(price) = count(*) THEN "
        f"coalesce(sum({_cost('failed_prompt_tokens', 'failed_output_tokens', p)}), 0.0) "
        "END AS wasted_cost, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
        "coalesce(sum(output_tokens), 0) AS output_tokens FROM usage"
    )


def spend_per_day_sql(p: Pricing, now: str) -> str:
    """Per UTC day (newest first; 0 for a quiet day, :func:`days_cte`'s span), what the answers
    cost and what of it was wasted on answers that failed validation, from ``hourly_activity``
    (a day is its 24 rows summed): a ``kind`` row each (``answers kept``: cost - wasted;
    ``wasted on failed answers``), for a stacked chart whose bars are the spend."""
    source = "(SELECT substr(hour, 1, 10) AS day, * FROM hourly_activity)"
    per_day = (
        f"per_day AS (SELECT day, sum({_cost('prompt_tokens', 'output_tokens', p)}) AS cost, "
        f"sum({_cost('failed_prompt_tokens', 'failed_output_tokens', p)}) AS wasted "
        "FROM usage GROUP BY day)"
    )
    days = (
        "days AS (SELECT s.day, coalesce(d.cost, 0.0) AS cost, coalesce(d.wasted, 0.0) AS wasted "
        "FROM span s LEFT JOIN per_day d ON d.day = s.day)"
    )
    return (
        f"WITH RECURSIVE {prices_cte(p)}, {_usage_cte(p, source, 'day')}, {per_day}, "
        f"{days_cte(now, '(SELECT min(day) FROM per_day)')}, {days} "
        "SELECT day || 'T00:00:00Z' AS day, 'answers kept' AS kind, "
        "round(cost - wasted, 6) AS cost FROM days "
        "UNION ALL SELECT day || 'T00:00:00Z', 'wasted on failed answers', round(wasted, 6) "
        "FROM days ORDER BY day DESC, kind"
    )
