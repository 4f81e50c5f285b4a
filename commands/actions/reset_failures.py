"""``reset-failures``: clear failure counts so the scanner treats the records as fresh candidates.

The decision is made and appended in one write transaction, so a failure counted by a concurrent
run either lands before the reset (and is reset) or after it (and counts towards the new budget).
"""

from __future__ import annotations

import msgspec

from commands.rules.reset_failures import decide, validate_filter
from eventlog.events import ResetFilter
from eventlog.states import RecordStatus
from eventlog.store import EventStore
from projections import queries


class Matched(msgspec.Struct, frozen=True):
    record_key: str
    count: int
    last_error_type: str
    #: Where the page stands (``record_status``; empty if the log never placed it). A written
    #: page's count is history: the reset clears it, and the page is not sent again.
    status: str = ""


def select(store: EventStore, f: ResetFilter) -> list[Matched]:
    """The failure counts the filter matches, and the pages given up on (their uploads) it
    matches (count 0, ``upload_given_up``), in record-key order, each with its status
    (read-only; runs in the caller's transaction)."""
    found = [
        (c.record_key, c.count, c.last_error_type)
        for c in queries.failure_counts_matching(store, f)
    ]
    counted = {key for key, _, _ in found}
    found += [
        (key, 0, "upload_given_up")
        for key in queries.given_up_uploads_matching(store, f)
        if key not in counted
    ]
    statuses = queries.statuses_of(store, [key for key, _, _ in found])
    matched = [Matched(key, n, error, statuses.get(key, "")) for key, n, error in found]
    return sorted(matched, key=lambda m: m.record_key)


def written(matched: list[Matched]) -> int:
    """How many of the matched pages are already written (their counts are history)."""
    return sum(m.status == RecordStatus.WRITTEN for m in matched)


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
