"""Request files: the JSONL a batch is created from, streamed to temporary files on disk and cut
by bytes (``[uploads] max_request_file_bytes``) as well as by count (the caller's chunk).

Memory stays bounded by one line (one image's base64 at most): each line is encoded, written and
dropped; a finished file is handed to the caller as a path, which the File API upload streams.
A file is deleted as soon as the caller moves on to the next one (or stops).
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, NamedTuple

from commands.config import UploadsConfig
from commands.gemini.port import RemoteFile
from commands.pages import Page
from commands.rules.transport import Route, line_too_big, route_image, starts_new_file
from commands.worker.dataset import (
    MAX_IMAGE_BYTES,
    inspect_image,
)

#: A page ready for its request line: its uploaded file, or None when it goes inline.
Ready = tuple[Page, RemoteFile | None]


class RequestFile(NamedTuple):
    """One complete request file on disk and the pages whose lines it holds, in order."""

    path: Path
    items: list[Ready]
    #: How many of the input items were used up once this file was cut (rejected ones included).
    consumed: int


def route_page(page: Page, uploads: UploadsConfig) -> Route:
    """How ``page``'s image can go (reads its header and size): a ``transport``, or why it
    cannot go at all (unreadable, not the image its extension says, too big for its transport).
    The scan asks the same of a page rejected before, to see whether it was fixed."""
    size, reason = inspect_image(page)  # the size limits are route_image's
    if reason is not None:
        return Route(None, reason)
    return route_image(
        uploads.image_transport,
        size,
        inline_max=uploads.inline_image_max_bytes,
        file_max=MAX_IMAGE_BYTES,
        request_max=uploads.max_request_file_bytes,
    )


def inline_part(page: Page, data: bytes | None = None) -> dict[str, Any]:
    """The request part carrying ``page``'s image inline, base64, made from ``data`` (the bytes
    read once and checked, :func:`commands.worker.dataset.read_once`); without it, read here."""
    raw = Path(page.path).read_bytes() if data is None else data
    return {"inlineData": {"mimeType": page.mime_type, "data": base64.b64encode(raw).decode()}}


def write_request_files(
    items: list[Ready],
    encode: Callable[[Page, RemoteFile | None], bytes | None],
    *,
    max_bytes: int,
    directory: Path,
    reject: Callable[[Page, str], None],
) -> Generator[RequestFile]:
    """Write ``items``' lines (``encode`` makes one) into request files of at most ``max_bytes``
    each, yielding each file once it is complete. A line too big for any file is ``reject``-ed
    with its size; an item ``encode`` makes no line of (None: it said why) is left out.
    The yielded file is deleted when the iteration resumes or is closed."""
    directory.mkdir(parents=True, exist_ok=True)
    current: tuple[Path, Any] | None = None
    handed: Path | None = None  # the file the caller holds
    lines: list[Ready] = []
    used = 0

    def open_file() -> tuple[Path, Any]:
        fd, name = tempfile.mkstemp(prefix=".requests-", suffix=".jsonl", dir=directory)
        return Path(name), os.fdopen(fd, "wb")

    try:
        for n, item in enumerate(items, 1):
            line = encode(*item)
            if line is None:
                continue
            reason = line_too_big(len(line), max_bytes)
            if reason is not None:
                reject(item[0], reason)
                continue
            if current is not None and starts_new_file(used, len(line), max_bytes):
                handed, fh = current
                fh.close()
                current = None
                yield RequestFile(handed, lines, n - 1)
                handed.unlink(missing_ok=True)
                handed, lines, used = None, [], 0
            if current is None:
                current = open_file()
            current[1].write(line)
            lines.append(item)
            used += len(line)
        if current is not None:
            handed, fh = current
            fh.close()
            current = None
            yield RequestFile(handed, lines, len(items))
    finally:
        if current is not None:
            current[1].close()
            current[0].unlink(missing_ok=True)
        if handed is not None:
            handed.unlink(missing_ok=True)
