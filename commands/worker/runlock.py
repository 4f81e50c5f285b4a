"""One worker run per database at a time: an advisory lock on ``<database>.lock``.

Two ``run`` commands started together (a cron overlap) would otherwise submit the same records
twice. The lock is released by the kernel when the process dies, even by ``kill -9``. Operator
commands (status, reset-failures, clear-batch) do not take it: their events go through the log's
own write transactions. ``status`` asks :meth:`RunLock.held` whether the last run is alive.

On PostgreSQL the runs may be on different machines, which share no file: the run also takes
the log's own lock (:func:`hold_in_database`, a session-level advisory lock on the store's
connection, released when it closes or the process dies), and :func:`run_lock_held` asks the
database.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from commands.errors import RunLocked
from eventlog.errors import DatabaseError
from eventlog.store import EventStore

#: A failed attempt is tried again for this long even without ``--wait``, so a ``status`` probing
#: the lock (:meth:`RunLock.held`, a few microseconds) cannot make a starting run fail.
PROBE_GRACE_SECONDS = 0.2


class RunLock:
    def __init__(self, database: Path) -> None:
        self.path = Path(f"{database}.lock")
        self._fd: int | None = None

    def acquire(
        self,
        wait_seconds: float = 0.0,
        *,
        hint: str = "it exits on its own, or pass --wait SECONDS",
    ) -> RunLock:
        """Take the lock, waiting up to ``wait_seconds``; :class:`RunLocked` names the holder and
        says what to do (``hint``: each command names the options it has)."""
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise DatabaseError(
                f"cannot create the run lock {self.path}: {e.strerror} ({e.filename}); the "
                "database's folder must exist and be writable (point --db or [paths] database "
                "elsewhere)"
            ) from None
        deadline = time.monotonic() + max(wait_seconds, PROBE_GRACE_SECONDS)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise RunLocked(
                        f"another run holds the lock on this database ({holder}); "
                        f"{hint}: {self.path}"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}".encode(), 0
        )
        self._fd = fd
        return self

    def held(self) -> bool:
        """Whether some process (this one included) holds the lock now: read-only, creates
        nothing. A run killed with SIGKILL holds nothing (the kernel released its lock)."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's shared lock, if it got one
        return False

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def hold_in_database(
    store: EventStore,
    wait_seconds: float = 0.0,
    *,
    hint: str = "it exits on its own, or pass --wait SECONDS",
) -> None:
    """Where the run lock lives in the database (PostgreSQL), take it for as long as ``store``
    stays open, waiting up to ``wait_seconds``; :class:`RunLocked` names the holder (its
    application name, host and server pid). Nothing on SQLite: the file lock is the lock."""
    if not store.run_lock_in_database:
        return
    me = f"gemini-batches run on {socket.gethostname()} pid {os.getpid()}"
    deadline = time.monotonic() + max(wait_seconds, PROBE_GRACE_SECONDS)
    while (holder := store.try_run_lock(me)) is not None:
        if time.monotonic() >= deadline:
            raise RunLocked(
                f"another run holds the lock on this log ({holder}); {hint}: {store.location}"
            )
        time.sleep(0.2)


def run_lock_held(store: EventStore) -> bool:
    """Whether a live run holds the lock of ``store``'s log (read-only): the database's lock on
    PostgreSQL, seen from any machine; else the file beside the database."""
    if store.run_lock_in_database:
        return store.run_lock_held()
    return RunLock(Path(store.path)).held()
