"""``batch_record_keys``: which records each active batch holds."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    BatchCleared,
    BatchCompleted,
    BatchFailed,
    BatchResultsUnavailable,
    BatchSubmitted,
    Event,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class BatchRecordKey(msgspec.Struct, array_like=True, gc=False):
    batch_id: str
    record_key: str


SPEC = TableSpec(
    "batch_record_keys",
    BatchRecordKey,
    pk=("batch_id", "record_key"),
    refuse_hint=(
        "to clear a stuck batch run `python -m commands clear-batch <batch_id>` "
        "(it frees the batch's records and keeps the tables in step with the log)"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        t.put(SPEC, BatchRecordKey(e.batch_id, key))


@apply.register(BatchCompleted)
@apply.register(BatchFailed)
@apply.register(BatchCleared)
@apply.register(BatchResultsUnavailable)
def _(
    e: BatchCompleted | BatchFailed | BatchCleared | BatchResultsUnavailable,
    t: Tables,
    rec: Recorded,
) -> None:
    t.delete_where(SPEC, "batch_id", e.batch_id)
