"""Writing outputs durably and atomically, a chunk at a time.

Guarantees of :func:`write_outputs`:

* **Atomic.** Every output is written to a hidden temporary file beside it and renamed into place;
  a reader never sees a half-written JSON file under an output's name.
* **Durable on return.** Each temporary file's bytes are flushed (``fdatasync``) before any of the
  chunk is renamed, and every folder that received a rename is fsynced once, after all renames;
  only when the call returns are the outputs' ``RecordValidated`` events appended.
* **All or nothing before the renames.** If any file of the chunk cannot be written or flushed,
  no output of the chunk is renamed, every temporary file of the chunk is removed, and the
  :class:`OutputWriteError` names the first file (in the chunk's order) that failed.
* **No leftovers.** A process killed while it wrote leaves hidden temporary files (named with its
  pid); the next write of the same outputs removes them (:func:`_sweep`), so a crash at any
  moment, repaired by the next run, leaves nothing half-written behind.

What makes it fast: the flushes are not paid one after another. The files of a chunk are written
and flushed by a small pool of threads (the GIL is released in ``write`` and ``fdatasync``), so
the file system commits many of them in one journal transaction (ext4's and XFS's group commit)
instead of one each; the folders are then fsynced in parallel too.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from eventlog.errors import OperatorError

SYNC_THREADS = 32  # flushes in flight at once: enough for the group commit, few file descriptors

_flush: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync
_pool: ThreadPoolExecutor | None = None


class OutputWriteError(OperatorError):
    """An output could not be written (disk full, permissions); nothing was half-written."""


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="outputs")
    return _pool


def _temporary(path: Path) -> Path:
    """A temporary name of its own for each write (this process's pid, then a counter): two
    writes of one output never share a file."""
    return path.with_name(f".{path.name}.{os.getpid()}-{next(_writes)}.tmp")


_writes = itertools.count()


def _sweep(folder: Path, names: set[str]) -> None:
    """Remove the temporary files a writer killed while it wrote (a pid no process has any
    more) left in ``folder`` for the outputs ``names``."""
    try:
        with os.scandir(folder) as entries:
            stale = [e.path for e in entries if _left_by_the_dead(e.name, names)]
    except OSError:
        return
    for path in stale:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _left_by_the_dead(name: str, outputs: set[str]) -> bool:
    """Whether ``name`` is a temporary file (``.<output>.<pid>[-<n>].tmp``) of one of
    ``outputs`` whose writer is gone."""
    if not (name.startswith(".") and name.endswith(".tmp")):
        return False
    output, _, writer = name[1:-4].rpartition(".")
    pid = writer.partition("-")[0]
    if output not in outputs or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)  # raises if it is gone; another user's process: PermissionError
    except ProcessLookupError:
        return True
    except OSError:
        pass
    return False


def _write_flushed(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``'s temporary file and flush it; returns the temporary file.
    On any error the temporary file is removed before the error propagates. Its folder exists."""
    tmp = _temporary(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        _flush(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise _error(folder, e) from e


def _error(path: Path, e: OSError) -> OutputWriteError:
    return OutputWriteError(f"cannot write output {path}: {e.strerror or e}")


def write_outputs(items: Iterable[tuple[Path, bytes]]) -> dict[Path, str]:
    """Write each ``(path, data)`` atomically and durably (see the module's guarantees); returns
    each path's sha256. A path given twice gets its last data. Raises :class:`OutputWriteError`
    naming the file that failed."""
    chunk = dict(items)
    pool = _threads()
    first_in: dict[Path, Path] = {}
    for path in chunk:
        first_in.setdefault(path.parent, path)
    names: dict[Path, set[str]] = {}
    for path in chunk:
        names.setdefault(path.parent, set()).add(path.name)
    for folder, first in first_in.items():  # each folder made once, not once a file
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # named by its first output, as any failure of the chunk
            raise _error(first, e) from e
        _sweep(folder, names[folder])
    pending: list[tuple[Path, Future[Path]]] = [
        (path, pool.submit(_write_flushed, path, data)) for path, data in chunk.items()
    ]
    written: list[tuple[Path, Path]] = []
    failure: tuple[Path, BaseException] | None = None
    for path, future in pending:  # wait for every one, so no thread still writes after we return
        try:
            written.append((path, future.result()))
        except BaseException as e:
            failure = failure or (path, e)
    if failure is not None:
        for _, tmp in written:
            tmp.unlink(missing_ok=True)
        failed, error = failure
        if isinstance(error, OSError):
            raise _error(failed, error) from error
        raise error
    for i, (path, tmp) in enumerate(written):
        try:
            os.replace(tmp, path)
        except OSError as e:  # the renamed ones are whole; the rest are removed
            for _, rest in written[i:]:
                rest.unlink(missing_ok=True)
            raise _error(path, e) from e
    folders = list(dict.fromkeys(path.parent for path, _ in written))
    for _ in pool.map(_sync_folder, folders):  # re-raises the first folder's error
        pass
    return {path: hashlib.sha256(data).hexdigest() for path, data in chunk.items()}
