"""``inflight_records``: records reserved for an intended batch or held by an active one.

``batch_id`` is NULL while the record is only reserved by a submission intent (the batch has not
been created yet); the scanner never picks a record that has a row here.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    BatchCleared,
    BatchCompleted,
    BatchFailed,
    BatchResultsUnavailable,
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    RecordFailed,
    RecordValidated,
    ResultDiscarded,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class InflightRecord(msgspec.Struct, array_like=True, gc=False):
    record_key: str
    batch_id: str | None
    display_name: str
    since: str


SPEC = TableSpec(
    "inflight_records",
    InflightRecord,
    pk=("record_key",),
    prefetch=("record_key", "record_keys"),
    indexes=("batch_id", "display_name"),
    refuse_hint=(
        "to free the records of a stuck batch run `python -m commands clear-batch <batch_id>` "
        "(it keeps the tables in step with the log)"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionIntended, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        t.put(SPEC, InflightRecord(key, None, e.display_name, rec.ts))


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        t.put(SPEC, InflightRecord(key, e.batch_id, e.display_name, rec.ts))


@apply.register(BatchSubmissionAbandoned)
@apply.register(BatchSubmissionDeferred)
def _(e: BatchSubmissionAbandoned | BatchSubmissionDeferred, t: Tables, rec: Recorded) -> None:
    _free_intent(t, e.display_name)


@apply.register(RecordValidated)
@apply.register(RecordFailed)
@apply.register(ResultDiscarded)
def _(e: RecordValidated | RecordFailed | ResultDiscarded, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.record_key,))
    if row is not None and row.batch_id == e.batch_id:
        t.delete(SPEC, (e.record_key,))


@apply.register(BatchCompleted)
@apply.register(BatchFailed)
@apply.register(BatchResultsUnavailable)
def _(e: BatchCompleted | BatchFailed | BatchResultsUnavailable, t: Tables, rec: Recorded) -> None:
    for row in t.find(SPEC, "batch_id", e.batch_id):
        t.delete(SPEC, (row.record_key,))


@apply.register
def _(e: BatchCleared, t: Tables, rec: Recorded) -> None:
    for row in t.find(SPEC, "batch_id", e.batch_id):
        t.delete(SPEC, (row.record_key,))
    _free_intent(t, e.batch_id)


def _free_intent(t: Tables, display_name: str) -> None:
    for row in t.find(SPEC, "display_name", display_name):
        if row.batch_id is None:
            t.delete(SPEC, (row.record_key,))
