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
    Event,
    InputRejected,
    InputRejectionCleared,
    UploadGivenUpCleared,
)

__all__ = ["ScanDecision", "ScanState", "decide_years"]

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
    counts = {
        "pages": 0,
        "written": 0,
        "in_flight": 0,
        "dead_letters": 0,
        "waiting_for_previous_page": 0,
        "rejected": 0,
        "upload_given_up": 0,
        "candidates": 0,
    }
    events: list[Event] = []
    candidates: list[Page] = []
    previous: dict[str, Page] = {}
    rejected = state.rejected
    still_rejected: dict[str, str] = {}
    debug = log.isEnabledFor(logging.DEBUG)
    inflight, failures, dead, given_up = state.inflight, state.failures, state.dead, state.given_up
    n_pages = n_written = n_candidates = others = 0
    room: float = limit if limit is not None else float("inf")  # kept; all are counted
    for year in years:
        here = keep is None or keep(year.state, year.school)
        have = have_for(year)
        prefix = year.prefix
        entries = year.entries
        # Written pages are only counted: one comprehension finds the rest (on a tree that is
        # mostly written, as it is for most of a long run, that is nearly all the work).
        todo = (
            [i for i, e in enumerate(entries) if e[1] not in have] if have else range(len(entries))
        )
        n_pages += len(entries)
        n_written += len(entries) - len(todo)
        for i in todo:
            entry = entries[i]
            before = entries[i - 1] if i else None
            stem = entry[1]
            key = prefix + stem
            if rejected and entry[2] in rejected:
                reason = check_page(year.page(entry))
                if reason is not None:
                    still_rejected[entry[2]] = reason
                    continue
            if given_up and key in given_up:
                stamp = stamp_of(entry[2])
                if stamp is not None and tuple(stamp) == given_up[key]:
                    counts["upload_given_up"] += 1
                    if debug:
                        log.debug("Skipping %s (its uploads were given up on)", key)
                    continue
                if here:
                    events.append(UploadGivenUpCleared(record_key=key, reason="its file changed"))
            if key in inflight:
                counts["in_flight"] += 1
                if debug:
                    log.debug("Skipping %s (in flight)", key)
                continue
            count = failures.get(key, 0)
            letter = dead_letter(key, count, max_retries)
            if letter is not None:
                counts["dead_letters"] += 1
                if key not in dead and here:
                    events.append(letter)
                if debug:
                    log.debug("Skipping %s (dead letter: %d/%d failures)", key, count, max_retries)
                continue
            if context_previous_page and before is not None and before[1] not in have:
                counts["waiting_for_previous_page"] += 1
                if debug:
                    log.debug(
                        "Skipping %s (dependency missing: %s%s has no output yet)",
                        key,
                        prefix,
                        before[1],
                    )
                continue
            n_candidates += 1
            if not here:
                others += 1
            elif n_candidates - others <= room:
                candidates.append(year.page(entry))
                if context_previous_page and before is not None:
                    previous[key] = year.page(before)
    counts["pages"], counts["written"], counts["candidates"] = n_pages, n_written, n_candidates
    events += _rejections(problems, still_rejected, rejected)
    counts["rejected"] = len({p.path for p in problems} | set(still_rejected))
    return ScanDecision(candidates, events, counts, previous, others)


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
