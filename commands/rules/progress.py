"""How far along a job is, and when it should finish (pure): rates from the hourly buckets of
``hourly_activity``, the expected finish at the recent rate, the cost of the pages to go.

A bucket is one UTC hour (``YYYY-MM-DDTHH``). The rate over the last hour counts the current
hour's pages and the previous hour's in proportion to the part of it that is within the last 60
minutes; the rate over the last day likewise over 24 hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

__all__ = ["Progress", "expected_finish", "rate_per_hour"]


class Progress(msgspec.Struct, frozen=True):
    """The job's progress as ``status``, the report and the dashboard show it."""

    #: Pages the last scans found (page files and document pages), and when the newest was.
    known: int
    counted_at: str | None
    written: int
    in_flight: int
    retrying: int
    dead_letters: int
    rejected_inputs: int
    #: known - written - dead letters (in flight and retrying included); never below 0.
    to_go: int
    #: written / known, in percent (None before a scan counted anything).
    percent_done: float | None
    pages_per_hour_last_hour: float
    pages_per_hour_last_day: float
    #: At the last day's rate (the last hour's when the day has none); None when nothing moves.
    expected_finish: str | None
    hours_to_go: float | None
    currency: str
    spend: float | None
    wasted: float | None
    #: The pages to go at the mean billed per page so far (the estimator's defaults before any).
    cost_to_go: float | None
    cost_basis: str


def hour_start(now: datetime) -> datetime:
    return now.replace(minute=0, second=0, microsecond=0)


def bucket(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H")


def rate_per_hour(written: dict[str, int], now: datetime, hours: int) -> float:
    """Pages per hour over the ``hours`` before ``now``, from pages ``written`` per hour bucket."""
    start = hour_start(now)
    into = (now - start).total_seconds() / 3600  # of the current hour
    total = float(written.get(bucket(start), 0))
    for back in range(1, hours):
        total += written.get(bucket(start - timedelta(hours=back)), 0)
    total += written.get(bucket(start - timedelta(hours=hours)), 0) * (1 - into)
    return total / hours


def expected_finish(to_go: int, per_hour: float, now: datetime) -> tuple[str | None, float | None]:
    """When ``to_go`` pages are done at ``per_hour`` (ISO, UTC) and the hours until then; no
    time when nothing is left (0 hours), the rate is 0 (nothing moves: none can be told), or the
    time is past the calendar's last year, 9999 (ten million pages at a page a day)."""
    if to_go <= 0:
        return None, 0.0
    if per_hour <= 0:
        return None, None
    hours = to_go / per_hour
    try:
        return (now + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ"), round(hours, 2)
    except OverflowError:
        return None, round(hours, 2)
