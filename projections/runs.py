"""``runs``: each worker run, where its events start and end in the log, and how it ended."""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, RunFinished, RunStarted
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class Run(msgspec.Struct, array_like=True, gc=False):
    run_id: str
    command: str
    started_seq: int
    started_at: str
    finished_seq: int | None
    finished_at: str | None
    outcome: str | None
    message: str


SPEC = TableSpec("runs", Run, pk=("run_id",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: RunStarted, t: Tables, rec: Recorded) -> None:
    t.put(SPEC, Run(e.run_id, e.command, rec.seq, rec.ts, None, None, None, ""))


@apply.register
def _(e: RunFinished, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (e.run_id,))
    if row is not None:
        t.put(
            SPEC,
            msgspec.structs.replace(
                row, finished_seq=rec.seq, finished_at=rec.ts, outcome=e.outcome, message=e.message
            ),
        )
