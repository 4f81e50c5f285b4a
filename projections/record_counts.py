"""``record_counts``: how many records stand in each ``record_status`` status, a row per status.

Kept by :mod:`projections.record_status` itself: each status change it writes moves one record
from its old status's row to its new one, in the same transaction, so ``status``'s counts and
the dashboard's progress read a handful of rows instead of counting a row per page (every record
of a ten-million-page job). Its own fold does nothing; it is listed among the projections so
the projector creates, rebuilds and verifies its table.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import Event
from eventlog.store import Recorded
from projections.sql_text import literal
from projections.tables import Tables, TableSpec


class RecordCount(msgspec.Struct, array_like=True, gc=False):
    status: str
    records: int


SPEC = TableSpec("record_counts", RecordCount, pk=("status",))


def records_with(status: str) -> str:
    """SQL of the records in ``status`` (a scalar subquery; both dialects): a row's read, not a
    count of a row per page."""
    return (
        "(SELECT coalesce(CAST(sum(records) AS BIGINT), 0) FROM record_counts "
        f"WHERE status = {literal(status)})"
    )


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """No event touches this table directly: :func:`moved` is called by ``record_status``."""


def moved(t: Tables, old: str | None, new: str) -> None:
    """One record went from status ``old`` (None: the log had not named it) to ``new``; a
    status no record stands in has no row."""
    if old == new:
        return
    if old is not None:
        row = t.get(SPEC, (old,))
        if row is not None and row.records > 1:
            t.put(SPEC, RecordCount(old, row.records - 1))
        else:
            t.delete(SPEC, (old,))
    row = t.get(SPEC, (new,))
    t.put(SPEC, RecordCount(new, (row.records if row is not None else 0) + 1))
