"""Checking the replay snapshots against a fold of the log, in one pass, in bounded memory.

A fold of the log passes each snapshot's point in turn, and there the snapshot is compared with
the fold's views:

* a full snapshot row for row, as two streams in primary-key order (one frame of it in memory);
* a delta on the rows it names and the rows the fold changed since the snapshot before it. That
  one was found equal to the fold at its point, and each row the fold changes after it is noted
  as it stood then (at the fold's first touch), so the delta applied to it equals the fold's
  views exactly when those rows agree: every other row is the same in both.

Memory: one frame of a full snapshot, one delta, and the rows touched between two snapshots;
never a whole view. The fold may be the audit views alone in memory (``replay.py
--verify-snapshots``) or every projection in a scratch database (``rebuild-projections
--verify``, :mod:`projections.verification`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec

from eventlog.store import EventStore
from projections import snapshots
from projections.projector import gc_paused
from projections.snapshots import TABLE, UNREADABLE, VIEW_SPECS, BadSnapshot, Key
from projections.tables import MemoryTables, Row, Tables, TableSpec

_astuple = msgspec.structs.astuple
_SEQS = f"SELECT seq FROM {TABLE} ORDER BY seq"
_VIEWS = frozenset(spec.name for spec in VIEW_SPECS)


def _values(row: Any | None) -> tuple[Any, ...] | None:
    return None if row is None else _astuple(row)


class Touches:
    """A row store (``Tables``) that passes everything to ``inner``, noting (while
    :attr:`noting`) each audit view row as it stood before its first change since
    :meth:`forget`."""

    def __init__(self, inner: Tables) -> None:
        self.inner = inner
        self.noting = False
        self.before: dict[str, dict[Key, tuple[Any, ...] | None]] = {n: {} for n in _VIEWS}

    def forget(self) -> None:
        for noted in self.before.values():
            noted.clear()

    def _note(self, spec: TableSpec, key: Key) -> None:
        noted = self.before.get(spec.name) if self.noting else None
        if noted is not None and key not in noted:
            noted[key] = _values(self.inner.get(spec, key))

    def get(self, spec: TableSpec, key: tuple[Any, ...]) -> Any | None:
        return self.inner.get(spec, key)

    def put(self, spec: TableSpec, row: Row) -> None:
        self._note(spec, spec.key_of(row))
        self.inner.put(spec, row)

    def delete(self, spec: TableSpec, key: tuple[Any, ...]) -> None:
        self._note(spec, key)
        self.inner.delete(spec, key)

    def find(self, spec: TableSpec, column: str, value: Any) -> list[Any]:
        return self.inner.find(spec, column, value)

    def delete_where(self, spec: TableSpec, column: str, value: Any) -> None:
        noted = self.before.get(spec.name) if self.noting else None
        if noted is not None:
            for row in self.inner.find(spec, column, value):
                noted.setdefault(spec.key_of(row), _astuple(row))
        self.inner.delete_where(spec, column, value)

    def flush(self) -> None:
        self.inner.flush()

    def hint(self, spec: TableSpec, keys: set[Any]) -> None:
        self.inner.hint(spec, keys)


class SnapshotCheck:
    """The snapshots of ``store``, checked in order as a fold through :attr:`touches` passes
    each one's point: call :meth:`reached` after folding event :attr:`due`, then :meth:`finish`.
    ``rows_of(spec)`` reads the fold's rows of a view in primary-key order."""

    def __init__(
        self,
        store: EventStore,
        tables: Tables,
        rows_of: Callable[[TableSpec], Iterable[tuple[Any, ...]]],
    ) -> None:
        self.store = store
        self.touches = Touches(tables)
        self.rows_of = rows_of
        listed = store.has_table(TABLE)
        self.seqs = [r[0] for r in store.query(_SEQS)] if listed else []
        self._next = 0
        self._good: int | None = None  # the last snapshot found equal to the fold
        self.bad: BadSnapshot | None = None

    @property
    def due(self) -> int | None:
        """The next snapshot's sequence number (None: none left, or one was bad)."""
        if self.bad is not None or self._next >= len(self.seqs):
            return None
        return int(self.seqs[self._next])

    def reached(self, seq: int) -> None:
        """The fold has just folded event ``seq`` (== :attr:`due`): check that snapshot."""
        self.touches.flush()
        self.bad = self._check(seq)
        self._good, self._next = seq, self._next + 1
        self.touches.forget()
        self.touches.noting = self.due is not None  # only the rows a next delta may need

    def finish(self) -> BadSnapshot | None:
        """The first bad snapshot; one past the end of the log is bad too."""
        due = self.due
        if due is not None:
            return BadSnapshot(due, "its chain hash does not match the log at that point")
        return self.bad

    def _check(self, seq: int) -> BadSnapshot | None:
        found = self.store.query(snapshots.ONE, (seq,))
        blob, digest, chain, event_hash = found[0]
        blob = bytes(blob)
        if event_hash != chain:
            return BadSnapshot(seq, "its chain hash does not match the log at that point")
        if hashlib.sha256(blob).hexdigest() != digest:
            return BadSnapshot(seq, "its bytes are damaged (digest mismatch)")
        try:
            base = snapshots.base_of(blob)
            if base is not None and base != self._good:
                return BadSnapshot(seq, f"it is a delta on {base}, not on the snapshot before it")
            same = self._same_full(blob) if base is None else self._same_delta(blob)
        except UNREADABLE:
            return BadSnapshot(seq, "its bytes do not decode")
        return None if same else BadSnapshot(seq, "its rows differ from a fold of the log")

    def _same_full(self, blob: bytes) -> bool:
        names = {name for name, _ in snapshots.frames(blob)}
        if not names <= _VIEWS:
            raise ValueError(f"a snapshot names tables that are not views: {names - _VIEWS}")
        for spec in VIEW_SPECS:
            stored = (tuple(r) for r in _rows_of_table(blob, spec.name))
            folded = (tuple(r) for r in self.rows_of(spec))
            marker = object()
            for a, b in itertools.zip_longest(stored, folded, fillvalue=marker):
                if a != b:
                    return False
        return True

    def _same_delta(self, blob: bytes) -> bool:
        changed: dict[str, dict[Key, tuple[Any, ...] | None]] = {n: {} for n in _VIEWS}
        for view, pairs in snapshots.changes(blob):
            for key, row in pairs:
                if key in changed[view]:
                    return False  # a key named twice: not a delta this module writes
                changed[view][key] = row
        for spec in VIEW_SPECS:
            before, mine = self.touches.before[spec.name], changed[spec.name]
            for key in before.keys() | mine.keys():
                want = mine[key] if key in mine else before[key]
                if want != _values(self.touches.inner.get(spec, key)):
                    return False
        return True


def _rows_of_table(blob: bytes, name: str) -> Iterator[list[Any]]:
    for frame, rows in snapshots.frames(blob):
        if frame == name:
            yield from rows


def verify_views(store: EventStore) -> BadSnapshot | None:
    """Fold the audit views from the start of the log up to its last snapshot, in memory (the
    views' size), and check each snapshot on the way; the first bad one, or None."""
    tables = MemoryTables(VIEW_SPECS)
    check = SnapshotCheck(store, tables, tables.rows)
    if not check.seqs:
        return None
    touches, folds = check.touches, snapshots.view_folds
    with gc_paused():
        for rec in store.read(until_seq=int(check.seqs[-1])):
            event = rec.event
            for fn in folds(type(event)):
                fn(event, touches, rec)
            if rec.seq == check.due:
                check.reached(rec.seq)
                if check.bad is not None:
                    break
    return check.finish()
