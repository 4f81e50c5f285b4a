"""``nuke``: start over with an empty log, after keeping a timestamped backup of the old one."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from commands.worker.runlock import RunLock, hold_in_database
from eventlog.errors import DatabaseNotFound, OperatorError
from eventlog.postgres import PostgresEventStore, redact
from eventlog.store import EventStore, RawRow
from projections import SPECS, TABLE_NAMES, open_store, queries

#: Events copied per transaction into a PostgreSQL log's SQLite backup.
BACKUP_CHUNK = 5_000


class Counts(msgspec.Struct, frozen=True):
    database: str
    events: int
    tables: dict[str, int]


def counts(store: EventStore) -> Counts:
    """Rows in the log and in each projection table (read-only)."""
    with store.snapshot():
        events = queries.count_events(store)
        tables = {spec.name: queries.count_rows(store, spec) for spec in SPECS}
    return Counts(store.location, events, tables)


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


def nuke_postgres(
    url: str, scratch: Path, *, recreate_tables: bool, busy_timeout_ms: int = 10_000
) -> Path:
    """Start a PostgreSQL log over: copy it, event for event, into a new SQLite log beside
    ``scratch`` (``<name>.backup-<UTC time>.db``: its chain verified and its last hash the
    source's; ``migrate-to-postgres`` restores it), then drop the log's tables (as their owner).

    With ``recreate_tables`` a fresh empty log is created at once. Refused while a run holds the
    log's run lock (on any machine); nothing is dropped unless the backup is complete."""
    store = PostgresEventStore.open_url(url, busy_timeout_ms=busy_timeout_ms)
    with store:
        hold_in_database(store, hint="stop that run first (Ctrl+C or SIGTERM), then nuke again")
        target = backup_path(scratch)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        target.unlink()  # reserved the name; the store creates the file itself
        with EventStore.open(target, create=True) as backup:
            chunk: list[RawRow] = []
            for row in store.read_raw(chunk=BACKUP_CHUNK):
                chunk.append(row)
                if len(chunk) == BACKUP_CHUNK:
                    _copy(backup, chunk)
                    chunk = []
            _copy(backup, chunk)
            last = store.bounds()
            mine = backup.bounds()
            if backup.verify_chain() is not None or (last and mine and last[1] != mine[1]):
                raise OperatorError(
                    f"the backup {target} does not equal {redact(url)}: nothing was dropped"
                )
        open_store(target).close()  # the backup's projections, folded: every command reads it
        store.drop_log(TABLE_NAMES)
    if recreate_tables:
        open_store(url, create=True, busy_timeout_ms=busy_timeout_ms).close()
    return target


def _copy(dst: EventStore, rows: list[RawRow]) -> None:
    if rows:
        with dst.write() as w:
            w.copy(rows)


def require_exists(db: Path) -> None:
    if not db.exists():
        raise DatabaseNotFound(f"database not found: {db} (nothing to nuke)")
