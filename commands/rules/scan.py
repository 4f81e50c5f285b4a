"""The scan's decision: which pages are candidates for the next batch, and why the others are
not (pure but for the checks it is handed).

A page is a candidate when its output JSON is missing, it is not in flight, its failure count is
below ``max_retries`` (a dead letter otherwise: :func:`commands.rules.retry.dead_letter`), its
file is not rejected, its uploads were not given up on (``UploadGivenUp``: skipped while its
file's size and mtime stay those recorded; a changed file clears it), and, with
``context_previous_page``, the previous page's output exists. :func:`decide_years` decides a
stream of year folders. The walk of the tree, the listing of
output folders and the reading of files are the caller's (:mod:`commands.worker.scan`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import msgspec

from commands.pages import Page, Problem, YearDir
from commands.rules.retry import dead_letter
from eventlog.events import (
    DocumentSeen,
    Event,
    InputRejected,
    InputRejectionCleared,
    PagesCounted,
    UploadGivenUpCleared,
)

__all__ = ["ScanDecision", "ScanState", "decide_years", "rejected"]

log = logging.getLogger("commands.scan")

#: A file's (size, mtime_ns) now, or None when it cannot be stat-ed.
StampOf = Callable[[str], "tuple[int, int] | None"]


class ScanState(msgspec.Struct):
    """What the decision needs from the projections. ``outputs`` (record keys) is only used by
    :func:`decide`; :func:`scan` lists each year's output folder instead."""

    inflight: set[str]
    failures: dict[str, int]
    dead: set[str]
    rejected: dict[str, str]
    outputs: set[str] = set()
    #: Pages whose uploads were given up on: record key -> (size, mtime_ns) of the file then.
    given_up: dict[str, tuple[int, int]] = {}
    #: Each PDF document as last read: path -> SHA-256.
    documents: dict[str, str] = {}
    #: The pages last counted per (state, school): (the folder's path, pages).
    counted: dict[tuple[str, str], tuple[str, int]] = {}


class ScanDecision(msgspec.Struct):
    candidates: list[Page]
    events: list[Event]
    counts: dict[str, int]
    #: Each candidate's previous page (with ``context_previous_page``), by record key.
    previous: dict[str, Page] = {}
    #: Candidates left out because their State/School is not ``keep``'s (another worker's).
    others: int = 0


def decide_years(
    years: Iterable[YearDir],
    problems: list[Problem],
    state: ScanState,
    have_for: Callable[[YearDir], set[str]],
    *,
    max_retries: int,
    context_previous_page: bool,
    check_page: Callable[[Page], str | None],
    stamp_of: StampOf,
    limit: int | None = None,
    keep: Callable[[str, str], bool] | None = None,
) -> ScanDecision:
    """Candidates in (state, school, year, page) order, the events the scan decided (dead
    letters, rejected inputs and rejections cleared), and counts. Pure but for the checks it is
    handed: ``have_for`` (the page numbers with an output in a year's folder), ``check_page``
    (why a page rejected earlier still cannot go: few are asked) and ``stamp_of`` (a given-up
    page's file now: fewer)."""
    deciding = _Deciding(state, max_retries, context_previous_page, check_page, stamp_of)
    candidates: list[Page] = []
    previous: dict[str, Page] = {}
    counts = deciding.counts
    n_pages = n_written = n_candidates = others = 0
    room: float = limit if limit is not None else float("inf")  # kept; all are counted
    per_school: dict[tuple[str, str], tuple[str, int]] = {}
    for year in years:
        here = keep is None or keep(year.state, year.school)
        have = have_for(year)
        if year.school_path:  # a walked folder (a flat list of pages counts nothing)
            folder = (year.state, year.school)
            before = per_school.get(folder, (year.school_path, 0))[1]
            per_school[folder] = (year.school_path, before + len(year.entries))
        if year.documents and here:
            deciding.events += _documents_seen(year, have, state.documents)
        entries = year.entries
        # Written pages are only counted: one comprehension finds the rest (on a tree that is
        # mostly written, as it is for most of a long run, that is nearly all the work).
        todo = (
            [i for i, e in enumerate(entries) if e[1] not in have] if have else range(len(entries))
        )
        n_pages += len(entries)
        n_written += len(entries) - len(todo)
        for i in todo:
            if not deciding.goes(year, i, have, here):
                continue
            n_candidates += 1
            if not here:
                others += 1
            elif n_candidates - others <= room:
                candidates.append(year.page(entries[i]))
                if context_previous_page and i:
                    previous[year.prefix + entries[i][1]] = year.page(entries[i - 1])
    counts["pages"], counts["written"], counts["candidates"] = n_pages, n_written, n_candidates
    events = deciding.events + _rejections(problems, deciding.still_rejected, state.rejected)
    events += _counted(per_school, state.counted)
    counts["rejected"] = len({p.path for p in problems} | set(deciding.still_rejected))
    return ScanDecision(candidates, events, counts, previous, others)


