"""Pieces of SQL text the dashboard's queries are built from (SQLite's dialect: Datasette reads
SQLite only). Datasette binds no hidden parameters, so what the config decides is written into
the text as literals: numbers by ``repr`` of pydantic-checked floats and ints, names through
:func:`literal`."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["MIN_DAYS", "NOW", "days_cte", "html_text", "literal", "number", "table_sql"]

#: Now, as the log writes timestamps (UTC, ISO 8601 with ``Z``; milliseconds are enough here).
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


#: At least this many days in a per-day chart (zero-filled: one busy day is a narrow bar among
#: empty days, never a full-width block), at most DAYS_SHOWN (Datasette returns 1,000 rows).
MIN_DAYS, DAYS_SHOWN = 14, 400


def days_cte(now: str, first_day: str) -> str:
    """``clock(today)`` and ``span(day)`` (needs ``WITH RECURSIVE``): each UTC day from
    ``first_day`` (an SQL expression over ``clock``; NULL: today) to ``now``'s, newest first,
    at least :data:`MIN_DAYS` of them and at most :data:`DAYS_SHOWN`."""
    return (
        f"clock AS MATERIALIZED (SELECT date({now}) AS today), "
        f"first(day) AS (SELECT min(coalesce({first_day}, today), "
        f"date(today, '-{MIN_DAYS - 1} days')) FROM clock), "
        "span(day) AS (SELECT today FROM clock UNION ALL SELECT date(s.day, '-1 days') "
        f"FROM span s, first f WHERE s.day > f.day LIMIT {DAYS_SHOWN})"
    )


def literal(value: str) -> str:
    """``value`` as an SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def number(value: float) -> str:
    """``value`` as an SQL number literal (exactly the float: ``repr``)."""
    return repr(float(value))


def html_text(column: str) -> str:
    """``column`` as text safe inside HTML (``&``, ``<``, ``>`` and quotes escaped), NULL as ''.

    datasette-dashboards' table cards set each cell with ``innerHTML``: an error message or a
    model's excerpt must not become markup there."""
    out = f"coalesce(CAST({column} AS TEXT), '')"
    for raw, entity in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;")):
        out = f"replace({out}, '{raw}', '{entity}')"
    return f"replace({out}, '''', '&#39;')"


def table_sql(
    sql: str, columns: Sequence[str], text: Sequence[str], none: str, *, rows: int, clip: int = 240
) -> str:
    """The first ``rows`` rows of ``sql`` (its ``columns``, in its order) for a table card: the
    ``text`` columns clipped to ``clip`` characters and escaped (:func:`html_text`), and one row
    saying ``none`` when there are no rows (the card's script draws nothing for an empty
    answer, not even its header)."""
    shown = ", ".join(f"{html_text(_clipped(c, clip))} AS {c}" if c in text else c for c in columns)
    blanks = ", ".join(
        f"{literal(none) if i == 0 else literal('')} AS {c}" for i, c in enumerate(columns)
    )
    return (
        f"WITH shown AS ({sql}) SELECT * FROM (SELECT {shown} FROM shown LIMIT {int(rows)}) "
        f"UNION ALL SELECT {blanks} WHERE NOT EXISTS (SELECT 1 FROM shown)"
    )


def _clipped(column: str, clip: int) -> str:
    return (
        f"CASE WHEN length({column}) > {int(clip)} "
        f"THEN substr({column}, 1, {int(clip) - 1}) || '…' ELSE {column} END"
    )
