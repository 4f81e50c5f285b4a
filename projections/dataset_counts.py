"""``dataset_counts``: the pages the scan last found in each ``State/School`` folder of the input
tree, so the job's size (pages known) and its progress are read from the log, not from a walk.

The scanner appends a ``PagesCounted`` only when a folder's count changed (a folder gone is
counted 0 and its row removed).
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event, PagesCounted
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class DatasetCount(msgspec.Struct, array_like=True, gc=False):
    state: str
    school: str
    path: str
    pages: int
    counted_seq: int
    counted_at: str


SPEC = TableSpec("dataset_counts", DatasetCount, pk=("state", "school"))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: PagesCounted, t: Tables, rec: Recorded) -> None:
    if e.pages:
        t.put(SPEC, DatasetCount(e.state, e.school, e.path, e.pages, rec.seq, rec.ts))
    else:
        t.delete(SPEC, (e.state, e.school))
