"""One place that opens SQLite connections, applies each setting, and translates apsw's errors.

Each setting is a tiny function with a link to the SQLite documentation, applied by
:func:`connect` in one place and read back, so a silently ignored pragma is caught at open time.

This module and :mod:`eventlog.schema` are the only SQLite-specific parts of the log: the
pragmas, apsw, and the translation of apsw's errors into :mod:`eventlog.errors`. A second backend
(PostgreSQL, planned) replaces these two modules (its own connect, settings and error
translation); the store's contract, checked by ``tests/eventlog/test_store.py`` for every
backend, does not change.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import apsw

from eventlog.errors import (
    AppendOnlyViolation,
    DatabaseBusy,
    DatabaseCorrupt,
    DatabaseError,
    DatabaseNotFound,
    NotAnEventLog,
    ProjectionWriteRefused,
    WalLost,
)

#: Marks our databases (``PRAGMA application_id``), so another program's SQLite file is refused.
APPLICATION_ID = 0x47424154  # "GBAT"

#: How long a writer waits for another writer before giving up, in milliseconds.
DEFAULT_BUSY_TIMEOUT_MS = 10_000

#: ``FULL``: each commit is fsynced, so a power loss cannot undo a committed event (with group
#: commit this costs one fsync per transaction, not per event). See README "Durability".
SYNCHRONOUS = "FULL"


def setting_wal(conn: apsw.Connection) -> None:
    """Write-ahead logging: readers never block the writer. https://www.sqlite.org/wal.html"""
    mode = conn.pragma("journal_mode", "wal")
    if str(mode).lower() != "wal" and not conn.readonly("main"):
        raise DatabaseError(f"cannot switch the database to WAL mode (journal_mode={mode})")


def setting_synchronous(conn: apsw.Connection) -> None:
    """Durability of each commit. https://www.sqlite.org/pragma.html#pragma_synchronous"""
    conn.pragma("synchronous", SYNCHRONOUS)
    if conn.pragma("synchronous") != 2:  # FULL
        raise DatabaseError("PRAGMA synchronous=FULL did not take effect")


def setting_busy_timeout(conn: apsw.Connection, ms: int) -> None:
    """Wait for a lock instead of failing at once. https://www.sqlite.org/c3ref/busy_timeout.html"""
    conn.set_busy_timeout(ms)


def setting_foreign_keys(conn: apsw.Connection) -> None:
    """Enforce foreign keys. https://www.sqlite.org/foreignkeys.html#fk_enable"""
    conn.pragma("foreign_keys", "ON")
    if conn.pragma("foreign_keys") != 1:
        raise DatabaseError("PRAGMA foreign_keys=ON did not take effect")


def setting_no_dqs(conn: apsw.Connection) -> None:
    """Double quotes are identifiers only. https://www.sqlite.org/quirks.html#dblquote"""
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)


