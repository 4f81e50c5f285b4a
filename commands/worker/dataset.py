"""The dataset's files: a page's bytes (an image, a one-page PDF, or a page cut from a
document: :mod:`commands.worker.documents`) and the outputs
``<output_root>/<State>/<School>/<Year>/<Page>.json``. The walk of the input tree that finds the
pages is :mod:`commands.worker.walk`.

A page's bytes are checked (:func:`check_image`) only when it is about to be sent. Nothing here
raises on bad input: each problem comes back with its path and reason.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import NamedTuple

from commands.pages import Page, Problem, YearDir
from commands.worker import documents
from commands.worker.documents import split_locator
from eventlog import crashpoints
from eventlog.keys import key_problem

#: The File API's limit per file.
MAX_IMAGE_BYTES = 2 * 1024**3


def output_path(output_root: Path, key: str) -> Path:
    """Where a record's output goes; raises ValueError for a key that would leave the root
    (a key that is not one, or a folder on its way that is a symlink out of the root)."""
    return OutputTree(output_root).path(key)


class OutputTree:
    """Output paths of many records, with the guard of :func:`output_path` made once per year
    folder: the folder's real path must stay under the output root's (a folder swapped for a
    symlink out of it is refused; one that stays inside is written through). The file itself
    needs no check: an output replaces its name by a rename, which never follows a symlink.
    Make one per chunk of outputs: a folder changed later is checked again by the next."""

    def __init__(self, output_root: Path) -> None:
        self.root = output_root
        self._real_root: Path | None = None
        self._folders: dict[tuple[str, str, str], Path | str] = {}

    def path(self, key: str) -> Path:
        """Where ``key``'s output goes; ValueError (its reason) if it may not go there."""
        problem = key_problem(key)
        if problem is not None:
            raise ValueError(problem)
        state, school, year, page = key.split(":")
        folder = self._folders.get((state, school, year))
        if folder is None:
            folder = self._check(self.root / state / school / year, key)
            self._folders[(state, school, year)] = folder
        if isinstance(folder, str):
            raise ValueError(folder)
        return folder / f"{page}.json"

    def _check(self, folder: Path, key: str) -> Path | str:
        if self._real_root is None:
            self._real_root = self.root.resolve()
        if not folder.resolve().is_relative_to(self._real_root):
            return f"record key {key!r} would write outside the output root"
        return folder


class Inside:
    """Whether a symlink's target stays under a (real) root folder."""

    def __init__(self, real_root: str) -> None:
        self.root = real_root
        self.prefix = real_root.rstrip(os.sep) + os.sep

    def escape(self, entry: os.DirEntry[str]) -> str | None:
        """Why the symlink ``entry`` leaves the root (None if it stays, or is no symlink)."""
        if not entry.is_symlink():
            return None
        target = os.path.realpath(entry.path)
        if target == self.root or target.startswith(self.prefix):
            return None
        return f"symlink leaves the input root (to {target})"


class OutputFolders:
    """Refuses a year whose output folder (or its school's or state's) is a symlink out of the
    output root, *before* its pages are submitted: :func:`output_path` would refuse to write
    there after they were billed. One ``lstat`` per folder level; state and school verdicts are
    remembered for the scan."""

    def __init__(self, output_root: Path) -> None:
        self.root = str(output_root)
        self.inside = Inside(os.path.realpath(output_root))
        self._seen: dict[str, str | None] = {}

    def problem(self, year: YearDir) -> Problem | None:
        path = self.root
        for depth, part in enumerate((year.state, year.school, year.year)):
            path = os.path.join(path, part)
            reason = self._seen.get(path, "") if depth < 2 else ""
            if reason == "":
                reason = self._check(path)
                if depth < 2:
                    self._seen[path] = reason
            if reason is not None:
                return Problem(path, reason)
        return None

    def _check(self, path: str) -> str | None:
        if not os.path.islink(path):
            return None
        target = os.path.realpath(path)
        if target == self.inside.root or target.startswith(self.inside.prefix):
            return None
        return (
            f"output folder is a symlink out of the output root (to {target}); "
            "its pages are not submitted"
        )


def output_names(output_root: Path, year: YearDir) -> set[str]:
    """The page numbers (file stems) that have an output JSON in this year's output folder."""
    try:
        names = os.listdir(os.path.join(output_root, year.state, year.school, year.year))
    except OSError:
        return set()
    # Hidden files need no filter: their stems start with "." and never match a page number.
    return {n[:-5] for n in names if n[-5:] == ".json"}


#: The bytes that say what image a file is (the longest signature checked: WebP's 12).
SIGNATURE_BYTES = 12
_MAGIC = {
    "image/png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "application/pdf": lambda b: b.startswith(b"%PDF-"),
}


