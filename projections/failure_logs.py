"""``failure_logs``: one row per failed result, kept for analysis (a reset does not erase it).

The primary key is the sequence number of the ``RecordFailed`` event, so a rebuild reproduces the
rows exactly. ``attempt`` is the failure count the record reached with this failure; it is read
from ``failure_counts``, which the projector folds first.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, RecordFailed
from eventlog.keys import parse_key
from eventlog.store import Recorded
from projections import failure_counts
from projections.tables import Tables, TableSpec


class FailureLog(msgspec.Struct, array_like=True, gc=False):
    seq: int
    record_key: str
    state: str
    school: str
    year: int | None
    page: int | None
    batch_id: str
    error_type: str
    message: str
    excerpt: str
    attempt: int
    failed_at: str


SPEC = TableSpec("failure_logs", FailureLog, pk=("seq",), indexes=("record_key",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: RecordFailed, t: Tables, rec: Recorded) -> None:
    counted = t.get(failure_counts.SPEC, (e.record_key,))
    state, school, year, page = parse_key(e.record_key)
    t.put(
        SPEC,
        FailureLog(
            rec.seq,
            e.record_key,
            state,
            school,
            year,
            page,
            e.batch_id,
            e.error_type,
            e.message,
            e.excerpt,
            counted.count if counted else 1,
            rec.ts,
        ),
    )
