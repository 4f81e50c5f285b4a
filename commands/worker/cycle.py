"""One cycle of the worker, step by step; every transition is appended the moment it happens, so a
crash at any point loses nothing and the next cycle resumes from the log.

0. reconcile submission intents a crash or an unanswered create left open;
1. poll active batches (collect results, free the records of failed ones, cancel stuck ones);
2. watch batches given up on, adopting late results;
3. scan the dataset; 4. submit new batches; 5. delete files nothing needs any more.

Exactly-once submission: the intent (a unique display name) is appended before
``batches.create``; an open intent is resolved by looking the name up on the service, never by
creating again. If the service cannot answer, the records stay reserved.

What an answer means (a job state, an error, an age) is decided by the pure modules of
:mod:`commands.rules`; this module makes the calls, appends their events, reaches the crash
points and logs.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec

from commands.errors import GatewayError, LeaseLost
from commands.gemini.port import RemoteBatch, RemoteFile
from commands.pages import Page
from commands.rules.abandoned import (
    AbandonedBatch,
    judge_abandoned,
)
from commands.rules.admission import (
    ProjectRoom,
    admission_halvings,
    admitted_batch_size,
    has_room,
    held_back,
    hold_persists,
    next_chunk,
    pages_alone,
    pick_project,
    refused_last,
)
from commands.rules.cleanup import image_reusable_since
from commands.rules.poll import judge_poll
from commands.rules.reconcile import (
    Reconciled,
    judge_deferred_lookup,
    judge_unanswered_lookup,
    reconcile,
)
from commands.rules.retry import upload_gives_up
from commands.rules.scan import ScanDecision
from commands.rules.submit import (
    CREATE_REFUSED,
    CreateContext,
    CreateOutcome,
    OpenIntent,
    judge_create_error,
    submit_goes_on,
)
from commands.rules.tokens import admitted_pages
from commands.rules.transport import Transport, batch_transport
from commands.schema import response_json_schema
from commands.worker.cleanup import collect_garbage
from commands.worker.collect import BatchRef, adopt_late, collect
from commands.worker.context import Worker
from commands.worker.dataset import (
    Stamp,
    file_stamp,
    output_path,
    read_once,
    warn_not_this_cycle,
)
from commands.worker.estimator import PageTokens, TokenEstimator
from commands.worker.request_files import (
    Ready,
    RequestFile,
    inline_part,
    route_page,
    write_request_files,
)
from commands.worker.scan import scan_dataset
from commands.worker.upload import Uploaded, upload_pages, upload_with_retries
from eventlog import crashpoints
from eventlog.events import (
    DEFAULT_PROJECT,
    BatchJobDeleted,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    InputRejected,
    RecordDeadLettered,
    UploadAbandoned,
    UploadGivenUp,
    UploadGivenUpCleared,
)
from eventlog.states import JobState
from projections import queries
from projections.abandoned_batches import AbandonedBatch as AbandonedBatchRow
from projections.active_batches import SPEC as ACTIVE_BATCHES
from projections.active_batches import ActiveBatch
from projections.finished_jobs import FinishedJob
from projections.queries import ProjectLoad
from projections.submission_intents import SPEC as SUBMISSION_INTENTS
from projections.submission_intents import SubmissionIntent

log = logging.getLogger("commands.cycle")

UPLOAD_EVENTS_PER_COMMIT = 200
#: Creates of one intent whose request file the service says is not ACTIVE yet (400
#: FAILED_PRECONDITION), each after a wait for the file; then it is deferred.
CREATE_PRECONDITION_ATTEMPTS = 3
SWEEP_EVERY_SECONDS = 15 * 60
#: The crash point reached right after a poll verdict's events are appended (none: no point).
_POLL_CRASHPOINTS = {
    "succeeded": "after_succeeded_event",
    "failed": "after_failed_event",
    "changed": "after_state_observed",
    "unknown_state": "after_state_observed",
}


T = TypeVar("T")


class StepRunner(Protocol):
    """Runs one named step of the cycle and returns what it returned."""

    def __call__(self, name: str, fn: Callable[[], T], /) -> T: ...


def run_directly(name: str, fn: Callable[[], T], /) -> T:
    """The plain step runner: call it."""
    return fn()


class CycleSummary(msgspec.Struct):
    """What one cycle did, and whether any work is left."""

    polled: int = 0
    submitted: int = 0
    completed: int = 0
    failed_batches: int = 0
    candidates_left: int = 0
    #: Pages this cycle tried but could not submit (uploads or a create failed): next cycle.
    deferred: int = 0
    active: int = 0
    open_intents: int = 0
    files_deleted: int = 0
    scan: dict[str, int] = {}
    #: Pages every project's creates were held back from this cycle (a quota or outage hold),
    #: why, and whether that hold has lasted as long as the back-off goes (``hold_persists``).
    held_back: int = 0
    hold: str = ""
    hold_persists: bool = False
    #: Questions about batches this cycle (polls, display-name lookups) the service answered,
    #: and ones it left unanswered (5xx, timeouts, answers that cannot be read).
    answered: int = 0
    unanswered: int = 0
    #: The last unanswered question's error, for the line that ends a blind run.
    last_error: str = ""

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing left to submit."""
        return (
            self.active == 0
            and self.open_intents == 0
            and self.candidates_left == 0
            and self.deferred == 0
        )

    @property
    def blind(self) -> bool:
        """The service answered none of this cycle's questions about batches, and nothing was
        submitted or completed: ``run --until-idle`` ends after ``BLIND_CYCLES`` in a row."""
        return (
            self.unanswered > 0 and self.answered == 0 and not self.submitted and not self.completed
        )

    @property
    def stalled(self) -> bool:
        """Nothing in flight, and all that is left is held back by a hold that persists:
        ``run --until-idle`` ends rather than waiting for ever."""
        return (
            self.active == 0
            and self.open_intents == 0
            and self.deferred == 0
            and self.hold_persists
            and self.candidates_left == self.held_back > 0
        )


