"""The dashboard page's cards: a Vega-Lite chart or a table card per panel, each reading the text
of a canned query (:func:`projections.dashboard_sql.chart_queries`), and the grid they sit in.

Charts that read right: time on a UTC axis whose ticks fall on whole hours or days (a label is
never repeated), a bar per hour or day among zero-filled neighbours (one busy hour is a narrow
bar, not a full-width block), a legend wherever colour means something, and every bar's number
written beside it (a zero is still seen). SVG, not canvas: marks a screen reader and the browser
test can read.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LAYOUT", "STUCK_FILTER", "cards"]

#: The dashboard's filter (datasette-dashboards binds it to ``:stuck_after`` in the queries).
STUCK_FILTER = "stuck_after"

#: The grid: each row names the cards in it (a name repeated spans columns).
LAYOUT = [
    ["progress"] * 8,
    ["stuck"] * 8,
    ["pages_written_per_hour"] * 4 + ["pages_by_status"] * 4,
    ["pages_written_per_day"] * 4 + ["failures_per_hour"] * 4,
    ["latest_failures"] * 8,
    ["dead_letters"] * 8,
    ["failures_in_pages_by_state"] * 3
    + ["failures_in_pages_by_error_type"] * 2
    + ["failures_in_pages_by_school"] * 3,
    ["spend_per_day"] * 8,
]

_SVG = {"embedOptions": {"renderer": "svg", "actions": False}}
_LEGEND = {"orient": "bottom", "title": None}


def _spec(height: int, **spec: Any) -> dict[str, Any]:
    return {"height": height, "usermeta": _SVG, **spec}


def _time(field: str, unit: str, title: str, label: str) -> dict[str, Any]:
    """A UTC time axis with a tick on each whole ``unit`` (vega-time's ``hours`` or ``day``):
    labels that would overlap are dropped, none is repeated."""
    return {
        "field": field,
        "type": "temporal",
        "timeUnit": "utcyearmonthdatehours" if unit == "hours" else "utcyearmonthdate",
        "title": title,
        "axis": {
            "format": label,
            "labelOverlap": "greedy",
            "labelSeparation": 12,
            "tickCount": {"interval": unit, "step": 1},
            "grid": False,
        },
    }


def _quantity(field: str, title: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "type": "quantitative", "title": title, **extra}


def _bars_in_time(x: dict[str, Any], y: dict[str, Any], kind: str | None) -> dict[str, Any]:
    encoding: dict[str, Any] = {"x": x, "y": y}
    if kind is not None:
        encoding["color"] = {"field": kind, "type": "nominal", "legend": _LEGEND}
    return _spec(200, mark={"type": "bar", "tooltip": True}, encoding=encoding)


def _labelled_bars(category: dict[str, Any], label: str, color: bool) -> dict[str, Any]:
    """Horizontal bars of ``pages`` per ``category``, each with ``label`` written beside it."""
    bar: dict[str, Any] = {"mark": {"type": "bar", "tooltip": True}}
    if color:
        bar["encoding"] = {"color": {**category, "legend": _LEGEND}}
    return _spec(
        200,
        transform=[{"calculate": label, "as": "label"}],
        encoding={"y": {**category, "title": None}, "x": _quantity("pages", "pages")},
        layer=[
            bar,
            {
                "mark": {"type": "text", "align": "left", "dx": 4},
                "encoding": {"text": {"field": "label"}},
            },
        ],
    )


def _tiles() -> dict[str, Any]:
    """The progress card: a tile per figure (label above, value, note below)."""
    at = {
        "x": {"field": "col", "type": "ordinal", "axis": None},
        "y": {"field": "row", "type": "ordinal", "axis": None},
    }
    return _spec(
        150,
        encoding=at,
        layer=[
            {
                # The value's mark says the tile in one sentence; label and note are not read
                # out again.
                "mark": {"type": "text", "fontSize": 11, "dy": -20, "color": "#555", "aria": False},
                "encoding": {"text": {"field": "label"}},
            },
            {
                "mark": {"type": "text", "fontSize": 21, "fontWeight": "bold"},
                "encoding": {"text": {"field": "value"}, "description": {"field": "aria"}},
            },
            {
                "mark": {"type": "text", "fontSize": 10, "dy": 19, "color": "#777", "aria": False},
                "encoding": {"text": {"field": "note"}},
            },
        ],
    )


def _charts(currency: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """(title, Vega-Lite spec) of each chart, in the page's order."""
    hour = _time("hour", "hours", "hour (UTC)", "%b %d %H:00")
    day = _time("day", "day", "day (UTC)", "%b %d")
    pages = _quantity("pages", "pages", stack=True)
    in_pages = "format(datum.pages, ',') + ' pages, ' + format(datum.attempts, ',') + ' attempts'"
    return {
        "progress": ("How far along: pages, rate, expected finish, spend", _tiles()),
        "pages_written_per_hour": (
            "Pages written per hour (the last 48 h)",
            _bars_in_time(hour, pages, None),
        ),
        "pages_by_status": (
            "Pages by status (as status counts them)",
            _labelled_bars(
                {"field": "status", "type": "nominal", "sort": {"field": "position"}},
                "format(datum.pages, ',')",
                color=True,
            ),
        ),
        "pages_written_per_day": ("Pages written per day", _bars_in_time(day, pages, None)),
        "failures_per_hour": (
            "Failed attempts and dead letters per hour (the last 48 h)",
            _bars_in_time(hour, pages, "kind"),
        ),
        "failures_in_pages_by_state": (
            "Pages that failed, by state (attempts beside)",
            _labelled_bars({"field": "state", "type": "nominal", "sort": "-x"}, in_pages, False),
        ),
        "failures_in_pages_by_error_type": (
            "Pages that failed, by error type",
            _labelled_bars(
                {"field": "error_type", "type": "nominal", "sort": "-x"}, in_pages, False
            ),
        ),
        "spend_per_day": (
            f"Spend per day ({currency}, estimated; wasted: answers that failed validation)",
            _bars_in_time(day, _quantity("cost", currency, stack=True), "kind"),
        ),
    }


#: Table cards: (title) by canned query.
_TABLES = {
    "stuck": "Is anything stuck? Batches, intents, quota holds, workers, the last event "
    "('stuck': past its threshold; set it above, in minutes)",
    "latest_failures": "What is failing: the latest failures, newest first",
    "dead_letters": "Dead letters, newest first, and the command that resets each",
    "failures_in_pages_by_school": "Pages that failed, by school (attempts beside)",
}


def cards(sql: dict[str, str], db: str, currency: str) -> dict[str, dict[str, Any]]:
    """datasette-dashboards' ``charts``: every card, by name, with its query from ``sql``."""
    out: dict[str, dict[str, Any]] = {}
    for name, (title, spec) in _charts(currency).items():
        out[name] = {
            "title": title,
            "db": db,
            "query": sql[name],
            "library": "vega-lite",
            "display": spec,
        }
    for name, title in _TABLES.items():
        out[name] = {"title": title, "db": db, "query": sql[name], "library": "table"}
    return out
