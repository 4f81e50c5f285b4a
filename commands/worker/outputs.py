"""Writing outputs durably and atomically: temporary file, fsync, rename, fsync of the folder.

A reader never sees a half-written JSON file, and once :func:`write_outputs` returns, the files
survive a power cut; only then are their ``RecordValidated`` events appended.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from eventlog.errors import OperatorError


class OutputWriteError(OperatorError):
    """An output could not be written (disk full, permissions); nothing was half-written."""


def write_outputs(items: Iterable[tuple[Path, bytes]]) -> dict[Path, str]:
    """Write each ``(path, data)`` atomically; returns each path's sha256. Folders are fsynced
    once per call, after every rename, so a chunk of outputs costs one folder sync per folder."""
    digests: dict[Path, str] = {}
    folders: set[Path] = set()
    try:
        for path, data in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            os.replace(tmp, path)
            folders.add(path.parent)
            digests[path] = hashlib.sha256(data).hexdigest()
        for folder in folders:
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except OSError as e:
        raise OutputWriteError(f"cannot write output {e.filename or ''}: {e.strerror or e}") from e
    return digests
