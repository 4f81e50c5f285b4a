"""``batch_partitions``: the dataset partition of each submission made by a shared-mode worker
(its intent's ``partition``), by display name, with the batch id once the service gave one. The
holder of a partition's lease is the one worker that reconciles, polls, collects, watches and
cleans up after that partition's batches."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import BatchSubmissionIntended, BatchSubmitted, Event
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class BatchPartition(msgspec.Struct, array_like=True, gc=False):
    display_name: str
    partition: str
    batch_id: str = ""


SPEC = TableSpec("batch_partitions", BatchPartition, pk=("display_name",), indexes=("batch_id",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionIntended, t: Tables, rec: Recorded) -> None:
    if e.partition:
        t.put(SPEC, BatchPartition(e.display_name, e.partition))


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.display_name,))
    if row is not None:
        t.put(SPEC, msgspec.structs.replace(row, batch_id=e.batch_id))
