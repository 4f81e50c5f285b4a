"""``reset-failures``'s decision (pure): which filter is acceptable, and the events a reset of
the matched records appends (:mod:`commands.actions.reset_failures` reads and appends them in
one write transaction)."""

from __future__ import annotations

from collections.abc import Iterator

from eventlog.errors import NothingMatched, OperatorError
from eventlog.events import Event, FailuresReset, ResetFilter
from eventlog.keys import MAX_NUMBER

__all__ = ["KEYS_PER_EVENT", "decide", "validate_filter"]

#: Keys per ``FailuresReset`` event; a reset of a million records is a few hundred events, all in
#: one transaction.
KEYS_PER_EVENT = 5_000


def validate_filter(f: ResetFilter) -> None:
    """Refuse a filter that is empty or contradictory, or a year bound no year can have (below 0
    or past :data:`eventlog.keys.MAX_NUMBER`), naming the flag."""
    has_filter = bool(f.states or f.schools or f.year_start is not None or f.year_end is not None)
    if f.all and has_filter:
        raise OperatorError(
            "--all cannot be combined with --states/--schools/--year-start/--year-end"
        )
    if not f.all and not has_filter:
        raise OperatorError(
            "nothing selected: give --all, or a filter (--states, --schools, --year-start, "
            "--year-end)"
        )
    for flag, year in (("--year-start", f.year_start), ("--year-end", f.year_end)):
        if year is not None and not 0 <= year <= MAX_NUMBER:
            raise OperatorError(f"{flag} {year} is not a year: a year is 0 to {MAX_NUMBER}")
    if f.year_start is not None and f.year_end is not None and f.year_start > f.year_end:
        raise OperatorError(f"--year-start {f.year_start} is after --year-end {f.year_end}")


def decide(f: ResetFilter, keys: list[str]) -> list[Event]:
    """The events a reset of ``keys`` appends (pure)."""
    if not keys:
        raise NothingMatched(f"no failure counts match {f.describe()}: nothing to reset")
    return [FailuresReset(filter=f, record_keys=chunk) for chunk in _chunks(keys, KEYS_PER_EVENT)]


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]
