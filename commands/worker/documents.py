"""PDF documents in the input tree: ``<input_root>/<State>/<School>/<Year>.pdf`` is that year's
document, its page *i* (1-based) the record ``State:School:Year:i``, written as any page.

A document page is named by a *locator*, ``<document path>#<i>`` (:func:`locator`), in the
places a page file's path goes (``Page.path``, ``InputRejected``, logs): each page keeps an
identity of its own. The file functions of :mod:`commands.worker.dataset` take a locator for a
path: a page's bytes are a one-page PDF cut from the document (:func:`cut`, with pypdf: the
page's text layer and fonts kept), sent inline or through the File API by the same transport
rules as an image page.

What is read once per version (size and mtime, :class:`~commands.worker.dataset.Stamp`) of a
document in a process: its facts (pages and SHA-256, or why it cannot go: :func:`facts`); and,
for the few documents whose pages are being sent, its parsed form (:func:`cut`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # pypdf is imported when a PDF is first read
    from pypdf import PageObject, PdfReader

__all__ = ["MAX_DOCUMENT_BYTES", "Facts", "cut", "facts", "locator", "split_locator"]

#: A document is read whole (parsed in memory); a larger one is rejected, split it.
MAX_DOCUMENT_BYTES = 1024**3
#: Parsed documents kept for cutting (each holds its bytes): the few being sent at once.
READERS = 4

#: Errors pypdf raises on a damaged file (besides its own PyPdfError).
_DAMAGED = (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


class Facts(NamedTuple):
    """A readable document: its pages, and its SHA-256 (a change is noticed by it)."""

    pages: int
    sha256: str


def locator(document: str, page: int) -> str:
    """The name of ``document``'s page ``page`` (1-based)."""
    return f"{document}#{page}"


def split_locator(path: str) -> tuple[str, int]:
    """``(document, page)`` of a locator; ``(path, 0)`` for a plain file's path (a page file
    always ends in its extension, so never in ``#<digits>``)."""
    head, sep, tail = path.rpartition("#")
    if sep and tail.isascii() and tail.isdigit() and head[-4:].lower() == ".pdf":
        return head, int(tail)
    return path, 0


def facts(path: str, stamp: tuple[int, int]) -> Facts | str:
    """The PDF at ``path`` as of ``stamp``: its :class:`Facts`, or why it cannot go (empty, too
    big, not a PDF, damaged, encrypted, no pages, changed since ``stamp``). Read and parsed
    once per version (the parse stays for the cuts that follow; the facts for every scan)."""
    try:
        return _facts(path, tuple(stamp))
    except OSError as e:  # not cached: a read that failed once may not fail again
        return f"cannot read: {e.strerror or e}"


@functools.lru_cache(maxsize=65536)
def _facts(path: str, stamp: tuple[int, int]) -> Facts | str:
    reader = _reader(path, stamp)
    return reader if isinstance(reader, str) else reader.facts


@functools.lru_cache(maxsize=READERS)
def _reader(path: str, stamp: tuple[int, int]) -> _Reader | str:
    size = stamp[0]
    if size == 0:
        return "empty file (0 bytes)"
    if size > MAX_DOCUMENT_BYTES:
        return f"a PDF document over {MAX_DOCUMENT_BYTES} bytes ({size}): split it into documents"
    with open(path, "rb") as fh:  # an OSError is the caller's (and is not cached)
        st = os.fstat(fh.fileno())
        data = fh.read()
    if (st.st_size, st.st_mtime_ns) != stamp:
        return "the document changed since it was checked"
    if not data.startswith(b"%PDF-"):
        return "not a PDF document (its bytes do not match)"
    return _parse(data)


def _parse(data: bytes) -> _Reader | str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data), strict=True)
        if reader.is_encrypted:
            return "an encrypted PDF (it cannot be read without its password)"
        pages = len(reader.pages)  # the page tree read now: a damaged one says so here
    except (PyPdfError, *_DAMAGED) as e:
        return f"a damaged PDF ({type(e).__name__}: {str(e)[:120]})"
    if pages == 0:
        return "a PDF document with no pages"
    return _Reader(reader, Facts(pages, hashlib.sha256(data).hexdigest()))


class _Reader:
    """A parsed document, its facts, and the lock its cuts take (pypdf's objects are not
    thread-safe)."""

    def __init__(self, reader: PdfReader, facts: Facts) -> None:
        self.reader = reader
        self.facts = facts
        self.lock = threading.Lock()

    @property
    def pages(self) -> Sequence[PageObject]:
        return self.reader.pages


def cut(path: str, stamp: tuple[int, int], page: int) -> bytes:
    """Page ``page`` (1-based) of the document at ``path`` as of ``stamp``, as a one-page PDF.
    Raises ValueError (its reason) when the document cannot go or has no such page, and
    OSError when it cannot be read."""
    reader = _reader(path, tuple(stamp))
    if isinstance(reader, str):
        raise ValueError(reader)
    from pypdf import PdfWriter

    with reader.lock:
        if not 1 <= page <= len(reader.pages):
            raise ValueError(f"the document has {len(reader.pages)} pages, not {page}")
        writer = PdfWriter()
        writer.add_page(reader.pages[page - 1])
        out = io.BytesIO()
        writer.write(out)
    return out.getvalue()
