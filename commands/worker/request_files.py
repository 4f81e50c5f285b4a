"""Request files: the JSONL a batch is created from, streamed to temporary files on disk and cut
by bytes (``[uploads] max_request_file_bytes``) as well as by count (the caller's chunk).

Memory stays bounded by one line (one image's base64 at most): each line is encoded
(:class:`LineMaker`, in the wire format of :mod:`commands.gemini.requests`), written and
dropped; a finished file is handed to the caller as a path, which the File API upload streams.
The caller owns each file it is handed and deletes it (:meth:`RequestFile.delete`) once
uploaded; an unfinished one is deleted here when the caller stops early.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, NamedTuple

from commands.config import Config, UploadsConfig
from commands.gemini import requests
from commands.gemini.port import RemoteFile
from commands.pages import Page
from commands.rules.retry import output_limit
from commands.rules.transport import Route, line_too_big, route_image, starts_new_file
from commands.worker.dataset import (
    MAX_IMAGE_BYTES,
    OutputTree,
    Probe,
    Stamp,
    inspect_image,
    read_once,
    warn_not_this_cycle,
)

log = logging.getLogger("commands.cycle")

#: A page ready for its request line: its uploaded file, or None when it goes inline.
Ready = tuple[Page, RemoteFile | None]


class RequestFile(NamedTuple):
    """One complete request file on disk and the pages whose lines it holds, in order."""

    path: Path
    items: list[Ready]
    #: How many of the input items were used up once this file was cut (rejected ones included).
    consumed: int

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


def route_page(page: Page, uploads: UploadsConfig, probe: Probe | None = None) -> Route:
    """How ``page``'s image can go (reads its header and size, unless ``probe`` has them): a
    ``transport``, or why it cannot go at all (unreadable, not the image its extension says, too
    big for its transport). The scan asks the same of a page rejected before, to see whether it
    was fixed."""
    size, reason = inspect_image(page, probe=probe)  # the size limits are route_image's
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
    return requests.inline_part(page.mime_type, raw)


class LineMaker:
    """Makes each page's request line: the prompt, the previous page's output if configured
    (``previous``: each page's previous page), and the image, inline (base64 of the bytes read
    once and checked against ``stamps``, what the check saw) or by its File API URI. A page it
    makes no line of (its file changed since it was checked, or the previous page's output
    cannot be read: gone, unreadable, not UTF-8) is counted in :attr:`skipped` and checked again
    next cycle."""

    def __init__(
        self,
        config: Config,
        json_schema: dict[str, Any],
        previous: dict[str, Page],
        stamps: dict[str, Stamp | None],
        limit: Callable[[str], int | None] | None = None,
    ) -> None:
        g = config.gemini
        self.prompt, self.temperature = g.prompt, g.temperature
        self.media_resolution = g.media_resolution
        #: Each page's output limit (the estimator's: doubled once per cut answer so far);
        #: without one, the configured limit for every page.
        self.limit = limit or (
            lambda key: output_limit(g.max_output_tokens, g.max_output_tokens_ceiling, 0)
        )
        self.output_root = config.paths.output_root
        self.json_schema = json_schema
        self.previous, self.stamps = previous, stamps
        self.skipped = 0

    def __call__(self, page: Page, remote: RemoteFile | None) -> bytes | None:
        parts: list[dict[str, Any]] = []
        prev = self.previous.get(page.key)
        if prev is not None:
            context = self._previous_output(page, prev)
            if context is None:
                return None
            parts.append(requests.context_part(prev.key, context))
        if remote is None:
            data, _, changed = read_once(page, self.stamps.get(page.key))
            if data is None:
                warn_not_this_cycle(log, "sending", page.key, changed)
                self.skipped += 1
                return None
            parts.append(inline_part(page, data))
        else:
            parts.append(requests.file_part(remote.uri, remote.mime_type))
        return requests.request_line(
            page.key,
            self.prompt,
            parts,
            self.json_schema,
            max_output_tokens=self.limit(page.key),
            temperature=self.temperature,
            media_resolution=self.media_resolution,
        )

    def _previous_output(self, page: Page, prev: Page) -> str | None:
        path = self.output_root / prev.state / prev.school / prev.year / f"{prev.page}.json"
        try:
            return OutputTree(self.output_root).path(prev.key).read_text()
        except (OSError, UnicodeDecodeError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else e
            warn_not_this_cycle(
                log, "sending", page.key, f"cannot read the previous page's output {path} ({why})"
            )
            self.skipped += 1
            return None


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
    A yielded file is the caller's to delete; the one being written when the iteration is
    closed early is deleted here."""
    directory.mkdir(parents=True, exist_ok=True)
    current: tuple[Path, Any] | None = None
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
                path, fh = current
                fh.close()
                current = None
                yield RequestFile(path, lines, n - 1)
                lines, used = [], 0
            if current is None:
                current = open_file()
            current[1].write(line)
            lines.append(item)
            used += len(line)
        if current is not None:
            path, fh = current
            fh.close()
            current = None
            yield RequestFile(path, lines, len(items))
    finally:
        if current is not None:
            current[1].close()
            current[0].unlink(missing_ok=True)


class RequestFiles:
    """:func:`write_request_files`' files made one at a time, from any thread. The file last made
    stays this object's until :meth:`hand_off` (to the flow that sends it); :meth:`close`
    waits for a file being made (local disk work), deletes the one not handed off and ends the
    writing: a stage stopped at any point leaves no request file behind."""

    def __init__(self, files: Generator[RequestFile]) -> None:
        self._files = files
        self._lock = threading.Lock()
        self._made: RequestFile | None = None

    def next(self) -> RequestFile | None:
        """The next file, None when there are no more (or the writing was closed)."""
        with self._lock:
            self._made = next(self._files, None)
            return self._made

    def hand_off(self) -> None:
        """The file last made is someone else's to delete from now on."""
        self._made = None

    def close(self) -> None:
        with self._lock:
            if self._made is not None:
                self._made.delete()
                self._made = None
            self._files.close()
