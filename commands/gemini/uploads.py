"""What the google-genai adapter hands the SDK for an upload (no SDK import here): a file read as
exactly the size it had when opened, and a display name any HTTP layer can carry."""

from __future__ import annotations

import io
import os
from pathlib import Path

__all__ = ["ExactReader", "FileChangedError", "safe_display_name"]


class FileChangedError(OSError):
    """A file being uploaded ended before the size its upload declared."""


class ExactReader(io.RawIOBase):
    """A file opened for one upload, read as exactly the size it had when opened: a read past
    the end of a file truncated meanwhile raises :class:`FileChangedError` (the SDK would
    otherwise post empty chunks for ever), and bytes grown past that size are never read."""

    mode = "rb"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 (closed by close())
        self._size = os.fstat(self._fh.fileno()).st_size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, min(self._size, base + offset))
        self._fh.seek(self._pos)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        want = self._size - self._pos
        if size is not None and size >= 0:
            want = min(want, size)
        data = self._fh.read(want)
        if len(data) < want:
            raise FileChangedError(
                f"{self._fh.name} ended at {self._pos + len(data)} of {self._size} bytes "
                "(it changed while it was uploaded)"
            )
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._fh.close()
        super().close()


#: The longest display name sent (the service's limit is 512 characters).
_DISPLAY_NAME_MAX = 200


def safe_display_name(name: str) -> str:
    """``name`` as a display name any HTTP layer can carry: printable ASCII kept, anything else
    (non-ASCII letters, newlines, control characters) as ``_``, cut to a bounded length, and a
    short hash of the real name appended whenever it was changed, so two names stay two."""
    import hashlib

    safe = "".join(c if " " <= c <= "~" else "_" for c in name)[:_DISPLAY_NAME_MAX]
    if safe == name:
        return name
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogatepass')).hexdigest()[:12]}"