def check_image(page: Page, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Why ``page``'s file cannot be uploaded (None if it can): unreadable, empty, too big, or
    not the image its extension claims."""
    return inspect_image(page, max_bytes)[1]


def inspect_image(
    page: Page, max_bytes: int | None = None, probe: Probe | None = None
) -> tuple[int, str | None]:
    """``page``'s size and why its file cannot go (None if it can): unreadable, empty, over
    ``max_bytes`` (None: no limit here), or not the image its extension claims. One stat and
    one 12-byte read, or none with a ``probe`` of the file made just before. A document page's
    size is that of the one-page PDF cut from it."""
    document, part = split_locator(page.path)
    if part:
        return _document_page(document, part, max_bytes)
    try:
        if probe is not None and probe.stamp is None:
            raise OSError(probe.error)
        size = probe.stamp.size if probe is not None and probe.stamp else os.stat(page.path).st_size
        if size == 0:
            return 0, "empty file (0 bytes)"
        if max_bytes is not None and size > max_bytes:
            return size, f"larger than the File API limit ({size} > {max_bytes} bytes)"
        if probe is not None:
            head = probe.head[:SIGNATURE_BYTES]
        else:
            with open(page.path, "rb") as fh:
                head = fh.read(SIGNATURE_BYTES)
    except OSError as e:
        return 0, f"cannot read: {e.strerror or e}"
    if not _MAGIC[page.mime_type](head):
        return size, f"not a {page.mime_type.split('/')[1].upper()} image (its bytes do not match)"
    if page.mime_type == PDF:
        return size, pdf_page_problem(page.path)
    return size, None


PDF = "application/pdf"


def _document_page(document: str, part: int, max_bytes: int | None) -> tuple[int, str | None]:
    """:func:`inspect_image` of page ``part`` of ``document``."""
    data, _, reason = _cut_now(document, part)
    if data is None:
        return 0, reason
    if max_bytes is not None and len(data) > max_bytes:
        return len(data), f"larger than the File API limit ({len(data)} > {max_bytes} bytes)"
    return len(data), None


def _cut_now(
    document: str, part: int, expected: Stamp | None = None
) -> tuple[bytes | None, Stamp | None, str]:
    """Page ``part`` of ``document`` as it is now (and as ``expected`` saw it), or why not."""
    before = file_stamp(document)
    if before is None:
        return None, None, "cannot read: the document is gone"
    if expected is not None and before != expected:
        reason = (
            f"the document changed since it was checked ({expected.size} -> {before.size} bytes)"
        )
        return None, before, reason
    try:
        data = documents.cut(document, before, part)
    except (ValueError, OSError) as e:
        return None, before, str(e)
    crashpoints.reach("after_document_page_cut")
    if file_stamp(document) != before:
        return None, before, "the document changed while its page was cut"
    return data, before, ""


def pdf_page_problem(path: str) -> str | None:
    """Why the PDF at ``path`` cannot go as one page (None if it can): damaged, encrypted,
    empty, or not one page (a page file is one page; a document goes as ``<Year>.pdf``). Read
    once per version of the file in a process (:func:`commands.worker.documents.facts`): the
    scan and the submission ask again."""
    stamp = file_stamp(path)
    if stamp is None:
        return "cannot read: it is gone"
    found = documents.facts(path, stamp)
    if isinstance(found, str):
        return found
    if found.pages != 1:
        return f"a PDF page file must hold exactly one page (it has {found.pages})"
    return None


class Stamp(NamedTuple):
    """What identifies one version of a file: its size and modification time (ns)."""

    size: int
    mtime_ns: int


class Probe(NamedTuple):
    """A file's first bytes and its :class:`Stamp` when they were read (None, and why, when it
    could not be read): one open, one fstat and one read tell a page's size, its type and its
    dimensions."""

    head: bytes
    stamp: Stamp | None
    error: str = ""


def probe_file(path: str, head_bytes: int) -> Probe:
    """The first ``head_bytes`` of the file at ``path`` and its stamp; never raises. A document
    page's probe (a locator) is its document's stamp alone: no header to read."""
    document, part = split_locator(path)
    if part:
        stamp = file_stamp(document)
        return Probe(b"", stamp) if stamp is not None else Probe(b"", None, "cannot read it")
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            return Probe(fh.read(head_bytes), Stamp(st.st_size, st.st_mtime_ns))
    except OSError as e:
        return Probe(b"", None, e.strerror or str(e))


def file_stamp(path: str) -> Stamp | None:
    """``path``'s :class:`Stamp` now (None if it cannot be stat-ed); a locator's is its
    document's."""
    try:
        st = os.stat(split_locator(path)[0])
    except OSError:
        return None
    return Stamp(st.st_size, st.st_mtime_ns)


def warn_not_this_cycle(logger: logging.Logger, doing: str, key: str, why: str) -> None:
    """The one WARNING for a page not ``doing`` (``sending``, ``uploading``) this cycle because
    ``why`` (what :func:`read_once` said, or another unreadable input): it is checked again
    next cycle. ``logger`` is the caller's, so the logger names stay."""
    logger.warning(
        "Not %s %s this cycle: %s; it is checked again next cycle",
        doing,
        key,
        why,
        extra={"record_key": key},
    )


def read_once(page: Page, expected: Stamp | None = None) -> tuple[bytes | None, Stamp | None, str]:
    """``page``'s bytes, read once (the upload and the inline part are made from them, never from
    the path again), with the :class:`Stamp` they were read at; or None and why: the file
    changed while it was read (its size or mtime moved under the read), it differs from
    ``expected`` (what the scan saw), or its bytes are no longer the image its extension says.
    Never raises. A document page's bytes are the one-page PDF cut from its document."""
    document, part = split_locator(page.path)
    if part:
        return _cut_now(document, part, expected)
    try:
        with open(page.path, "rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
            after = os.fstat(fh.fileno())
    except OSError as e:
        return None, None, f"cannot read: {e.strerror or e}"
    first = Stamp(before.st_size, before.st_mtime_ns)
    if first != Stamp(after.st_size, after.st_mtime_ns) or len(data) != before.st_size:
        reason = f"the file changed while it was read ({before.st_size} -> {len(data)} bytes)"
        return None, first, reason
    if expected is not None and first != expected:
        reason = f"the file changed since it was checked ({expected.size} -> {first.size} bytes)"
        return None, first, reason
    if not data or not _MAGIC[page.mime_type](data[:12]):
        return None, first, "the file changed: its bytes are no longer the image it was"
    return data, first, ""
