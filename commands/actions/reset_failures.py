"""``reset-failures``: clear failure counts so the scanner treats the records as fresh candidates.

The decision is made and appended in one write transaction, so a failure counted by a concurrent
run either lands before the reset (and is reset) or after it (and counts towards the new budget).
"""

from __future__ import annotations

from collections.abc import Iterator

import msgspec

from eventlog.errors import NothingMatched, OperatorError
from eventlog.events import Event, FailuresReset, ResetFilter
from eventlog.store import EventStore
from projections import queries

#: Keys per ``FailuresReset`` event; a reset of a million records is a few hundred events, all in
#: one transaction.
KEYS_PER_EVENT = 5_000


class Matched(msgspec.Struct, frozen=True):
    record_key: str
    count: int
    last_error_type: str


def validate_filter(f: ResetFilter) -> None:
    """Refuse a filter that is empty or contradictory, naming the flag."""
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
    if f.year_start is not None and f.year_end is not None and f.year_start > f.year_end:
        raise OperatorError(f"--year-start {f.year_start} is after --year-end {f.year_end}")


def select(store: EventStore, f: ResetFilter) -> list[Matched]:
    """The failure counts the filter matches, and the pages given up on (their uploads) it
    matches (count 0, ``upload_given_up``), in record-key order (read-only; runs in the caller's
    transaction)."""
    matched = [
        Matched(c.record_key, c.count, c.last_error_type)
        for c in queries.failure_counts_matching(store, f)
    ]
    counted = {m.record_key for m in matched}
    matched += [
        Matched(key, 0, "upload_given_up")
        for key in queries.given_up_uploads_matching(store, f)
        if key not in counted
    ]
    return sorted(matched, key=lambda m: m.record_key)


def decide(f: ResetFilter, keys: list[str]) -> list[Event]:
    """The events a reset of ``keys`` appends (pure)."""
    if not keys:
        raise NothingMatched(f"no failure counts match {f.describe()}: nothing to reset")
    return [FailuresReset(filter=f, record_keys=chunk) for chunk in _chunks(keys, KEYS_PER_EVENT)]


def _chunks(keys: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(keys), size):
        yield keys[i : i + size]


def reset_failures(
    store: EventStore, f: ResetFilter, *, actor: str, dry_run: bool = False
) -> list[Matched]:
    """Reset the matching failure counts (or with ``dry_run`` only list them); atomic.

    Raises :class:`NothingMatched` when the filter matches nothing; the log is then unchanged.
    """
    validate_filter(f)
    if dry_run:
        with store.snapshot():
            matched = select(store, f)
        decide(f, [m.record_key for m in matched])
        return matched
    with store.write() as w:
        matched = select(store, f)
        w.append(decide(f, [m.record_key for m in matched]), actor=actor)
    return matched