class _Deciding:
    """Why each page that has no output is not a candidate, counted; the events that says."""

    def __init__(
        self,
        state: ScanState,
        max_retries: int,
        context_previous_page: bool,
        check_page: Callable[[Page], str | None],
        stamp_of: StampOf,
    ) -> None:
        self.state, self.max_retries = state, max_retries
        self.context_previous_page = context_previous_page
        self.check_page, self.stamp_of = check_page, stamp_of
        self.counts = dict.fromkeys(
            (
                "pages",
                "written",
                "in_flight",
                "dead_letters",
                "waiting_for_previous_page",
                "rejected",
                "upload_given_up",
                "candidates",
            ),
            0,
        )
        self.events: list[Event] = []
        self.still_rejected: dict[str, str] = {}
        self.debug = log.isEnabledFor(logging.DEBUG)

    def goes(self, year: YearDir, i: int, have: set[str], here: bool) -> bool:
        """Whether page ``i`` of ``year`` (no output yet) is a candidate; if not, why is
        counted (and said at DEBUG). ``here``: its events are this scan's to record."""
        state, entry = self.state, year.entries[i]
        key = year.prefix + entry[1]
        if state.rejected and entry[2] in state.rejected:
            reason = self.check_page(year.page(entry))
            if reason is not None:
                self.still_rejected[entry[2]] = reason
                return False
        if state.given_up and key in state.given_up:
            stamp = self.stamp_of(entry[2])
            if stamp is not None and tuple(stamp) == state.given_up[key]:
                return self._skip("upload_given_up", key, "its uploads were given up on")
            if here:
                self.events.append(UploadGivenUpCleared(record_key=key, reason="its file changed"))
        if key in state.inflight:
            return self._skip("in_flight", key, "in flight")
        count = state.failures.get(key, 0)
        letter = dead_letter(key, count, self.max_retries)
        if letter is not None:
            if key not in state.dead and here:
                self.events.append(letter)
            why = f"dead letter: {count}/{self.max_retries} failures"
            return self._skip("dead_letters", key, why)
        before = year.entries[i - 1] if i else None
        if self.context_previous_page and before is not None and before[1] not in have:
            why = f"dependency missing: {year.prefix}{before[1]} has no output yet"
            return self._skip("waiting_for_previous_page", key, why)
        return True

    def _skip(self, count: str, key: str, why: str) -> bool:
        self.counts[count] += 1
        if self.debug:
            log.debug("Skipping %s (%s)", key, why)
        return False


def _documents_seen(year: YearDir, have: set[str], seen: dict[str, str]) -> list[Event]:
    """A ``DocumentSeen`` for each of ``year``'s documents that is new or changed, with how
    many of its pages were written before (a change under written pages: they are kept)."""
    events: list[Event] = []
    for path, sha256, pages in year.documents:
        before = seen.get(path, "")
        if before == sha256:
            continue
        written = len(have & {str(i) for i in range(1, pages + 1)}) if before else 0
        events.append(
            DocumentSeen(
                path=path, sha256=sha256, pages=pages, previous_sha256=before, pages_written=written
            )
        )
    return events


def _counted(
    found: dict[tuple[str, str], tuple[str, int]], before: dict[tuple[str, str], tuple[str, int]]
) -> list[Event]:
    """A ``PagesCounted`` for each State/School folder whose page count changed (0: gone)."""
    events: list[Event] = [
        PagesCounted(path=path, state=state, school=school, pages=pages)
        for (state, school), (path, pages) in found.items()
        if before.get((state, school), ("", 0))[1] != pages
    ]
    events += [
        PagesCounted(path=path, state=state, school=school, pages=0)
        for (state, school), (path, pages) in before.items()
        if (state, school) not in found and pages
    ]
    return events


def _rejections(
    problems: list[Problem], still_rejected: dict[str, str], rejected: dict[str, str]
) -> list[Event]:
    """Report each problem once (new, or its reason changed); clear those that went away (the
    file was fixed, removed, or its page written)."""
    current = {p.path: p.reason for p in problems} | still_rejected
    events: list[Event] = [
        InputRejected(path=path, reason=reason)
        for path, reason in current.items()
        if rejected.get(path) != reason
    ]
    events += [InputRejectionCleared(path=path) for path in rejected if path not in current]
    return events


def rejected(path: str, reason: str) -> InputRejected:
    """An input that cannot go at all (found so when its page was about to be sent), said once."""
    return InputRejected(path=path, reason=reason)
