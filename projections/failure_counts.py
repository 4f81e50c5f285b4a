"""``failure_counts``: how many times each record has failed since its last reset.

The scanner skips a record whose count has reached ``max_retries`` (a dead letter). The state,
school, year and page columns make operator filters plain parameterised SQL.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, FailuresReset, RecordFailed
from eventlog.keys import parse_key
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class FailureCount(msgspec.Struct, array_like=True, gc=False):
    record_key: str
    state: str
    school: str
    year: int | None
    page: int | None
    count: int
    last_error_type: str
    last_failed_at: str


SPEC = TableSpec(
    "failure_counts",
    FailureCount,
    pk=("record_key",),
    prefetch=("record_key",),
    refuse_hint=(
        "to reset failure counts run `python -m commands reset-failures` "
        "(or scripts/clear_failure_counts.py), which records who and which records"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: RecordFailed, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.record_key,))
    if row is None:
        state, school, year, page = parse_key(e.record_key)
        row = FailureCount(e.record_key, state, school, year, page, 0, "", "")
    t.put(
        SPEC,
        msgspec.structs.replace(
            row, count=row.count + 1, last_error_type=e.error_type, last_failed_at=rec.ts
        ),
    )


@apply.register
def _(e: FailuresReset, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        t.delete(SPEC, (key,))
