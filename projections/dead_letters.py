"""``dead_letters``: records at ``max_retries`` that the scanner skips until an operator acts.

The same fact as ``record_status.status = 'dead_lettered'``, kept as a small table of its own so
an audit (``replay.py --show dead-letters``) never has to fold the status of every page.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    FailuresReset,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class DeadLetter(msgspec.Struct, array_like=True, gc=False):
    record_key: str
    failures: int
    max_retries: int
    dead_lettered_seq: int
    dead_lettered_at: str


SPEC = TableSpec(
    "dead_letters",
    DeadLetter,
    pk=("record_key",),
    refuse_hint=(
        "to retry dead letters run `python -m commands reset-failures` "
        "(or scripts/clear_failure_counts.py)"
    ),
)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: RecordDeadLettered, t: Tables, rec: Recorded) -> None:
    t.put(SPEC, DeadLetter(e.record_key, e.failures, e.max_retries, rec.seq, rec.ts))


@apply.register(RecordValidated)
@apply.register(RecordFailed)
def _(e: RecordValidated | RecordFailed, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.record_key,))


@apply.register(BatchSubmissionIntended)
@apply.register(BatchSubmitted)
@apply.register(FailuresReset)
def _(
    e: BatchSubmissionIntended | BatchSubmitted | FailuresReset, t: Tables, rec: Recorded
) -> None:
    for key in e.record_keys:
        t.delete(SPEC, (key,))
