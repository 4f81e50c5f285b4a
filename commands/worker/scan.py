"""The scanner: which pages are candidates for the next batch, and why the others are not.

A page is a candidate when its output JSON is missing, it is not in flight, its failure count is
below ``max_retries`` (a dead letter otherwise), its file is not rejected, its uploads were not
given up on (``UploadGivenUp``: skipped while its file's size and mtime stay those recorded; a
changed file clears it), and, with ``context_previous_page``, the previous page's output exists.

:func:`scan` streams the input tree one year folder at a time (directory entries only, like
``find``), lists that year's output folder, and decides; memory holds one folder's pages, the
candidates it keeps (``limit``), and the small sets :func:`load_state` reads from the
projections. :func:`decide_years` is the pure decision; :func:`decide` wraps it for a page list.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path

import msgspec

from commands.config import Config
from commands.worker.dataset import (
    OutputFolders,
    Page,
    Problem,
    YearDir,
    check_image,
    file_stamp,
    output_names,
    walk_years,
)
from commands.worker.request_files import route_page
from eventlog.events import (
    Event,
    InputRejected,
    InputRejectionCleared,
    RecordDeadLettered,
    UploadGivenUpCleared,
)
from eventlog.store import EventStore
from projections import queries

log = logging.getLogger("commands.scan")


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


def load_state(store: EventStore) -> ScanState:
    """A consistent snapshot (one read transaction) of what the scanner needs to know."""
    with store.snapshot():
        inflight = queries.in_flight_keys(store)
        failures = queries.failure_counts(store)
        dead = queries.dead_letter_keys(store)
        rejected = queries.rejected_inputs(store)
        given_up = queries.given_up_uploads(store)
    return ScanState(inflight, failures, dead, rejected, given_up=given_up)


def scan_dataset(
    store: EventStore,
    config: Config,
    *,
    limit: int | None = None,
    keep: Callable[[str, str], bool] | None = None,
) -> ScanDecision:
    """:func:`scan` with the config's paths and rules: the one way the worker, ``status`` and
    ``estimate`` see the dataset. Appends nothing: the caller decides what to do with events.
    ``keep(state, school)``: only those folders' pages become candidates (a shared-mode
    worker's partitions); every page is still counted."""
    return scan(
        config.paths.input_root,
        config.paths.output_root,
        load_state(store),
        max_retries=config.batching.max_retries,
        context_previous_page=config.gemini.context_previous_page,
        limit=limit,
        check_page=lambda page: route_page(page, config.uploads).reason or None,
        keep=keep,
    )


def scan(
    input_root: Path,
    output_root: Path,
    state: ScanState,
    *,
    max_retries: int,
    context_previous_page: bool,
    limit: int | None = None,
    check_page: Callable[[Page], str | None] = check_image,
    keep: Callable[[str, str], bool] | None = None,
) -> ScanDecision:
    """Walk the input tree and decide, keeping at most ``limit`` candidates (all are counted).
    A year whose output folder is a symlink out of ``output_root`` is a rejected input (the
    folder's path), its pages never candidates."""
    problems: list[Problem] = []
    years = _writable(walk_years(input_root, problems), OutputFolders(output_root), problems)
    return decide_years(
        years,
        problems,
        state,
        lambda y: output_names(output_root, y),
        max_retries=max_retries,
        context_previous_page=context_previous_page,
        limit=limit,
        check_page=check_page,
        keep=keep,
    )


def _writable(
    years: Iterable[YearDir], folders: OutputFolders, problems: list[Problem]
) -> Iterator[YearDir]:
    for year in years:
        problem = folders.problem(year)
        if problem is None:
            yield year
        else:
            problems.append(problem)


def decide(
    pages: list[Page],
    problems: list[Problem],
    state: ScanState,
    *,
    max_retries: int,
    context_previous_page: bool,
    limit: int | None = None,
    check_page: Callable[[Page], str | None] = check_image,
) -> ScanDecision:
    """:func:`decide_years` for a flat page list, outputs taken from ``state.outputs``."""

    def folder(p: Page) -> tuple[str, str, str]:
        return p.state, p.school, p.year

    ordered = sorted(pages, key=lambda p: (p.state, p.school, int(p.year), int(p.page)))
    years = [
        YearDir(s, sc, y, "", [(int(p.page), p.page, p.path, p.mime_type) for p in group])
        for (s, sc, y), group in groupby(ordered, key=folder)
    ]
    return decide_years(
        years,
        problems,
        state,
        lambda y: {e[1] for e in y.entries if y.prefix + e[1] in state.outputs},
        max_retries=max_retries,
        context_previous_page=context_previous_page,
        limit=limit,
        check_page=check_page,
    )


def decide_years(
    years: Iterable[YearDir],
    problems: list[Problem],
    state: ScanState,
    have_for: Callable[[YearDir], set[str]],
    *,
    max_retries: int,
    context_previous_page: bool,
    limit: int | None = None,
    check_page: Callable[[Page], str | None] = check_image,
    keep: Callable[[str, str], bool] | None = None,
) -> ScanDecision:
    """Candidates in (state, school, year, page) order, the events the scan decided (dead
    letters, rejected inputs and rejections cleared), and counts. Pure but for re-reading the
    bytes of pages rejected earlier (few), to see whether they were fixed, and stat-ing pages
    given up on (fewer), to see whether their file changed."""
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
                stamp = file_stamp(entry[2])
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
            if count >= max_retries:
                counts["dead_letters"] += 1
                if key not in dead and here:
                    events.append(
                        RecordDeadLettered(record_key=key, failures=count, max_retries=max_retries)
                    )
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
