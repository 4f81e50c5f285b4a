"""``rejected_inputs``: files and folders under the input root that cannot be pages, and why.

The scanner appends an ``InputRejected`` only when a path is new here or its reason changed, so
each problem is reported once, however many cycles see it.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, InputRejected, InputRejectionCleared
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class RejectedInput(msgspec.Struct, array_like=True, gc=False):
    path: str
    reason: str
    rejected_seq: int
    rejected_at: str


SPEC = TableSpec("rejected_inputs", RejectedInput, pk=("path",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: InputRejected, t: Tables, rec: Recorded) -> None:
    t.put(SPEC, RejectedInput(e.path, e.reason, rec.seq, rec.ts))


@apply.register
def _(e: InputRejectionCleared, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.path,))
