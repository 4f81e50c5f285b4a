"""A record key's year and page are stored as signed 64-bit integers (SQLite's INTEGER,
PostgreSQL's BIGINT): on every backend the edge is stored as it is, a key past it (one a log
written before the scanner refused them may hold) folds with no year or page instead of failing
the append, and reset-failures refuses year bounds past it in one line, the log unchanged."""

from __future__ import annotations

import pytest

from commands.actions.reset_failures import reset_failures
from eventlog.errors import OperatorError
from eventlog.events import RecordFailed, ResetFilter, UploadAbandoned
from projections import verify
from tests.backends import StoreFactory

#: The largest signed 64-bit integer.
MAX_NUMBER = 2**63 - 1

EDGE = f"S:X:{MAX_NUMBER}:{MAX_NUMBER}"
PAST = f"S:X:{'9' * 20}:{'9' * 20}"


def _failed(key: str) -> RecordFailed:
    return RecordFailed(
        record_key=key, batch_id="batches/b", error_type="invalid_json", message="m"
    )


def test_the_edge_is_stored_and_a_key_past_it_folds_without_numbers(
    store_factory: StoreFactory,
) -> None:
    store = store_factory()
    store.append(
        [_failed(EDGE), UploadAbandoned(record_key=EDGE, attempts=1, message="m")], actor="t"
    )
    store.append(
        [_failed(PAST), UploadAbandoned(record_key=PAST, attempts=1, message="m")], actor="t"
    )
    counts = {
        k: (y, p) for k, y, p in store.query("SELECT record_key, year, page FROM failure_counts")
    }
    assert counts == {EDGE: (MAX_NUMBER, MAX_NUMBER), PAST: (None, None)}
    logs = {k: (y, p) for k, y, p in store.query("SELECT record_key, year, page FROM failure_logs")}
    assert logs == counts
    budget = dict(store.query("SELECT record_key, year FROM upload_budget"))
    assert budget == {EDGE: MAX_NUMBER, PAST: None}
    assert verify(store) is None


@pytest.mark.parametrize(
    ("f", "flag"),
    [
        (ResetFilter(year_start=MAX_NUMBER + 1), "--year-start"),
        (ResetFilter(year_end=10**20), "--year-end"),
        (ResetFilter(year_start=-1), "--year-start"),
    ],
)
def test_reset_refuses_year_bounds_past_the_edge(
    store_factory: StoreFactory, f: ResetFilter, flag: str
) -> None:
    store = store_factory()
    store.append([_failed(EDGE)], actor="t")
    last = store.last_seq()
    with pytest.raises(
        OperatorError, match=f"^{flag} .* is not a year: a year is 0 to {MAX_NUMBER}$"
    ):
        reset_failures(store, f, actor="operator:t")
    assert store.last_seq() == last
    # The edge itself is a year bound like any other.
    done = reset_failures(store, ResetFilter(year_start=MAX_NUMBER), actor="operator:t")
    assert [m.record_key for m in done] == [EDGE]