def connect(
    path: Path,
    *,
    create: bool,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> apsw.Connection:
    """Open ``path`` without changing it: only per-connection settings are applied here.

    With ``create=False`` a missing file raises :class:`DatabaseNotFound` and nothing is created;
    a zero-byte file raises :class:`NotAnEventLog`. New files are readable by their owner only.
    Call :func:`apply_settings` once the file is known to be ours (it may switch it to WAL).
    """
    path = Path(path)
    exists = path.exists()
    if not exists and not create:
        raise DatabaseNotFound(f"database not found: {path}")
    if exists and path.is_dir():
        raise NotAnEventLog(f"database path is a directory: {path}")
    if exists and path.stat().st_size == 0:
        raise NotAnEventLog(
            f"database file is empty (0 bytes): {path}; restore a backup or remove it "
            "(`commands nuke --confirm`)"
        )
    if not exists:
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            os.close(fd)
        except OSError as e:
            raise DatabaseError(
                f"cannot create the database {path}: {e.strerror} ({e.filename}); "
                "point --db or [paths] database at a writable folder"
            ) from None
    with translate_sqlite_errors(path):
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            setting_busy_timeout(conn, busy_timeout_ms)
            setting_no_dqs(conn)
            # Reading the header turns "not a database" into an error before anything is written.
            conn.pragma("schema_version")
        except BaseException:
            conn.close()
            raise
    return conn


#: The page cache of a scratch database, in KiB: what a scratch fold keeps in memory at most,
#: whatever the size of the log it folds. https://www.sqlite.org/pragma.html#pragma_cache_size
SCRATCH_CACHE_KIB = 65_536


def setting_no_journal(conn: apsw.Connection) -> None:
    """No rollback journal: a scratch database is thrown away, never recovered.
    https://www.sqlite.org/pragma.html#pragma_journal_mode"""
    if str(conn.pragma("journal_mode", "off")).lower() != "off":
        raise DatabaseError("PRAGMA journal_mode=OFF did not take effect")


def setting_no_sync(conn: apsw.Connection) -> None:
    """No fsync: nothing in a scratch database has to survive a crash.
    https://www.sqlite.org/pragma.html#pragma_synchronous"""
    conn.pragma("synchronous", "OFF")
    if conn.pragma("synchronous") != 0:
        raise DatabaseError("PRAGMA synchronous=OFF did not take effect")


def setting_cache_size(conn: apsw.Connection, kib: int) -> None:
    """The page cache's bound, in KiB (a negative ``cache_size`` is KiB, a positive pages).
    https://www.sqlite.org/pragma.html#pragma_cache_size"""
    conn.pragma("cache_size", -kib)
    if conn.pragma("cache_size") != -kib:
        raise DatabaseError(f"PRAGMA cache_size=-{kib} did not take effect")


def connect_scratch(path: Path) -> apsw.Connection:
    """Create a throwaway database at ``path`` (a new file, for one process): no journal, no
    fsync, and a page cache of :data:`SCRATCH_CACHE_KIB`, so what it holds lives on disk
    rather than in memory. For work rebuilt from the log and thrown away (``verify``)."""
    conn = apsw.Connection(str(path))
    try:
        setting_no_dqs(conn)
        setting_no_journal(conn)
        setting_no_sync(conn)
        setting_cache_size(conn, SCRATCH_CACHE_KIB)
    except BaseException:
        conn.close()
        raise
    return conn


def apply_settings(conn: apsw.Connection) -> None:
    """WAL, ``synchronous``, foreign keys: each applied and read back."""
    setting_wal(conn)
    setting_synchronous(conn)
    setting_foreign_keys(conn)


@contextlib.contextmanager
def translate_sqlite_errors(path: Path | str) -> Iterator[None]:
    """Map apsw's exceptions onto the project's tree (the one boundary for SQLite errors)."""
    try:
        yield
    except apsw.BusyError as e:
        raise DatabaseBusy(
            f"database is locked by another process (waited past the busy timeout): {path}"
        ) from e
    except apsw.ConstraintError as e:
        message = str(e)
        if "append-only" in message:
            raise AppendOnlyViolation(_trigger_message(message)) from e
        if "projection of the event log" in message:
            raise ProjectionWriteRefused(_trigger_message(message)) from e
        raise
    except apsw.CorruptError as e:
        raise DatabaseCorrupt(
            f"not a usable SQLite database ({e}): {path}; PRAGMA quick_check: "
            f"{integrity_detail(path)}; restore the last backup (`nuke --confirm` keeps one "
            "beside it, named <name>.backup-<UTC time>.db) or move the file away to start anew"
        ) from e
    except apsw.NotADBError as e:
        raise NotAnEventLog(
            f"not a usable SQLite database ({e}): {path}; point --db or [paths] database at "
            "the event log, or restore a backup"
        ) from e
    except apsw.CantOpenError as e:
        raise DatabaseError(f"cannot open database ({e}): {path}{_folder_hint(path)}") from e
    except apsw.ReadOnlyError as e:
        raise DatabaseError(f"database is read-only ({e}): {path}") from e
    except apsw.FullError as e:
        raise DatabaseError(f"disk full while writing the database: {path}") from e
    except apsw.IOError as e:
        raise DatabaseError(f"I/O error on the database ({e}): {path}") from e


def _folder_hint(path: Path | str) -> str:
    """Why SQLite may not open a file it can read: its folder refuses the -wal and -shm files."""
    folder = Path(path).parent
    if folder.is_dir() and not os.access(folder, os.W_OK):
        return (
            f"; its folder {folder} is read-only and SQLite keeps the -wal and -shm files "
            "beside the database: make it writable, or copy the database somewhere writable"
        )
    return ""


def integrity_detail(path: Path | str, limit: int = 3) -> str:
    """The first ``limit`` findings of ``PRAGMA quick_check`` on ``path`` (read-only), in one
    line; what went wrong when even that cannot run. https://www.sqlite.org/pragma.html#pragma_quick_check"""
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            rows = [str(r[0]) for r in conn.execute(f"PRAGMA quick_check({int(limit)})")]
        finally:
            conn.close()
    except apsw.Error as e:
        return f"cannot run ({e})"
    detail = "; ".join(line.strip() for r in rows for line in r.splitlines() if line.strip())
    return detail[:300] or "no finding"


def wal_identity(path: Path | str) -> tuple[int, int] | None:
    """(device, inode) of the database's ``-wal`` file; None when there is none."""
    try:
        st = os.stat(f"{path}-wal")
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def check_wal(path: Path | str, opened: tuple[int, int] | None) -> None:
    """Raise :class:`WalLost` if the ``-wal`` file this connection opened (``opened``, from
    :func:`wal_identity` at open) is gone or is another file now. While a connection is open
    SQLite never removes its WAL, so either means someone else did: a write now would go to a
    file no other process sees. https://www.sqlite.org/wal.html#the_wal_file"""
    if opened is not None and wal_identity(path) != opened:
        raise WalLost(
            f"the write-ahead log {path}-wal was deleted or replaced under this process; "
            "stopped before writing blind: stop every process using the database, then check "
            "it with `replay.py --verify-chain` (restore the last backup if that fails)"
        )


def _trigger_message(message: str) -> str:
    """apsw prefixes trigger messages with the error class name; keep only our text."""
    return message.split(": ", 1)[1] if message.startswith("ConstraintError") else message


@contextlib.contextmanager
def immediate(conn: apsw.Connection) -> Iterator[None]:
    """A write transaction taken with ``BEGIN IMMEDIATE``: commit on success, roll back on error.

    Taking the write lock up front means a read-then-write decision inside cannot be overtaken by
    another writer. https://www.sqlite.org/lang_transaction.html#immediate
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
