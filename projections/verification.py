"""``rebuild-projections --verify``: the projections folded again from the whole log, compared
with the live tables row for row, in memory that does not grow with the log.

The log is folded, a group of events at a time, into a scratch SQLite database on disk (beside a
SQLite log, else in the system's temporary folder; removed afterwards), through the same folds
and row store (:class:`~projections.tables.SqliteTables`) as the live append. Then each table is
read from both sides in primary-key order and the two streams are merged: the first row that
differs in each table is reported. The replay snapshots are checked on the way, as the fold
passes each one's point (:mod:`projections.snapshot_check`). What stays in memory: one group of
events, the scratch database's page cache (:data:`eventlog.connection.SCRATCH_CACHE_KIB`), one
row of each side, and the audit-view rows touched between two snapshots.

Read-only for the log: one read transaction (``store.snapshot()``) gives a consistent view of
the log and its tables, so a run appending meanwhile cannot cause a false difference. Works the
same on PostgreSQL (the live side is read from the server, the scratch is local).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import apsw
import msgspec

from eventlog.connection import connect_scratch, immediate, translate_sqlite_errors
from eventlog.store import EventStore, Recorded
from projections import snapshots
from projections.projector import SPECS, checkpoint_of, gc_paused, handlers, hint_reads
from projections.snapshot_check import SnapshotCheck
from projections.tables import SqliteTables, TableSpec, read_rows, select_all

#: Events folded per scratch transaction (its rows are written once per group).
GROUP = 5_000


class Difference(msgspec.Struct, frozen=True):
    """The first place in a table where live projection rows and rebuilt ones disagree."""

    table: str
    key: list[Any]
    live: list[Any] | None
    rebuilt: list[Any] | None

    def describe(self) -> str:
        if self.live is None:
            return (
                f"{self.table}: row {self.key} is missing from the live table (rebuilt: "
                f"{self.rebuilt})"
            )
        if self.rebuilt is None:
            return f"{self.table}: live row {self.key} should not exist (live: {self.live})"
        return f"{self.table}: row {self.key} differs: live {self.live} != rebuilt {self.rebuilt}"


def verify(store: EventStore, *, scratch_dir: Path | None = None) -> Difference | None:
    """The first difference between the live projections and a fold of the log, or None (see
    :func:`differences`)."""
    found = differences(store, scratch_dir=scratch_dir)
    return found[0] if found else None


def differences(store: EventStore, *, scratch_dir: Path | None = None) -> list[Difference]:
    """Fold the whole log into a scratch database and compare it with the live tables: the
    checkpoint, then the first differing row of each table, then the first bad replay snapshot.
    Read-only; an empty list when everything matches."""
    folder = scratch_dir or _scratch_folder(store)
    with tempfile.TemporaryDirectory(prefix=".verify-", dir=folder) as tmp, store.snapshot():
        path = Path(tmp) / "rebuilt.db"
        with translate_sqlite_errors(path):
            scratch = connect_scratch(path)
            try:
                return _compare(store, scratch)
            finally:
                scratch.close()


def _scratch_folder(store: EventStore) -> Path | None:
    """Beside a SQLite log (a disk with room for the log has room for its projections); the
    system's temporary folder for a PostgreSQL one, or when the log's folder is read-only."""
    folder = store.path.parent
    if store.dialect == "sqlite" and folder.is_dir() and os.access(folder, os.W_OK):
        return folder
    return None


def _compare(store: EventStore, scratch: apsw.Connection) -> list[Difference]:
    for spec in SPECS:
        scratch.execute(spec.ddl())
    check = SnapshotCheck(store, SqliteTables(scratch), lambda spec: read_rows(scratch, spec))
    last = _fold(store, scratch, check)
    found: list[Difference] = []
    live_checkpoint = checkpoint_of(store)
    if live_checkpoint != last:
        found.append(Difference("projection_checkpoints", ["seq"], [live_checkpoint], [last]))
    for spec in SPECS:
        live = store.rows(select_all(spec))
        try:
            diff = first_difference(spec, live, read_rows(scratch, spec))
        finally:
            getattr(live, "close", lambda: None)()  # a stream left behind ends before the next
        if diff is not None:
            found.append(diff)
    bad = check.finish()
    if bad is not None:
        found.append(Difference(snapshots.TABLE, [bad.seq], [bad.reason], None))
    return found


def _fold(store: EventStore, scratch: apsw.Connection, check: SnapshotCheck) -> int:
    """Fold every event of the log into ``scratch``, a group a transaction; the last seq."""
    group: list[Recorded] = []
    last = 0
    with gc_paused():
        for rec in store.read(chunk=GROUP):
            group.append(rec)
            if len(group) >= GROUP:
                _fold_group(scratch, group, check)
                group = []
            last = rec.seq
        _fold_group(scratch, group, check)
    return last


#: Per event type: its folds in projection order, each with whether it is an audit view's.
_FOLDS: dict[type, tuple[tuple[Callable[..., None], bool], ...]] = {}


def _folds(event_type: type) -> tuple[tuple[Callable[..., None], bool], ...]:
    found = _FOLDS.get(event_type)
    if found is None:
        views = set(snapshots.view_folds(event_type))
        found = _FOLDS[event_type] = tuple((fn, fn in views) for fn in handlers(event_type))
    return found


def _fold_group(scratch: apsw.Connection, group: Sequence[Recorded], check: SnapshotCheck) -> None:
    """Fold ``group`` into ``scratch`` in one transaction: the audit views' folds through the
    snapshot check's :class:`~projections.snapshot_check.Touches`, the others straight."""
    tables = SqliteTables(scratch)
    hint_reads(tables, group)
    touches = check.touches
    touches.inner = tables
    with immediate(scratch):
        for rec in group:
            event = rec.event
            for fn, view in _folds(type(event)):
                fn(event, touches if view else tables, rec)
            if rec.seq == check.due:
                check.reached(rec.seq)
        tables.flush()


def first_difference(
    spec: TableSpec, live: Iterable[tuple[Any, ...]], rebuilt: Iterable[tuple[Any, ...]]
) -> Difference | None:
    """Merge two primary-key-ordered row streams and return where they first disagree."""
    pk_index = [spec.columns.index(c) for c in spec.pk]

    def key(row: tuple[Any, ...]) -> list[Any]:
        return [row[i] for i in pk_index]

    live_it, rebuilt_it = iter(live), iter(rebuilt)
    a, b = next(live_it, None), next(rebuilt_it, None)
    while a is not None or b is not None:
        if a is None or (b is not None and key(b) < key(a)):
            return Difference(spec.name, key(b), None, list(b))  # type: ignore[arg-type]
        if b is None or key(a) < key(b):
            return Difference(spec.name, key(a), list(a), None)
        if tuple(a) != tuple(b):
            return Difference(spec.name, key(a), list(a), list(b))
        a, b = next(live_it, None), next(rebuilt_it, None)
    return None
