"""``status``: one screen an operator reads in five seconds, from the projections (read-only).

It never writes: pending pages are counted by the same scan the worker uses, without appending
the scan's events.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from commands.config import Config
from commands.rules.cost import Spend, spend
from commands.rules.progress import Progress
from commands.rules.stuck import BATCH_HOURS, MINUTES, Mark, marks
from commands.views.progress import progress_of, usages
from commands.worker.runlock import run_lock_held
from commands.worker.scan import scan_dataset
from eventlog.events import BatchResultsUnavailable
from eventlog.store import EventStore
from eventlog.timestamps import format_ts, hours_between
from projections import documents, queries

STALE_HOURS = BATCH_HOURS  # the service's target turnaround (the stuck rule's threshold)


class ActiveBatchView(msgspec.Struct, frozen=True):
    batch_id: str
    display_name: str
    state: str
    records: int
    submitted_at: str
    age_hours: float
    #: The service's request counts (``batchStats``) as last polled; 0 until reported.
    done: int = 0
    failed: int = 0
    pending: int = 0


class LastRun(msgspec.Struct, frozen=True):
    run_id: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    message: str
    spend: Spend
    #: A live process holds the run lock (shared mode, no lock: its worker's lease renewals
    #: have not lapsed): an unfinished run (``outcome`` None) is running now; unfinished and
    #: not held, it ended without a trace (crashed or killed).
    running: bool = False
    #: Batches of the run that succeeded but whose result file could not be downloaded.
    results_unavailable: int = 0


class QuotaHold(msgspec.Struct, frozen=True):
    """Creates held back by the service's quota (429 RESOURCE_EXHAUSTED)."""

    since: str
    next_try_after: str
    #: Batches are ``batch_size / 2**halvings`` meanwhile.
    halvings: int
    message: str
    #: ``quota`` (429) or ``service_unavailable`` (creates left unanswered again and again).
    reason: str = "quota"

    def sentence(self) -> str:
        why = (
            "the service leaving its creates unanswered"
            if self.reason == "service_unavailable"
            else "the service's quota"
        )
        return f"held back by {why} since {self.since}, next try after {self.next_try_after}"


class ProjectCapacity(msgspec.Struct, frozen=True):
    """One project's share of the service: batches (active plus open intents) of its
    ``max_active_batches``, estimated tokens of its ``max_enqueued_tokens`` (0: no limit), and its
    quota hold, if any."""

    name: str
    batches: int
    max_batches: int
    tokens: int
    max_tokens: int
    hold: QuotaHold | None = None


class WorkerView(msgspec.Struct, frozen=True):
    """A worker of ``[workers] mode = "shared"``: its run, last renewal, and the partitions it
    holds; ``expired`` when its lease lapsed (dead, or cut off from the log)."""

    worker: str
    run_id: str
    renewed_at: str
    expires_at: str
    expired: bool
    partitions: list[str]


class Status(msgspec.Struct, frozen=True):
    database: str
    events: int
    last_event_at: str | None
    active_batches: list[ActiveBatchView]
    open_intents: list[str]
    in_flight: int
    written: int
    pending: int | None
    waiting_for_previous_page: int | None
    rejected_inputs: int
    failing_by_count: dict[str, int]
    dead_letters: int
    last_run: LastRun | None
    spend: Spend
    quota_hold: QuotaHold | None = None
    #: Per project (``[[gemini.projects]]``; one, ``default``, when the config names none).
    projects: list[ProjectCapacity] = []
    #: Shared mode: every worker that held a lease, most recently renewed first.
    workers: list[WorkerView] = []
    #: PDF documents found changed after some of their pages were written.
    changed_documents: list[documents.ChangedDocument] = []
    #: Pages known, written, to go, the recent rate, the expected finish and the cost to go.
    progress: Progress | None = None
    #: What may be stuck (:mod:`commands.rules.stuck`), oldest first.
    stuck: list[Mark] = []


def age_hours(ts: str, now: datetime) -> float:
    return round(hours_between(ts, now), 2)


def _alive(run_id: str, store: EventStore, config: Config, workers: list[WorkerView]) -> bool:
    """Whether unfinished run ``run_id`` is running now: alone, a live process holds the run
    lock; in shared mode (no run lock) its worker's lease renewals have not lapsed."""
    if config.workers.mode == "shared":
        return any(w.run_id == run_id and not w.expired for w in workers)
    return run_lock_held(store)


