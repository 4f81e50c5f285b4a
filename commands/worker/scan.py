"""The scanner's I/O: the walk of the input tree, the listing of output folders and the reads of
the projections that :func:`commands.rules.scan.decide_years` decides from.

:func:`scan` streams the input tree one year folder at a time (directory entries only, like
``find``), lists that year's output folder, and decides; memory holds one folder's pages, the
candidates it keeps (``limit``), and the small sets :func:`load_state` reads from the
projections. :func:`decide` is the decision for a flat page list (tests, the fold's probes).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path

from commands.config import Config
from commands.pages import Page, Problem, YearDir
from commands.rules.scan import ScanDecision, ScanState, decide_years
from commands.worker.context import Worker
from commands.worker.dataset import (
    OutputFolders,
    check_image,
    file_stamp,
    output_names,
)
from commands.worker.request_files import route_page
from commands.worker.walk import walk_years
from eventlog import crashpoints
from eventlog.events import (
    DocumentSeen,
    Event,
    InputRejected,
    RecordDeadLettered,
    UploadGivenUpCleared,
)
from eventlog.store import EventStore
from projections import documents, progress, queries

log = logging.getLogger("commands.scan")


def load_state(store: EventStore | None) -> ScanState:
    """A consistent snapshot (one read transaction) of what the scanner needs to know; with no
    log yet (``store`` None: ``estimate`` before the first run), nothing in flight or failed."""
    if store is None:
        return ScanState(set(), {}, set(), {})
    with store.snapshot():
        inflight = queries.in_flight_keys(store)
        failures = queries.failure_counts(store)
        dead = queries.dead_letter_keys(store)
        rejected = queries.rejected_inputs(store)
        given_up = queries.given_up_uploads(store)
        hashes = documents.document_hashes(store)
        counted = progress.dataset_counts(store)
    return ScanState(
        inflight,
        failures,
        dead,
        rejected,
        given_up=given_up,
        documents=hashes,
        counted=counted,
    )


def scan_dataset(
    store: EventStore | None,
    config: Config,
    *,
    limit: int | None = None,
    keep: Callable[[str, str], bool] | None = None,
) -> ScanDecision:
    """:func:`scan` with the config's paths and rules: the one way the worker, ``status`` and
    ``estimate`` see the dataset. Appends nothing: the caller decides what to do with events.
    ``store`` None: no log yet (:func:`load_state`).
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
        stamp_of=file_stamp,
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
    """:func:`~commands.rules.scan.decide_years` for a flat page list, outputs taken from
    ``state.outputs``, files stat-ed here."""

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
        stamp_of=file_stamp,
    )


def cycle_limit(config: Config) -> int:
    """The most candidates a cycle keeps: what its projects' slots could take (the rest are
    only counted)."""
    slots = sum(p.max_active_batches or 0 for p in config.projects())
    return slots * config.batching.batch_size


def scan_for_cycle(w: Worker, early: ScanDecision | None = None) -> ScanDecision:
    """The cycle's scan: candidates for this worker's partitions (at most
    :func:`cycle_limit`), its events appended (each partition's by its lease holder), rejected
    inputs logged. ``early``: the same scan, made while the run started (nothing changed in the
    log since), appended and logged now."""
    leases = w.leases
    held = set() if leases is None else {p for p in sorted(leases.held) if w.mine(p)}
    decision = early or scan_dataset(
        w.store,
        w.config,
        limit=cycle_limit(w.config),
        keep=None if leases is None else lambda st, sc: leases.partition_of(st, sc) in held,
    )
    if leases is None:
        w.append(decision.events)
    else:
        # Each partition's scan events are its holder's to record (fenced by its lease).
        by_partition: dict[str, list[Event]] = {}
        for event in decision.events:
            by_partition.setdefault(_event_partition(w, event), []).append(event)
        for partition, events in by_partition.items():
            if partition in held:
                with w.acting_for(partition):
                    w.append(events)
    for event in decision.events:
        if isinstance(event, InputRejected):
            log.warning("Skipping %s: %s", event.path, event.reason)
        elif isinstance(event, DocumentSeen) and event.pages_written:
            log.warning(
                "Document %s changed after %d of its pages were written (SHA-256 %s… -> %s…): "
                "their outputs are kept from the earlier version (delete them to extract those "
                "pages again); its pages without an output go from the new version",
                event.path,
                event.pages_written,
                event.previous_sha256[:12],
                event.sha256[:12],
            )
    crashpoints.reach("after_scan_events")
    log.info("Scan: %s", ", ".join(f"{k} {v}" for k, v in decision.counts.items()))
    return decision


def _event_partition(w: Worker, event: Event) -> str:
    """The partition a scan event is about: its record key's, or its path's folders'."""
    leases = w.leases
    assert leases is not None
    if isinstance(event, RecordDeadLettered | UploadGivenUpCleared):
        return leases.partition_of_key(event.record_key)
    path = Path(getattr(event, "path", ""))
    try:
        parts = path.relative_to(w.config.paths.input_root).parts
    except ValueError:
        parts = path.parts
    if not parts:
        return leases.legacy_partition()
    return leases.partition_of(parts[0], parts[1] if len(parts) > 1 else "")
