"""The log's timestamp text: pure (no clock, no I/O), so the pure rules can read and write it."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["TS_FORMAT", "format_ts", "hours_between", "parse_ts"]

TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(moment: datetime) -> str:
    """Fixed-width UTC ISO 8601 with microseconds, so string order is time order."""
    return moment.astimezone(UTC).strftime(TS_FORMAT)


def parse_ts(ts: str) -> datetime:
    """A stored timestamp (:func:`format_ts`'s text) as an aware UTC datetime."""
    return datetime.strptime(ts, TS_FORMAT).replace(tzinfo=UTC)


def hours_between(ts: str, now: datetime) -> float:
    """Hours from the stored timestamp ``ts`` to ``now`` (a naive ``now`` is taken as UTC)."""
    then = parse_ts(ts)
    if now.tzinfo is None:
        then = then.replace(tzinfo=None)
    return (now - then).total_seconds() / 3600
