"""``active_batches``: the batches the service is working on (one row each until it ends), with
the service's request counts (``batchStats``) as last polled: 0 until a poll reports them."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    BatchCleared,
    BatchCompleted,
    BatchFailed,
    BatchProgressObserved,
    BatchResultsUnavailable,
    BatchStateObserved,
    BatchSubmitted,
    BatchSucceeded,
    Event,
)
from eventlog.states import JobState
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class ActiveBatch(msgspec.Struct, array_like=True, gc=False):
    batch_id: str
    display_name: str
    model: str
    state: str
    record_count: int
    submitted_seq: int
    submitted_at: str
    updated_at: str
    #: The service's ``batchStats``: requests answered, failed and not yet run.
    succeeded: int = 0
    failed: int = 0
    pending: int = 0
    #: ``inline``, ``file_api`` or ``mixed``: how the batch's images travelled.
    transport: str = "file_api"
    #: Tokens estimated for the batch before it went (0: not estimated).
    estimated_tokens: int = 0
    #: The project (API key) the batch belongs to: polled, downloaded, cancelled with its key.
    project: str = DEFAULT_PROJECT


SPEC = TableSpec(
    "active_batches",
    ActiveBatch,
    pk=("batch_id",),
    refuse_hint=(
        "to clear a stuck batch run `python -m commands clear-batch <batch_id>` "
        "(it records who and why, frees its records, and keeps the tables in step with the log)"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    t.put(
        SPEC,
        ActiveBatch(
            e.batch_id,
            e.display_name,
            e.model,
            e.state,
            len(e.record_keys),
            rec.seq,
            rec.ts,
            rec.ts,
            transport=e.transport,
            estimated_tokens=e.estimated_tokens,
            project=e.project,
        ),
    )


@apply.register(BatchStateObserved)
@apply.register(BatchSucceeded)
def _(e: BatchStateObserved | BatchSucceeded, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.batch_id,))
    if row is not None:
        state = e.state if isinstance(e, BatchStateObserved) else e.state or JobState.SUCCEEDED
        t.put(SPEC, msgspec.structs.replace(row, state=state, updated_at=rec.ts))


@apply.register
def _(e: BatchProgressObserved, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.batch_id,))
    if row is not None:
        t.put(
            SPEC,
            msgspec.structs.replace(
                row, succeeded=e.succeeded, failed=e.failed, pending=e.pending, updated_at=rec.ts
            ),
        )


@apply.register(BatchCompleted)
@apply.register(BatchFailed)
@apply.register(BatchCleared)
@apply.register(BatchResultsUnavailable)
def _(
    e: BatchCompleted | BatchFailed | BatchCleared | BatchResultsUnavailable,
    t: Tables,
    rec: Recorded,
) -> None:
    t.delete(SPEC, (e.batch_id,))