class Cycle:
    """The worker's steps; :meth:`run` is one whole cycle (the Prefect flow calls the steps)."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.json_schema = response_json_schema(worker.schema)
        self._batches_submitted = 0
        self._previous: dict[str, Page] = {}
        self._start_seq = 0
        self._last_sweep: float | None = None
        #: Each page's file as ``_check_images`` saw it: its upload or inline part is made from
        #: bytes read once and checked against this.
        self._stamps: dict[str, Stamp | None] = {}
        #: Inline pages whose file changed before their line was written (next cycle).
        self._changed = 0
        #: Intents whose create went unanswered this run, and per project how many in a row
        #: were then found never created (:func:`judge_unanswered_lookup`).
        self._unanswered: set[str] = set()
        self._absent_in_a_row: dict[str, int] = {}

    def run(self, step: StepRunner | None = None) -> CycleSummary:
        """One whole cycle, its steps in the one order there is; ``step`` runs each named step
        (default: directly; the Prefect flow runs each as a retried task)."""
        do: StepRunner = step or run_directly
        summary = self.begin()
        do("reconcile open submissions", lambda: self.reconcile_intents(summary))
        do("poll active batches", lambda: self.poll(summary))
        do("watch batches given up on", self.watch_abandoned)
        decision = do("scan the dataset", self.scan)
        do("submit new batches", lambda: self.submit(decision, summary))
        do("delete files nothing needs", lambda: self.clean_up(summary))
        return self.settle(summary)

    def begin(self) -> CycleSummary:
        """Mark where this cycle starts in the log (files uploaded later are not garbage yet)."""
        self._start_seq = self.w.store.last_seq()
        if self.w.leases is not None:
            self.w.leases.rebalance()
        return CycleSummary()

    def settle(self, summary: CycleSummary) -> CycleSummary:
        """Fill in what is still in flight after the cycle."""
        summary.active = queries.count_rows(self.w.store, ACTIVE_BATCHES)
        summary.open_intents = queries.count_rows(self.w.store, SUBMISSION_INTENTS)
        return summary

    # --- 0. open intents ------------------------------------------------------------------------

    def reconcile_intents(self, summary: CycleSummary) -> None:
        w = self.w
        parts = queries.batch_partitions(w.store) if w.leases is not None else {}
        for intent in queries.open_intents(w.store):
            partition = w.partition_of(intent.display_name, parts)
            if not w.mine(partition):
                continue
            with w.acting_for(partition):
                self._reconcile(intent, summary)

    def _reconcile(self, intent: SubmissionIntent, summary: CycleSummary) -> None:
        """Resolve one open intent by looking its display name up on the service."""
        w = self.w
        name, model, input_file = intent.display_name, intent.model, intent.input_file
        keys = queries.reserved_keys(w.store, name)
        extra = {"display_name": name}
        try:
            found = w.port(intent.project).find_batches(name, created_after=intent.intended_at)
        except GatewayError as e:
            summary.unanswered += 1
            summary.last_error = str(e)
            log.warning(
                "Open submission %s: cannot look it up yet (%s); its %d records stay reserved",
                name,
                e,
                len(keys),
                extra=extra,
            )
            return
        summary.answered += 1
        open_intent = OpenIntent(
            name,
            model,
            input_file,
            keys,
            transport=intent.transport,
            estimated_tokens=intent.estimated_tokens,
            project=intent.project,
        )
        verdict = (
            self._unanswered_lookup(open_intent, found)
            if name in self._unanswered
            else reconcile(open_intent, found)
        )
        if verdict.outcome == "deferred":
            w.append(verdict.events)
            crashpoints.reach("after_deferred_event")
            deferred = verdict.events[0]
            assert isinstance(deferred, BatchSubmissionDeferred)
            log.warning(
                "Open submission %s was never created: the service keeps leaving creates "
                "unanswered; its %d records are free, creates wait until %s",
                name,
                len(keys),
                deferred.retry_after,
                extra=extra,
            )
            return
        if verdict.outcome == "not_created":
            w.append(verdict.events)
            log.info(
                "Open submission %s was never created; its %d records are free again",
                name,
                len(keys),
                extra=extra,
            )
            return
        if verdict.matches > 1:
            log.error(
                "Open submission %s matches %d jobs on the service; adopting %s",
                name,
                verdict.matches,
                verdict.batch_id,
                extra=extra,
            )
        w.append(verdict.events)
        log.info(
            "Batch Submitted (adopted by its display name): %s as %s",
            name,
            verdict.batch_id,
            extra={"batch_id": verdict.batch_id, **extra},
        )

    def _unanswered_lookup(self, intent: OpenIntent, found: list[RemoteBatch]) -> Reconciled:
        """The verdict on an intent whose create went unanswered this run, found or not."""
        w, project = self.w, intent.project
        in_a_row = self._absent_in_a_row.get(project, 0) + (0 if found else 1)
        self._absent_in_a_row[project] = 0 if found else in_a_row
        q = queries.submission_quotas(w.store).get(project)
        batching = w.config.batching
        context = CreateContext(
            intent,
            w.store.clock(),
            halvings=admission_halvings(q.halvings, q.successes_since) if q else 0,
            backoff_seconds=batching.quota_backoff_seconds,
            backoff_max_seconds=batching.quota_backoff_max_seconds,
        )
        return judge_unanswered_lookup(intent, found, in_a_row, context)

    # --- 1. poll ------------------------------------------------------------------------------

    def poll(self, summary: CycleSummary) -> None:
        w = self.w
        parts = queries.batch_partitions(w.store) if w.leases is not None else {}
        for batch in queries.active_batches(w.store):
            partition = w.partition_of(batch.display_name, parts)
            if not w.mine(partition):
                continue
            summary.polled += 1
            with w.acting_for(partition):
                answer: RemoteBatch | GatewayError
                try:
                    answer = w.port(batch.project).get_batch(batch.batch_id)
                except GatewayError as e:
                    answer = e
                self.observe(batch, answer, summary)
        if w.config.batching.delete_finished_jobs:
            self.delete_finished_jobs()

    def delete_finished_jobs(self) -> None:
        """Delete the jobs of completed batches from the service (their results are durable),
        each followed by its ``BatchJobDeleted``. A 404 counts as deleted; a transient failure
        is retried next cycle; any other refusal is recorded and the job left on the service."""
        w = self.w
        parts = queries.batch_partitions(w.store) if w.leases is not None else {}
        for job in queries.finished_jobs(w.store):
            partition = w.partition_of(job.batch_id, parts)
            if w.mine(partition):
                with w.acting_for(partition):
                    self._delete_finished_job(job)

    def _delete_finished_job(self, job: FinishedJob) -> None:
        w = self.w
        batch_id = job.batch_id
        extra = {"batch_id": batch_id}
        try:
            deleted = w.port(job.project).delete_batch(batch_id)
            outcome, message = ("deleted", "") if deleted else ("already_gone", "")
        except GatewayError as e:
            if e.transient:
                log.warning(
                    "Cannot delete finished job %s yet (%s); the next cycle tries again",
                    batch_id,
                    e,
                    extra=extra,
                )
                return
            outcome, message = "refused", str(e)
            log.warning(
                "The service refused to delete finished job %s (%s); it is left there",
                batch_id,
                e,
                extra=extra,
            )
        crashpoints.reach("after_job_delete")
        w.append([BatchJobDeleted(batch_id=batch_id, outcome=outcome, message=message)])
        log.debug("Finished job %s: %s", batch_id, outcome, extra=extra)

    def observe(
        self, batch: ActiveBatch, answer: RemoteBatch | GatewayError, summary: CycleSummary
    ) -> None:
        """Act on one poll's verdict: cancel, append its events, collect, log."""
        w, batch_id = self.w, batch.batch_id
        extra = {"batch_id": batch_id}
        verdict = judge_poll(
            batch,
            answer,
            age_hours=w.hours_since(batch.submitted_at),
            stuck_pending_hours=w.config.batching.stuck_pending_hours,
        )
        if verdict.outcome == "unreachable":
            summary.unanswered += 1
            summary.last_error = str(answer)
            log.error("Cannot poll %s this cycle: %s", batch_id, answer, extra=extra)
            return
        summary.answered += 1
        if verdict.cancel:
            try:
                w.port(batch.project).cancel_batch(batch_id)
            except GatewayError as e:
                log.warning(
                    "Cannot cancel stuck batch %s (%s); it is freed anyway",
                    batch_id,
                    e,
                    extra=extra,
                )
        if verdict.events:
            w.append(verdict.events)
            if verdict.outcome in _POLL_CRASHPOINTS:
                crashpoints.reach(_POLL_CRASHPOINTS[verdict.outcome])
        if verdict.collect and not isinstance(answer, GatewayError):
            if verdict.state != JobState.SUCCEEDED:
                log.warning(
                    "Batch %s ended %s: collecting its results; records without one fail",
                    batch_id,
                    verdict.state,
                    extra=extra,
                )
            self._check_lease()
            if collect(w, BatchRef.of(batch), answer) is not None:
                summary.completed += 1
        elif verdict.outcome in ("failed", "not_found"):
            summary.failed_batches += 1
            if verdict.outcome == "failed":
                log.warning(
                    "Batch %s ended %s: its records are free for resubmission",
                    batch_id,
                    verdict.state,
                    extra=extra,
                )
        elif verdict.outcome == "stuck":
            log.warning(
                "Batch %s %s: its records are free for resubmission",
                batch_id,
                verdict.reason,
                extra=extra,
            )
        elif verdict.outcome == "unknown_state":
            log.warning(
                "Batch %s reports a state this tool does not know: %s; polling it again next cycle",
                batch_id,
                verdict.state,
                extra=extra,
            )
        elif verdict.outcome == "changed":
            log.info("Batch %s is %s", batch_id, verdict.state, extra=extra)
        elif verdict.outcome == "progressed" and isinstance(answer, RemoteBatch) and answer.stats:
            stats = answer.stats
            log.debug(
                "Batch %s: %d done, %d failed, %d pending of %d",
                batch_id,
                stats.succeeded,
                stats.failed,
                stats.pending,
                stats.requests,
                extra=extra,
            )

    # --- 2. batches given up on ------------------------------------------------------------------

    def watch_abandoned(self) -> None:
        w = self.w
        grace = w.config.batching.late_results_grace_minutes / 60
        parts = queries.batch_partitions(w.store) if w.leases is not None else {}
        for a in queries.abandoned_batches(w.store):
            partition = w.partition_of(a.display_name, parts)
            if w.mine(partition):
                with w.acting_for(partition):
                    self._watch(a, grace)

    def _watch(self, a: AbandonedBatchRow, grace: float) -> None:
        w = self.w
        batch_id, model, terminal = a.batch_id, a.model, a.terminal
        sub_seq, sub_at, abandoned_at = a.submitted_seq, a.submitted_at, a.abandoned_at
        batch = AbandonedBatch(batch_id, bool(terminal))
        age, abandoned = w.hours_since(sub_at), w.hours_since(abandoned_at)
        verdict = judge_abandoned(batch, None, age, abandoned, grace)
        if verdict.outcome == "look":
            answer: RemoteBatch | GatewayError
            try:
                answer = w.port(a.project).get_batch(batch_id)
            except GatewayError as e:
                answer = e
            verdict = judge_abandoned(batch, answer, age, abandoned, grace)
            if verdict.outcome == "unreachable":
                log.warning(
                    "Cannot check abandoned batch %s this cycle: %s",
                    batch_id,
                    answer,
                    extra={"batch_id": batch_id},
                )
            elif verdict.outcome == "adopt" and not isinstance(answer, GatewayError):
                self._check_lease()
                adopt_late(w, BatchRef(batch_id, model, sub_seq, sub_at, a.project), answer)
        w.append(verdict.events)

    # --- 3. scan ------------------------------------------------------------------------------

    def scan(self) -> ScanDecision:
        w, batching = self.w, self.w.config.batching
        # No cycle can submit more than this; the rest are only counted.
        slots = sum(p.max_active_batches or 0 for p in w.config.projects())
        leases = w.leases
        held = set() if leases is None else {p for p in sorted(leases.held) if w.mine(p)}
        decision = scan_dataset(
            w.store,
            w.config,
            limit=slots * batching.batch_size,
            keep=None if leases is None else lambda st, sc: leases.partition_of(st, sc) in held,
        )
        if leases is None:
            w.append(decision.events)
        else:
            # Each partition's scan events are its holder's to record (fenced by its lease).
            by_partition: dict[str, list[Event]] = {}
            for event in decision.events:
                by_partition.setdefault(self._event_partition(event), []).append(event)
            for partition, events in by_partition.items():
                if partition in held:
                    with w.acting_for(partition):
                        w.append(events)
        for event in decision.events:
            if isinstance(event, InputRejected):
                log.warning("Skipping %s: %s", event.path, event.reason)
        crashpoints.reach("after_scan_events")
        self._previous = decision.previous
        log.info("Scan: %s", ", ".join(f"{k} {v}" for k, v in decision.counts.items()))
        return decision

    def _check_lease(self) -> None:
        """Before a side effect for the partition acted for: still this worker's, with time to
        spare, or :class:`LeaseLost` (which ends the :meth:`Worker.acting_for` block)."""
        w = self.w
        if w.leases is not None and w.partition is not None and not w.mine(w.partition):
            lease = queries.lease_of(w.store, w.partition)
            raise LeaseLost(w.partition, lease.worker if lease is not None else "")

    def _event_partition(self, event: Event) -> str:
        """The partition a scan event is about: its record key's, or its path's folders'."""
        leases = self.w.leases
        assert leases is not None
        if isinstance(event, RecordDeadLettered | UploadGivenUpCleared):
            return leases.partition_of_key(event.record_key)
        path = Path(getattr(event, "path", ""))
        try:
            parts = path.relative_to(self.w.config.paths.input_root).parts
        except ValueError:
            parts = path.parts
        if not parts:
            return leases.legacy_partition()
        return leases.partition_of(parts[0], parts[1] if len(parts) > 1 else "")

    # --- 4. submit ----------------------------------------------------------------------------

    def submit(self, decision: ScanDecision, summary: CycleSummary) -> None:
        """Submit the candidates in batches, each to the project with the most room left
        (:func:`pick_project`): every project has its own batch slots, token limit and quota
        back-off, so a project held back or full leaves the others going."""
        w = self.w
        summary.scan = decision.counts
        batching = w.config.batching
        queue = list(decision.candidates)
        summary.candidates_left = len(queue) + decision.others
        if not queue:
            return
        projects = {p.name: p for p in w.config.projects()}
        quotas = queries.submission_quotas(w.store)
        now = w.store.clock()
        held = {
            name
            for name in projects
            if (q := quotas.get(name)) is not None and held_back(q.retry_after, now)
        }
        for name in held:
            quota = quotas[name]
            log.log(
                logging.WARNING if len(held) == len(projects) else logging.INFO,
                "Held back by the service's quota since %s, next try after %s: %d pages wait",
                quota.held_since,
                quota.retry_after,
                len(queue),
                extra={"project": name},
            )
        if len(held) == len(projects):
            summary.held_back = len(queue)
            first = quotas[min(held)]
            why = (
                "the service leaving its creates unanswered"
                if first.reason == "service_unavailable"
                else "the service's quota"
            )
            summary.hold = f"held back by {why} ({first.message}); next try {first.retry_after}"
            summary.hold_persists = all(
                hold_persists(admission_halvings(quotas[n].halvings, quotas[n].successes_since))
                for n in held
            )
            return
        adopted = self._look_up_deferred()
        if adopted is None:
            return
        queue = [p for p in queue if p.key not in adopted]
        # A page the service refused again goes in a batch of its own (after the rest).
        refusals = pages_alone(
            queries.create_refusals_of(w.store, [p.key for p in queue], CREATE_REFUSED)
        )
        if refusals:
            order = {k: i for i, k in enumerate(refused_last([p.key for p in queue], refusals))}
            queue.sort(key=lambda p: order[p.key])
        halvings: dict[str, int] = {}
        for name in projects:
            q = quotas.get(name)
            halvings[name] = admission_halvings(q.halvings, q.successes_since) if q else 0
            size = admitted_batch_size(batching.batch_size, halvings[name])
            if size < batching.batch_size and name not in held:
                log.info(
                    "Admission backed off after the service's quota: batches of %d (of %d)",
                    size,
                    batching.batch_size,
                    extra={"project": name},
                )
        estimator = TokenEstimator(w.store, w.config, self.json_schema)
        stopped = set(held)
        leases = w.leases
        if leases is not None:  # a batch holds one partition's pages: its holder polls it
            queue.sort(key=lambda p: leases.partition_of(p.state, p.school))
        while queue:
            partition = ""
            if leases is not None:
                partition = leases.partition_of(queue[0].state, queue[0].school)
                if not w.mine(partition):
                    queue = [
                        p for p in queue if leases.partition_of(p.state, p.school) != partition
                    ]
                    continue
            loads = queries.project_loads(w.store)
            rooms = [
                ProjectRoom(
                    name,
                    (p.max_active_batches or 0) - loads.get(name, ProjectLoad()).batches,
                    p.max_enqueued_tokens - loads.get(name, ProjectLoad()).tokens
                    if p.max_enqueued_tokens
                    else None,
                    held=name in stopped,
                )
                for name, p in projects.items()
            ]
            project = pick_project(rooms)
            if project is None:
                break
            capacity = next(r.batches_free for r in rooms if r.name == project)
            size = admitted_batch_size(batching.batch_size, halvings[project])
            if leases is not None:  # the chunk stops at the partition's last page
                size = next(
                    (
                        i
                        for i, p in enumerate(queue[:size])
                        if leases.partition_of(p.state, p.school) != partition
                    ),
                    size,
                )
            if refusals:
                size = next_chunk([p.key for p in queue[:size]], refusals, size)
            costs = [estimator.page(p).total for p in queue[:size]]
            fits = self._admit_by_tokens(
                costs,
                len(queue),
                projects[project].max_enqueued_tokens or 0,
                loads.get(project, ProjectLoad()).tokens,
            )
            if fits == 0:
                stopped.add(project)
                continue
            take, queue = queue[:fits], queue[fits:]
            created: CreateOutcome = "submitted"
            with w.acting_for(partition):
                created = self._submit_chunk(
                    take, project, halvings[project], estimator, summary, capacity
                )
            if not submit_goes_on(created):
                stopped.add(project)
        summary.candidates_left = len(queue) + decision.others

    def _submit_chunk(
        self,
        take: list[Page],
        project: str,
        halvings: int,
        estimator: TokenEstimator,
        summary: CycleSummary,
        capacity: int,
    ) -> CreateOutcome:
        """Upload, write the request files of and create batches for ``take`` (one chunk of
        the queue) with ``project``'s key, up to ``capacity`` batches; returns the last
        create's outcome."""
        w, uploads = self.w, self.w.config.uploads
        routed = self._check_images(take)
        ready: list[Ready] = [(page, None) for page, how in routed if how == "inline"]
        to_upload = [page for page, how in routed if how == "file_api"]
        reused = self._reuse_images(to_upload, project)
        ready += reused
        again = {page.key for page, _ in reused}
        to_upload = [page for page in to_upload if page.key not in again]
        if to_upload:
            ready += self._upload_images(to_upload, summary, project)
        if not ready:
            return "submitted"
        ready.sort(key=lambda r: r[0].key)
        # A chunk is cut into request files by bytes too; each file is one batch.
        files = write_request_files(
            ready,
            self._request_line,
            max_bytes=uploads.max_request_file_bytes,
            directory=w.config.paths.database.parent,
            reject=self._reject,
        )
        consumed = 0
        created: CreateOutcome = "submitted"
        self._changed = 0
        try:
            for request_file in files:
                consumed = request_file.consumed
                created = self._create(
                    request_file,
                    halvings,
                    [estimator.page(page) for page, _ in request_file.items],
                    project,
                )
                if created == "submitted":
                    capacity -= 1
                    summary.submitted += 1
                else:
                    summary.deferred += len(request_file.items)
                if capacity <= 0 or not submit_goes_on(created):
                    break
            else:
                consumed = len(ready)
        finally:
            files.close()
        # Pages of a chunk no batch could take this cycle (their uploads are garbage now),
        # and inline pages whose file changed before their line was written.
        summary.deferred += len(ready) - consumed + self._changed
        return created

    def _upload_images(self, pages: list[Page], summary: CycleSummary, project: str) -> list[Ready]:
        """Upload ``pages``' images by the upload policy with ``project``'s key; the ones
        uploaded, with their files."""
        w, uploads = self.w, self.w.config.uploads
        uploaded: list[Ready] = []
        bar = w.progress.start(f"uploading {len(pages)} pages", len(pages))
        # Upload events are group-committed (a commit per upload would cost an fsync
        # each); a crash before a flush leaves files the log never heard of, which the
        # clean-up step finds on the service and deletes.
        pending_events: list[Event] = []
        last_flush = time.monotonic()
        budget = queries.failed_uploads_of(w.store, [p.key for p in pages])
        for outcome in upload_pages(
            w.port(project),
            pages,
            attempts=uploads.upload_retry_attempts,
            backoff_seconds=uploads.upload_retry_backoff_seconds,
            concurrency=uploads.upload_concurrency,
            sleep=w.sleep,
            project=project,
            stamps=self._stamps,
        ):
            crashpoints.reach("after_image_upload")
            pending_events += outcome.events
            given_up = None
            if outcome.remote is None:
                given_up = self._give_up(outcome, budget.get(outcome.page.key, 0))
                if given_up is not None:
                    pending_events.append(given_up)
            if len(pending_events) >= UPLOAD_EVENTS_PER_COMMIT or (
                time.monotonic() - last_flush > 1.0
            ):
                w.append(pending_events)
                crashpoints.reach("after_upload_events")
                pending_events, last_flush = [], time.monotonic()
            bar.update(1)
            if outcome.remote is not None:
                uploaded.append((outcome.page, outcome.remote))
            elif given_up is None:
                summary.deferred += 1
        w.append(pending_events)
        crashpoints.reach("after_upload_events")
        bar.close()
        return uploaded

    def _give_up(self, outcome: Uploaded, failed_before: int) -> UploadGivenUp | None:
        """The ``UploadGivenUp`` of a page whose upload failed this cycle, if its budget
        (``max_upload_attempts``, counted from the log) is spent or the service refused the file;
        None when it is tried again next cycle. Logged at WARNING."""
        limit = self.w.config.uploads.max_upload_attempts
        page = outcome.page
        if not upload_gives_up(
            failed_before, outcome.attempts, transient=not outcome.refused, max_attempts=limit
        ):
            return None
        attempts = failed_before + outcome.attempts
        why = "the File API refused it" if outcome.refused else f"{attempts} failed attempts"
        reason = f"upload given up ({why}): {outcome.message}"
        log.warning(
            "Giving up on %s: %s; it is skipped until its file changes or reset-failures",
            page.key,
            reason,
            extra={"record_key": page.key},
        )
        stamp = outcome.stamp or file_stamp(page.path) or Stamp(-1, -1)
        return UploadGivenUp(
            record_key=page.key,
            path=page.path,
            attempts=attempts,
            reason=reason,
            size_bytes=stamp.size,
            mtime_ns=stamp.mtime_ns,
        )

    def _charge_request_file(
        self, items: list[Ready], failed: int, transient: bool, why: str
    ) -> None:
        """A request file whose upload failed charges each of its pages' upload budgets (so a
        request file that can never go does not come back for ever); the pages whose budget is
        spent are given up on, the others wait for the next cycle."""
        keys = [page.key for page, _ in items]
        budget = queries.failed_uploads_of(self.w.store, keys)
        events: list[Event] = []
        for page, _ in items:
            events.append(UploadAbandoned(record_key=page.key, attempts=failed, message=why))
            outcome = Uploaded(page, None, [], refused=not transient, message=why, attempts=failed)
            given_up = self._give_up(outcome, budget.get(page.key, 0))
            if given_up is not None:
                events.append(given_up)
        self.w.append(events)

    def _admit_by_tokens(self, costs: list[int], waiting: int, limit: int, in_flight: int) -> int:
        """How many of the next batch's pages (their estimated tokens ``costs``) token admission
        lets go now into a project with ``limit`` (its ``max_enqueued_tokens``; 0: all) and
        ``in_flight`` tokens estimated on the service; 0 holds them back, logged."""
        if not limit:
            return len(costs)
        fits = admitted_pages(costs, in_flight, limit)
        if fits == 0:
            log.info(
                "Token admission: %d tokens estimated in flight, max_enqueued_tokens %d; "
                "%d pages wait for room",
                in_flight,
                limit,
                waiting,
            )
        elif fits < len(costs):
            log.info(
                "Token admission: batch cut to %d of %d pages (%d tokens estimated in flight, "
                "max_enqueued_tokens %d)",
                fits,
                len(costs),
                in_flight,
                limit,
            )
        return fits

    def _look_up_deferred(self) -> set[str] | None:
        """Look each deferred submission's display name up once (a 429 that made a job after all
        is adopted, never billed twice). Returns the keys adopted, or None when a lookup failed:
        then nothing is submitted this cycle."""
        w = self.w
        adopted: set[str] = set()
        parts = queries.batch_partitions(w.store) if w.leases is not None else {}
        for d in queries.deferred_to_check(w.store):
            partition = w.partition_of(d.display_name, parts)
            if not w.mine(partition):
                continue
            keys = d.record_keys.split("\n") if d.record_keys else []
            extra = {"display_name": d.display_name}
            try:
                found = w.port(d.project).find_batches(d.display_name)
            except GatewayError as e:
                log.warning(
                    "Deferred submission %s: cannot look it up yet (%s); nothing is submitted "
                    "this cycle",
                    d.display_name,
                    e,
                    extra=extra,
                )
                return None
            verdict = judge_deferred_lookup(
                OpenIntent(d.display_name, d.model, d.input_file, keys, project=d.project), found
            )
            with w.acting_for(partition):
                w.append(verdict.events)
            crashpoints.reach("after_deferred_lookup")
            if verdict.outcome == "adopted":
                adopted.update(keys)
                log.warning(
                    "Deferred submission %s was created after all: adopted as %s",
                    d.display_name,
                    verdict.batch_id,
                    extra={"batch_id": verdict.batch_id, **extra},
                )
        return adopted

    def _reuse_images(self, pages: list[Page], project: str) -> list[Ready]:
        """The pages whose image is still on ``project``'s File API (uploaded for a deferred
        submission, young enough): referenced again instead of uploaded again."""
        w = self.w
        found = queries.reusable_images(
            w.store, [p.key for p in pages], image_reusable_since(w.store.clock()), project
        )
        out: list[Ready] = []
        for page in pages:
            image = found.get(page.key)
            if image is not None:
                remote = RemoteFile(
                    image.file_name, image.file_uri, image.mime_type, image.size_bytes, page.key
                )
                out.append((page, remote))
        if out:
            log.info("Reusing %d page image(s) already on the File API", len(out))
        return out

    def _wait_active(self, request_file: RemoteFile, name: str, project: str) -> str | None:
        """Poll ``files.get`` until the request file is ACTIVE (bounded by
        ``request_file_active_timeout_seconds``). None when it is; else why not."""
        uploads, w = self.w.config.uploads, self.w
        state = request_file.state
        polls = math.ceil(
            uploads.request_file_active_timeout_seconds / uploads.request_file_active_poll_seconds
        )
        for poll in range(polls + 1):
            if state == "ACTIVE":
                return None
            if state == "FAILED":
                return f"the service could not process request file {request_file.name} (FAILED)"
            if poll == polls:
                break
            log.info(
                "Request file %s of %s is %s; asking again in %gs",
                request_file.name,
                name,
                state,
                uploads.request_file_active_poll_seconds,
                extra={"display_name": name},
            )
            w.sleep(uploads.request_file_active_poll_seconds)
            try:
                state = w.port(project).get_file(request_file.name).state
            except GatewayError as e:
                log.warning("Cannot read request file %s's state: %s", request_file.name, e)
        return (
            f"request file {request_file.name} still {state} after "
            f"{uploads.request_file_active_timeout_seconds:g}s"
        )

    def _reject(self, page: Page, reason: str) -> None:
        log.warning("Skipping %s: %s", page.path, reason, extra={"record_key": page.key})
        self.w.append([InputRejected(path=page.path, reason=reason)])

    def _check_images(self, pages: list[Page]) -> list[tuple[Page, Transport]]:
        """The pages that can go, each with its transport; the others are rejected."""
        ready: list[tuple[Page, Transport]] = []
        for page in pages:
            self._stamps[page.key] = file_stamp(page.path)
            route = route_page(page, self.w.config.uploads)
            if route.transport is None:
                self._reject(page, route.reason)
            else:
                ready.append((page, route.transport))
        return ready

    def _create(
        self,
        request_file: RequestFile,
        halvings: int = 0,
        estimates: list[PageTokens] | None = None,
        project: str = DEFAULT_PROJECT,
    ) -> CreateOutcome:
        """Upload the request file, wait until it is ACTIVE, append the intent, create the batch.

        Returns ``submitted``; ``unanswered`` when the service did not answer the create (the
        intent stays open, its records reserved, and the next cycle looks it up); ``refused``
        when it said no (the intent is abandoned); ``deferred`` when the request file could not
        be uploaded (the upload policy of every File API upload: attempts, backoff) or never
        became ACTIVE, or a create answered 400 FAILED_PRECONDITION after its bounded retries;
        ``quota`` when it answered 429 RESOURCE_EXHAUSTED (closed as deferred: no job was made).
        In every case but the first the pages wait.
        """
        w, uploads = self.w, self.w.config.uploads
        model = w.config.gemini.model
        items = request_file.items
        keys = [page.key for page, _ in items]
        files = [remote.name for _, remote in items if remote is not None]
        transport = batch_transport("inline" if r is None else "file_api" for _, r in items)
        estimated = sum(e.total for e in estimates or [])
        self._batches_submitted += 1
        name = f"gb-{w.run_id}-{self._batches_submitted:03d}"
        extra = {"display_name": name}
        self._check_lease()
        uploaded = upload_with_retries(
            w.port(project),
            request_file.path,
            mime_type="jsonl",
            display_name=f"{name}-requests",
            attempts=uploads.upload_retry_attempts,
            backoff_seconds=uploads.upload_retry_backoff_seconds,
            sleep=w.sleep,
            extra=extra,
        )
        request = uploaded.remote
        if request is None:
            error = uploaded.failures[-1][1] if uploaded.failures else "no attempt"
            log.error(
                "Cannot upload the request file of %s: %s; its pages wait for the next cycle",
                name,
                error,
                extra=extra,
            )
            why = f"request file {name}-requests: {error}"
            self._charge_request_file(items, len(uploaded.failures), uploaded.transient, why)
            crashpoints.reach("after_upload_events")
            return "deferred"
        crashpoints.reach("after_request_file_upload")
        not_active = self._wait_active(request, name, project)
        if not_active is not None:
            log.error(
                "Cannot create %s: %s; its pages wait for the next cycle",
                name,
                not_active,
                extra=extra,
            )
            return "deferred"
        crashpoints.reach("after_request_file_active")
        limits = next(p for p in w.config.projects() if p.name == project)

        def room() -> bool:  # read again inside the intent's own transaction
            load = queries.project_loads(w.store).get(project, ProjectLoad())
            return has_room(
                load.batches,
                load.tokens,
                limits.max_active_batches or 0,
                limits.max_enqueued_tokens or 0,
                estimated,
            )

        appended = w.append(
            [
                BatchSubmissionIntended(
                    display_name=name,
                    model=model,
                    record_keys=keys,
                    input_file=request.name,
                    files=files,
                    transport=transport,
                    estimated_tokens=estimated,
                    estimated_input_tokens=sum(e.input for e in estimates or []),
                    project=project,
                    partition=w.partition or "",
                )
            ],
            admit=room,
        )
        if not appended:
            log.info(
                "Not creating %s: project %s filled up meanwhile (another worker's batches); its "
                "%d pages wait for the next cycle",
                name,
                project,
                len(keys),
                extra=extra,
            )
            return "full"
        crashpoints.reach("after_intent")
        self._check_lease()
        outcome = self._create_once_ready(
            OpenIntent(
                name,
                model,
                request.name,
                keys,
                transport=transport,
                estimated_tokens=estimated,
                project=project,
            ),
            halvings,
        )
        if not isinstance(outcome, RemoteBatch):
            return outcome
        job = outcome
        crashpoints.reach("after_create_before_event")
        w.append(
            [
                BatchSubmitted(
                    batch_id=job.name,
                    display_name=name,
                    model=model,
                    record_keys=keys,
                    input_file=request.name,
                    state=job.state,
                    transport=transport,
                    estimated_tokens=estimated,
                    project=project,
                )
            ]
        )
        crashpoints.reach("after_submitted_event")
        self._absent_in_a_row[project] = 0
        log.info(
            "Batch Submitted: %s (%s, %d records)",
            job.name,
            name,
            len(keys),
            extra={"batch_id": job.name, "transport": transport, "project": project, **extra},
        )
        return "submitted"

    def _create_once_ready(self, intent: OpenIntent, halvings: int) -> RemoteBatch | CreateOutcome:
        """``batches.create`` for the open ``intent``: the job, or how the failure was closed.

        A 400 FAILED_PRECONDITION (the request file not ACTIVE yet: no job was made) waits for
        the file and creates again, at most ``CREATE_PRECONDITION_ATTEMPTS`` times in all.
        """
        w, name = self.w, intent.display_name
        batching = w.config.batching
        extra = {"display_name": name}
        attempt = 1
        while True:
            try:
                return w.port(intent.project).create_batch(
                    model=intent.model, input_file=intent.input_file, display_name=name
                )
            except GatewayError as e:
                error = e
            context = CreateContext(
                intent,
                w.store.clock(),
                halvings=halvings,
                backoff_seconds=batching.quota_backoff_seconds,
                backoff_max_seconds=batching.quota_backoff_max_seconds,
                precondition_attempt=attempt,
                precondition_attempts=CREATE_PRECONDITION_ATTEMPTS,
                max_retries=batching.max_retries,
                failures=queries.failure_counts_of(w.store, intent.record_keys),
            )
            verdict = judge_create_error(name, error, context)
            if verdict.outcome == "precondition":
                log.warning(
                    "Create of %s: its request file is not ACTIVE yet (%s); waiting for it, "
                    "then creating again (attempt %d/%d)",
                    name,
                    error,
                    attempt + 1,
                    CREATE_PRECONDITION_ATTEMPTS,
                    extra=extra,
                )
                pending = RemoteFile(intent.input_file, "", "", 0, state="PROCESSING")
                if self._wait_active(pending, name, intent.project) is None:
                    attempt += 1
                    continue
                context = msgspec.structs.replace(
                    context, precondition_attempt=CREATE_PRECONDITION_ATTEMPTS
                )
                verdict = judge_create_error(name, error, context)
            break
        if verdict.outcome == "unanswered":
            self._unanswered.add(name)
            log.error(
                "Create of %s unanswered (%s): its %d records stay reserved; the next "
                "cycle looks it up by name",
                name,
                error,
                len(intent.record_keys),
                extra=extra,
            )
            return "unanswered"
        w.append(verdict.events)
        if verdict.outcome == "quota":
            crashpoints.reach("after_deferred_event")
            deferred = verdict.events[0]
            assert isinstance(deferred, BatchSubmissionDeferred)
            log.warning(
                "Create of %s: held back by the service's quota (%s); no job was made, its %d "
                "pages wait until %s (batches now 1/%d of batch_size)",
                name,
                error,
                len(intent.record_keys),
                deferred.retry_after,
                2**deferred.halvings,
                extra=extra,
            )
            return "quota"
        if verdict.outcome == "deferred":
            crashpoints.reach("after_deferred_event")
            log.error("Create of %s deferred: %s", name, error, extra=extra)
            return "deferred"
        if verdict.outcome == "stop":
            key_env = next(
                (p.api_key_env for p in w.config.projects() if p.name == intent.project),
                w.config.gemini.api_key_env,
            )
            raise GatewayError(
                f"the service refused to create {name} ({error}): the API key "
                f"(${key_env}) or [gemini] model "
                f"{intent.model!r} is wrong; no page counted a failure, fix it and run again",
                code=error.code,
                status=error.status,
            )
        log.error(
            "Create of %s refused: %s; each of its %d page(s) counts a failure (%s); a page "
            "refused again goes in a batch of its own",
            name,
            error,
            len(intent.record_keys),
            CREATE_REFUSED,
            extra=extra,
        )
        return "refused"

    def _request_line(self, page: Page, remote: RemoteFile | None) -> bytes | None:
        """One JSONL request line: the prompt, the previous page's output if configured, and the
        image, inline (``remote`` None: base64 ``inlineData`` of the bytes read once) or by its
        File API URI. None when an inline page's file changed since it was checked, or the
        previous page's output cannot be read (gone, unreadable, not UTF-8): it is checked
        again next cycle."""
        config = self.w.config
        parts: list[dict[str, Any]] = [{"text": config.gemini.prompt}]
        prev = self._previous.get(page.key)
        if prev is not None:
            previous_output = output_path(config.paths.output_root, prev.key)
            try:
                context = previous_output.read_text()
            except (OSError, UnicodeDecodeError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else e
                warn_not_this_cycle(
                    log,
                    "sending",
                    page.key,
                    f"cannot read the previous page's output {previous_output} ({why})",
                )
                self._changed += 1
                return None
            parts.append(
                {
                    "text": f"For context, the extraction of the previous page "
                    f"({prev.key}):\n{context}"
                }
            )
        if remote is None:
            data, _, changed = read_once(page, self._stamps.get(page.key))
            if data is None:
                warn_not_this_cycle(log, "sending", page.key, changed)
                self._changed += 1
                return None
            parts.append(inline_part(page, data))
        else:
            parts.append({"fileData": {"fileUri": remote.uri, "mimeType": remote.mime_type}})
        request = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": self.json_schema,
            },
        }
        return msgspec.json.encode({"key": page.key, "request": request}) + b"\n"

    # --- 5. clean up --------------------------------------------------------------------------

    def clean_up(self, summary: CycleSummary) -> None:
        # Listing the service's files finds leftovers the log never heard of (a crash between
        # an upload and its event, a lost answer). It costs a request per 100 files, so it runs
        # on a run's first cycle and then every SWEEP_EVERY_SECONDS, not every cycle.
        now = time.monotonic()
        sweep = self._last_sweep is None or now - self._last_sweep >= SWEEP_EVERY_SECONDS
        if sweep:
            self._last_sweep = now
        summary.files_deleted = collect_garbage(self.w, self._start_seq, sweep=sweep)
