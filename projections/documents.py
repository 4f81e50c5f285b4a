"""``documents``: the PDF documents of the input tree, each as last read (its SHA-256 and pages),
and its last change after some of its pages were written.

The scanner appends a ``DocumentSeen`` only when a document is new here or its SHA-256 changed,
so this table is what the next scan compares with, and what ``status`` and the report say about
documents changed under written pages.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import DocumentSeen, Event
from eventlog.store import EventStore, Recorded
from projections.tables import Tables, TableSpec


class Document(msgspec.Struct, array_like=True, gc=False):
    path: str
    sha256: str
    pages: int
    seen_seq: int
    seen_at: str
    #: The last change found after some of its pages were written ("" and 0: none).
    changed_from_sha256: str = ""
    changed_pages_written: int = 0
    changed_at: str = ""


SPEC = TableSpec("documents", Document, pk=("path",))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: DocumentSeen, t: Tables, rec: Recorded) -> None:
    before = t.get(SPEC, (e.path,))
    if e.previous_sha256 and e.pages_written:
        changed = (e.previous_sha256, e.pages_written, rec.ts)
    elif before is not None:
        changed = (
            before.changed_from_sha256,
            before.changed_pages_written,
            before.changed_at,
        )
    else:
        changed = ("", 0, "")
    t.put(SPEC, Document(e.path, e.sha256, e.pages, rec.seq, rec.ts, *changed))


# --- reads ---


def document_hashes(store: EventStore) -> dict[str, str]:
    """Every PDF document as last read: path -> SHA-256."""
    return dict(store.query("SELECT path, sha256 FROM documents"))


class ChangedDocument(msgspec.Struct, frozen=True):
    """A document found changed after some of its pages were written."""

    path: str
    sha256: str
    changed_from_sha256: str
    pages_written: int
    changed_at: str


def changed_documents(store: EventStore) -> list[ChangedDocument]:
    """The documents changed under written pages, most recent change first."""
    rows = store.query(
        "SELECT path, sha256, changed_from_sha256, changed_pages_written, changed_at "
        "FROM documents WHERE changed_pages_written > 0 ORDER BY changed_at DESC, path"
    )
    return [ChangedDocument(*row) for row in rows]
