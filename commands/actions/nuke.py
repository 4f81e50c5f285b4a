"""``nuke``: start over with an empty log, after keeping a timestamped backup of the old one."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from commands.worker.runlock import RunLock
from eventlog.errors import DatabaseNotFound
from eventlog.store import EventStore
from projections import SPECS, open_store, queries


class Counts(msgspec.Struct, frozen=True):
    database: str
    events: int
    tables: dict[str, int]


def counts(store: EventStore) -> Counts:
    """Rows in the log and in each projection table (read-only)."""
    with store.snapshot():
        events = queries.count_events(store)
        tables = {spec.name: queries.count_rows(store, spec) for spec in SPECS}
    return Counts(str(store.path), events, tables)


def backup_path(db: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
    return db.with_name(f"{db.stem}.backup-{stamp}{db.suffix}")


def nuke(db: Path, *, recreate_tables: bool) -> Path:
    """Copy ``db`` to a timestamped backup (owner-only), then remove it and its WAL files.

    With ``recreate_tables`` a fresh empty log with every table is created at once; otherwise the
    next command that writes creates it. Returns the backup's path. The old log is never lost: the
    files are only removed after the backup completed and was closed. Refused while a worker
    run holds the run lock (its log would vanish under it).
    """
    with RunLock(db).acquire(hint="stop that run first (Ctrl+C or SIGTERM), then nuke again"):
        return _nuke(db, recreate_tables=recreate_tables)


def _nuke(db: Path, *, recreate_tables: bool) -> Path:
    store = open_store(db, create=False)
    target = backup_path(db)
    try:
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        store.backup(target)
    finally:
        store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    if recreate_tables:
        open_store(db, create=True).close()
    return target


def require_exists(db: Path) -> None:
    if not db.exists():
        raise DatabaseNotFound(f"database not found: {db} (nothing to nuke)")
