"""The scanner: which pages are candidates for the next batch, and why the others are not.

:func:`load_state` reads what the decision needs from the projections (one read transaction) and
the output tree; :func:`decide` is pure. A page is a candidate when its output JSON is missing, it
is not in flight, its failure count is below ``max_retries`` (a dead letter otherwise), its file
is not rejected, and, with ``context_previous_page``, the previous page's output exists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec

from commands.dataset import Page, Problem, check_image, walk_outputs
from eventlog.events import Event, InputRejected, InputRejectionCleared, RecordDeadLettered
from eventlog.store import EventStore

log = logging.getLogger("commands.scan")


class ScanState(msgspec.Struct):
    outputs: set[str]
    inflight: set[str]
    failures: dict[str, int]
    dead: set[str]
    rejected: dict[str, str]


class ScanDecision(msgspec.Struct):
    candidates: list[Page]
    events: list[Event]
    counts: dict[str, int]


def load_state(store: EventStore, output_root: Path) -> ScanState:
    """A consistent snapshot of the projections, plus the keys whose output exists."""
    outputs = walk_outputs(output_root)
    conn = store.conn
    with store.snapshot():
        inflight = {r[0] for r in conn.execute("SELECT record_key FROM inflight_records")}
        failures = dict(conn.execute("SELECT record_key, count FROM failure_counts").fetchall())
        dead = {
            r[0]
            for r in conn.execute(
                "SELECT record_key FROM record_status WHERE status = 'dead_lettered'"
            )
        }
        rejected = dict(conn.execute("SELECT path, reason FROM rejected_inputs").fetchall())
    return ScanState(outputs, inflight, failures, dead, rejected)


def _order(page: Page) -> tuple[str, str, int, int]:
    return page.state, page.school, int(page.year), int(page.page)


def reconcile_rejections(
    problems: list[Problem], pages: list[Page], rejected: dict[str, str]
) -> tuple[list[Event], set[str]]:
    """Events for new or changed problems and for problems that went away; the paths that stay
    rejected. A page rejected for its bytes is re-checked (cheaply: only rejected ones)."""
    events: list[Event] = []
    current = {p.path: p.reason for p in problems}
    page_by_path = {p.path: p for p in pages}
    for path in rejected:
        if path in current:
            continue
        page = page_by_path.get(path)
        still = check_image(page) if page is not None else None
        if still is None:
            events.append(InputRejectionCleared(path=path))
        else:
            current[path] = still
    for path, reason in current.items():
        if rejected.get(path) != reason:
            events.append(InputRejected(path=path, reason=reason))
    return events, set(current)


def decide(
    pages: list[Page],
    problems: list[Problem],
    state: ScanState,
    *,
    max_retries: int,
    context_previous_page: bool,
) -> ScanDecision:
    """Candidates in (state, school, year, page) order, the events the scan decided, and counts."""
    events, rejected_paths = reconcile_rejections(problems, pages, state.rejected)
    counts = {
        "pages": len(pages),
        "written": 0,
        "in_flight": 0,
        "dead_letters": 0,
        "waiting_for_previous_page": 0,
        "rejected": len(rejected_paths),
        "candidates": 0,
    }
    debug = log.isEnabledFor(logging.DEBUG)
    candidates: list[Page] = []
    for page, prev in _with_previous(pages):
        key = page.key
        if key in state.outputs:
            counts["written"] += 1
            continue
        if page.path in rejected_paths:
            continue
        if key in state.inflight:
            counts["in_flight"] += 1
            if debug:
                log.debug("Skipping %s (in flight)", key)
            continue
        failures = state.failures.get(key, 0)
        if failures >= max_retries:
            counts["dead_letters"] += 1
            if key not in state.dead:
                events.append(
                    RecordDeadLettered(record_key=key, failures=failures, max_retries=max_retries)
                )
            if debug:
                log.debug("Skipping %s (dead letter: %d/%d failures)", key, failures, max_retries)
            continue
        if context_previous_page and prev is not None and prev.key not in state.outputs:
            counts["waiting_for_previous_page"] += 1
            if debug:
                log.debug("Skipping %s (dependency missing: %s has no output yet)", key, prev.key)
            continue
        candidates.append(page)
    counts["candidates"] = len(candidates)
    return ScanDecision(candidates, events, counts)


def _with_previous(pages: list[Page]) -> Iterator[tuple[Page, Page | None]]:
    """Pages in order, each with the previous page of its (state, school, year) or None."""
    previous: Page | None = None
    for page in sorted(pages, key=_order):
        same_year = previous is not None and (previous.state, previous.school, previous.year) == (
            page.state,
            page.school,
            page.year,
        )
        yield page, previous if same_year else None
        previous = page


def previous_pages(pages: list[Page]) -> dict[str, Page]:
    """Each page's previous page in its (state, school, year), by key."""
    return {page.key: prev for page, prev in _with_previous(pages) if prev is not None}
