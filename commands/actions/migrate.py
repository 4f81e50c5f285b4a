"""Copy a SQLite log into PostgreSQL, event for event, and prove the copy equal.

:func:`migrate` reads the source in chunks and appends each chunk's rows exactly as stored
(sequence number, time, actor, payload bytes, hash) in one target transaction
(``Writer.copy``, the chain checked row by row); the projections are then folded once, in bulk
(a fresh database installs them from a whole-log fold, written with COPY). It is resumable: a
target holding a prefix of the source (the same hash at its last event) is continued, anything
else is refused. Then it proves the copy:
the target's chain verifies, its last hash is the source's, and every projection table holds the
same rows in both, which also equal a rebuild of the target. The source is only read.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from eventlog.errors import OperatorError
from eventlog.postgres import PostgresEventStore
from eventlog.store import EventStore, RawRow
from projections import open_store, snapshot_rows, verify

CHUNK = 5_000


class Migrated(msgspec.Struct, frozen=True):
    copied: int
    last_seq: int
    last_hash: str
    tables: int
    rows: int


def migrate(source: Path, url: str, *, busy_timeout_ms: int = 10_000) -> Migrated:
    """Copy the log at ``source`` into the PostgreSQL database at ``url`` and prove them equal.

    Raises :class:`OperatorError` naming what differs; the source is never written."""
    with (
        open_store(source, write=False) as src,
        PostgresEventStore.open_url(url, create=True, busy_timeout_ms=busy_timeout_ms) as dst,
    ):
        start = dst.last_seq()
        if start:
            theirs = _hash_at(src, start)
            ours = _hash_at(dst, start)
            if theirs is None or theirs != ours:
                raise OperatorError(
                    f"{dst.location} already holds {start} events that are not a prefix of "
                    f"{source}: migrate into an empty database"
                )
        copied, chunk = 0, list[RawRow]()
        for row in src.read_raw(after_seq=start, chunk=CHUNK):
            chunk.append(row)
            if len(chunk) == CHUNK:
                copied += _copy(dst, chunk)
                chunk = []
        copied += _copy(dst, chunk)
    # Opening with the projector folds what was copied (installing the tables when new).
    with (
        open_store(source, write=False) as src,
        open_store(url, busy_timeout_ms=busy_timeout_ms) as dst,
    ):
        return _prove(src, dst, source, copied)


def _copy(dst: EventStore, rows: list[RawRow]) -> int:
    if not rows:
        return 0
    with dst.write() as w:
        try:
            w.copy(rows)
        except ValueError as e:
            raise OperatorError(f"cannot copy into {dst.location}: {e}") from None
    return len(rows)


def _hash_at(store: EventStore, seq: int) -> str | None:
    for row in store.read_raw(after_seq=seq - 1, until_seq=seq):
        return row.hash
    return None


def _prove(src: EventStore, dst: EventStore, source: Path, copied: int) -> Migrated:
    broken = dst.verify_chain()
    if broken is not None:
        raise OperatorError(
            f"the copy's hash chain is broken at event {broken.seq}: {broken.reason}"
        )
    last = src.last_seq()
    if dst.last_seq() != last or _hash_at(dst, last) != _hash_at(src, last):
        raise OperatorError(f"the copy ends at event {dst.last_seq()}, {source} at {last}")
    with src.snapshot():
        theirs = snapshot_rows(src)
    with dst.snapshot():
        ours = snapshot_rows(dst)
    for name, rows in theirs.items():
        if ours.get(name) != rows:
            raise OperatorError(f"projection {name} differs between {source} and the copy")
    diff = verify(dst)
    if diff is not None:
        raise OperatorError(f"the copy's projections differ from its log: {diff.describe()}")
    return Migrated(
        copied,
        last,
        _hash_at(dst, last) or "",
        len(ours),
        sum(len(r) for r in ours.values()),
    )
