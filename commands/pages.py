"""The dataset's values: a page, a year folder and its page files, an input that is skipped.

Plain data shared by the scan's decision (:mod:`commands.rules.scan`, pure) and the walk of the
tree that makes them (:mod:`commands.worker.dataset`, I/O).
"""

from __future__ import annotations

import msgspec

__all__ = ["Entry", "Page", "Problem", "YearDir"]


class Page(msgspec.Struct, frozen=True, gc=False):
    """One page image; ``key`` is ``State:School:Year:Page``."""

    key: str
    state: str
    school: str
    year: str
    page: str
    path: str
    mime_type: str


class Problem(msgspec.Struct, frozen=True):
    """An input that is skipped, and why."""

    path: str
    reason: str


#: One page file in a year folder: (page number, page as written, path, MIME type).
Entry = tuple[int, str, str, str]


class YearDir(msgspec.Struct):
    """One ``State/School/Year`` folder and its well-formed page files, in page-number order.
    Pages are kept as plain tuples: a scan builds a :class:`Page` only for the few it keeps."""

    state: str
    school: str
    year: str
    path: str
    entries: list[Entry]
    #: Its PDF document (``<Year>.pdf``), if any: (path, SHA-256, pages).
    documents: list[tuple[str, str, int]] = []
    #: Its ``State/School`` folder (where the scan's page counts are kept).
    school_path: str = ""

    @property
    def prefix(self) -> str:
        return f"{self.state}:{self.school}:{self.year}:"

    def page(self, entry: Entry) -> Page:
        _, stem, path, mime = entry
        return Page(self.prefix + stem, self.state, self.school, self.year, stem, path, mime)

    @property
    def pages(self) -> list[Page]:
        return [self.page(e) for e in self.entries]
