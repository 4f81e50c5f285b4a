"""``record_status``: where each record the log has named stands now.

``status`` is one of ``reserved`` (held by a submission intent), ``inflight`` (in an active batch),
``written`` (output validated and written), ``failed`` (will be retried), ``dead_lettered``
(reached ``max_retries``; skipped until a reset) and ``pending`` (freed by a failed or cleared
batch, or by a reset). A page the log never named is pending too: it has no row. For a reserved
record ``batch_id`` holds the intent's display name.

Every change of a record's status goes through :func:`_set`, which keeps ``record_counts`` (the
records per status) in step, in the same transaction.
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
    FailuresReset,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
)
from eventlog.states import HELD_STATUSES
from eventlog.states import RecordStatus as Status
from eventlog.store import Recorded
from projections import inflight_records, record_counts
from projections.tables import Tables, TableSpec


class RecordStatus(msgspec.Struct, array_like=True, gc=False):
    record_key: str
    status: str
    batch_id: str
    last_error_type: str
    updated_seq: int
    updated_at: str


SPEC = TableSpec(
    "record_status", RecordStatus, pk=("record_key",), prefetch=("record_key", "record_keys")
)


def _set(
    t: Tables,
    rec: Recorded,
    key: str,
    status: str,
    batch_id: str | None = None,
    error_type: str | None = None,
) -> None:
    old = t.get(SPEC, (key,))
    t.put(
        SPEC,
        RecordStatus(
            key,
            status,
            batch_id if batch_id is not None else (old.batch_id if old else ""),
            error_type if error_type is not None else (old.last_error_type if old else ""),
            rec.seq,
            rec.ts,
        ),
    )
    record_counts.moved(t, old.status if old is not None else None, status)


def _free_batch(t: Tables, rec: Recorded, batch_id: str) -> None:
    """Records still held by a batch (or an intent's display name) go back to pending. They are
    exactly its ``inflight_records`` rows, which this projection reads before that one folds the
    same event: a handful, never the whole batch."""
    held = t.find(inflight_records.SPEC, "batch_id", batch_id) + [
        r for r in t.find(inflight_records.SPEC, "display_name", batch_id) if r.batch_id is None
    ]
    for row in held:
        status = t.get(SPEC, (row.record_key,))
        if status is not None and status.status in HELD_STATUSES and status.batch_id == batch_id:
            _set(t, rec, row.record_key, Status.PENDING)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionIntended, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        _set(t, rec, key, Status.RESERVED, batch_id=e.display_name)


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        _set(t, rec, key, Status.INFLIGHT, batch_id=e.batch_id)


@apply.register(BatchSubmissionAbandoned)
@apply.register(BatchSubmissionDeferred)
def _(e: BatchSubmissionAbandoned | BatchSubmissionDeferred, t: Tables, rec: Recorded) -> None:
    _free_batch(t, rec, e.display_name)


@apply.register
def _(e: RecordValidated, t: Tables, rec: Recorded) -> None:
    _set(t, rec, e.record_key, Status.WRITTEN, batch_id=e.batch_id)


@apply.register
def _(e: RecordFailed, t: Tables, rec: Recorded) -> None:
    _set(t, rec, e.record_key, Status.FAILED, batch_id=e.batch_id, error_type=e.error_type)


@apply.register
def _(e: RecordDeadLettered, t: Tables, rec: Recorded) -> None:
    _set(t, rec, e.record_key, Status.DEAD_LETTERED)


@apply.register(BatchCompleted)
@apply.register(BatchFailed)
@apply.register(BatchCleared)
@apply.register(BatchResultsUnavailable)
def _(
    e: BatchCompleted | BatchFailed | BatchCleared | BatchResultsUnavailable,
    t: Tables,
    rec: Recorded,
) -> None:
    _free_batch(t, rec, e.batch_id)


@apply.register
def _(e: FailuresReset, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        old = t.get(SPEC, (key,))
        if old is not None and old.status in (Status.FAILED, Status.DEAD_LETTERED):
            _set(t, rec, key, Status.PENDING)