def status(
    store: EventStore, config: Config, *, scan: bool = True, stuck_after: float = MINUTES
) -> Status:
    """A consistent snapshot (one read transaction) of the live projections, plus (``scan``) the
    pages waiting to be submitted. ``stuck_after``: the minutes after which an intent, a quota
    hold or a quiet log is marked (:mod:`commands.rules.stuck`)."""
    now = store.clock()
    pending = waiting = None
    if scan:
        decision = scan_dataset(store, config, limit=0)
        pending = decision.counts["candidates"]
        waiting = decision.counts["waiting_for_previous_page"]
    with store.snapshot():
        bounds = store.bounds()
        batches = [
            ActiveBatchView(
                b.batch_id,
                b.display_name,
                b.state,
                b.record_count,
                b.submitted_at,
                age_hours(b.submitted_at, now),
                b.succeeded,
                b.failed,
                b.pending,
            )
            for b in queries.active_batches(store)
        ]
        open_intents = queries.open_intents(store)
        intents = [i.display_name for i in open_intents]
        projects = _projects(store, config)
        counts = queries.status_counts(store)
        workers = _workers(store, format_ts(now))
        by_count = queries.failing_by_count(store)
        failing = {str(count): n for count, n in by_count}
        totals = queries.usage_by_model(store)
        last_run = _last_run(store, config, workers)
        changed = documents.changed_documents(store)
        job = progress_of(store, config, now, counts, sum(n for _, n in by_count), totals)
    looks_stuck = marks(
        now,
        batches=[(b.batch_id, b.state, b.submitted_at) for b in batches],
        intents=[(i.display_name, i.intended_at) for i in open_intents],
        holds=[(p.name, p.hold.since) for p in projects if p.hold is not None],
        lapsed_workers=[(w.worker, w.renewed_at) for w in workers if w.expired and w.partitions],
        last_event_at=bounds[1][1] if bounds else None,
        minutes=stuck_after,
    )
    return Status(
        database=store.location,
        events=bounds[1][0] if bounds else 0,
        last_event_at=bounds[1][1] if bounds else None,
        active_batches=batches,
        open_intents=intents,
        in_flight=counts.in_flight,
        written=counts.written,
        pending=pending,
        waiting_for_previous_page=waiting,
        rejected_inputs=counts.rejected_inputs,
        failing_by_count=failing,
        dead_letters=counts.dead_letters,
        last_run=last_run,
        spend=spend(usages(totals), config.pricing, config.gemini.model),
        # The one-project screen's hold line: the first project held back.
        quota_hold=next((p.hold for p in projects if p.hold is not None), None),
        projects=projects,
        workers=workers,
        changed_documents=changed,
        progress=job,
        stuck=looks_stuck,
    )


def _projects(store: EventStore, config: Config) -> list[ProjectCapacity]:
    """Each project's batches and enqueued tokens against its limits, and its hold."""
    holds = {
        name: QuotaHold(q.held_since, q.retry_after, q.halvings, q.message, q.reason)
        for name, q in queries.submission_quotas(store).items()
        if q.held_since
    }
    loads = queries.project_loads(store)
    return [
        ProjectCapacity(
            p.name,
            loads.get(p.name, queries.ProjectLoad()).batches,
            p.max_active_batches or 0,
            loads.get(p.name, queries.ProjectLoad()).tokens,
            p.max_enqueued_tokens or 0,
            holds.get(p.name),
        )
        for p in config.projects()
    ]


def _workers(store: EventStore, now_ts: str) -> list[WorkerView]:
    """The workers of shared mode, their last renewal, whether it lapsed, their partitions."""
    held: dict[str, list[str]] = {}
    for lease in queries.leases(store):
        held.setdefault(lease.worker, []).append(lease.partition)
    return [
        WorkerView(
            w.worker,
            w.run_id,
            w.renewed_at,
            w.expires_at,
            w.expires_at <= now_ts,
            held.get(w.worker, []),
        )
        for w in queries.workers(store)
    ]


def _last_run(store: EventStore, config: Config, workers: list[WorkerView]) -> LastRun | None:
    """The last run: its outcome, its spend, and whether it is still running."""
    run = queries.last_run(store)
    if run is None:
        return None
    rows = queries.usage_of_run(store, run.run_id)
    return LastRun(
        run.run_id,
        run.started_at,
        run.finished_at,
        run.outcome,
        run.message,
        spend(usages(rows), config.pricing, config.gemini.model),
        running=run.finished_at is None and _alive(run.run_id, store, config, workers),
        results_unavailable=queries.count_events_of_type(
            store, BatchResultsUnavailable.__name__, run.started_seq - 1, run.finished_seq
        ),
    )
