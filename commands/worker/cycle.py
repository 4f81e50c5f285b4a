"""One cycle of the worker, step by step; every transition is appended the moment it happens, so a
crash at any point loses nothing and the next cycle resumes from the log.

0. reconcile submission intents a crash or an unanswered create left open;
1. poll active batches (collect results, free the records of failed ones, cancel stuck ones);
2. watch batches given up on, adopting late results;
3. scan the dataset; 4. submit new batches; 5. delete files nothing needs any more.

Exactly-once submission: the intent (a unique display name) is appended before
``batches.create``; an open intent is resolved by looking the name up on the service, never by
creating again. If the service cannot answer, the records stay reserved.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import msgspec

from commands.errors import GatewayError
from commands.gemini.sdk import FAILED_STATES, RemoteBatch
from commands.schema import response_json_schema
from commands.worker.cleanup import collect_garbage
from commands.worker.collect import BatchRef, adopt_late, collect
from commands.worker.context import Worker
from commands.worker.dataset import Page, check_image, output_path
from commands.worker.scan import ScanDecision, scan_dataset
from commands.worker.upload import Uploaded, upload_pages
from eventlog import crashpoints
from eventlog.events import (
    AbandonedBatchClosed,
    BatchCleared,
    BatchFailed,
    BatchStateObserved,
    BatchSubmissionAbandoned,
    BatchSubmissionIntended,
    BatchSubmitted,
    BatchSucceeded,
    Event,
    InputRejected,
)

log = logging.getLogger("commands.cycle")

SUCCEEDED = "JOB_STATE_SUCCEEDED"
UPLOAD_EVENTS_PER_COMMIT = 200
SWEEP_EVERY_SECONDS = 15 * 60
WAITING = {"JOB_STATE_PENDING", "JOB_STATE_QUEUED"}
#: The service expires a batch 48 h after it was created; past this, nothing can arrive.
LATE_WINDOW_HOURS = 49.0


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

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing left to submit."""
        return (
            self.active == 0
            and self.open_intents == 0
            and self.candidates_left == 0
            and self.deferred == 0
        )


class ActiveBatch(msgspec.Struct, frozen=True):
    """What polling needs of an ``active_batches`` row."""

    batch_id: str
    state: str
    model: str
    submitted_seq: int
    submitted_at: str

    def ref(self) -> BatchRef:
        return BatchRef(self.batch_id, self.model, self.submitted_seq, self.submitted_at)


class Cycle:
    """The worker's steps; :meth:`run` is one whole cycle (the Prefect flow calls the steps)."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.json_schema = response_json_schema(worker.schema)
        self._batches_submitted = 0
        self._previous: dict[str, Page] = {}
        self._start_seq = 0
        self._last_sweep: float | None = None

    def run(self) -> CycleSummary:
        summary = self.begin()
        self.reconcile_intents()
        self.poll(summary)
        self.watch_abandoned()
        self.submit(self.scan(), summary)
        self.clean_up(summary)
        return self.settle(summary)

    def begin(self) -> CycleSummary:
        """Mark where this cycle starts in the log (files uploaded later are not garbage yet)."""
        self._start_seq = self.w.store.last_seq()
        return CycleSummary()

    def settle(self, summary: CycleSummary) -> CycleSummary:
        """Fill in what is still in flight after the cycle."""
        summary.active = self.w.query("SELECT count(*) FROM active_batches")[0][0]
        summary.open_intents = self.w.query("SELECT count(*) FROM submission_intents")[0][0]
        return summary

    # --- 0. open intents ------------------------------------------------------------------------

    def reconcile_intents(self) -> None:
        w = self.w
        for name, model, input_file in w.query(
            "SELECT display_name, model, input_file FROM submission_intents ORDER BY intended_seq"
        ):
            keys = [
                r[0]
                for r in w.query(
                    "SELECT record_key FROM inflight_records WHERE display_name = ? "
                    "AND batch_id IS NULL ORDER BY record_key",
                    (name,),
                )
            ]
            extra = {"display_name": name}
            try:
                found = w.gateway.find_batches(name)
            except GatewayError as e:
                log.warning(
                    "Open submission %s: cannot look it up yet (%s); its %d records stay reserved",
                    name,
                    e,
                    len(keys),
                    extra=extra,
                )
                continue
            if not found:
                w.append(
                    [
                        BatchSubmissionAbandoned(
                            display_name=name,
                            error_type="not_created",
                            message="the service has no batch under this display name",
                        )
                    ]
                )
                log.info(
                    "Open submission %s was never created; its %d records are free again",
                    name,
                    len(keys),
                    extra=extra,
                )
                continue
            job = found[-1]
            if len(found) > 1:
                log.error(
                    "Open submission %s matches %d jobs on the service; adopting %s",
                    name,
                    len(found),
                    job.name,
                    extra=extra,
                )
            w.append(
                [
                    BatchSubmitted(
                        batch_id=job.name,
                        display_name=name,
                        model=model,
                        record_keys=keys,
                        input_file=input_file,
                        state=job.state,
                    )
                ]
            )
            log.info(
                "Batch Submitted (adopted by its display name): %s as %s",
                name,
                job.name,
                extra={"batch_id": job.name, **extra},
            )

    # --- 1. poll ------------------------------------------------------------------------------

    def poll(self, summary: CycleSummary) -> None:
        w = self.w
        for row in w.query(
            "SELECT batch_id, state, model, submitted_seq, submitted_at "
            "FROM active_batches ORDER BY submitted_seq"
        ):
            batch = ActiveBatch(*row)
            summary.polled += 1
            try:
                remote = w.gateway.get_batch(batch.batch_id)
            except GatewayError as e:
                if e.code == 404:
                    w.append(
                        [
                            BatchFailed(
                                batch_id=batch.batch_id,
                                state="JOB_STATE_NOT_FOUND",
                                message=str(e),
                                submitted_at=batch.submitted_at,
                            )
                        ]
                    )
                    summary.failed_batches += 1
                    continue
                log.error(
                    "Cannot poll %s this cycle: %s",
                    batch.batch_id,
                    e,
                    extra={"batch_id": batch.batch_id},
                )
                continue
            self.observe(batch, remote, summary)

    def observe(self, batch: ActiveBatch, remote: RemoteBatch, summary: CycleSummary) -> None:
        w, batch_id = self.w, batch.batch_id
        extra = {"batch_id": batch_id}
        if remote.state == SUCCEEDED:
            if batch.state != SUCCEEDED:
                w.append([BatchSucceeded(batch_id=batch_id, result_file=remote.result_file or "")])
                crashpoints.reach("after_succeeded_event")
            collect(w, batch.ref(), remote)
            summary.completed += 1
        elif remote.state in FAILED_STATES:
            w.append(
                [
                    BatchFailed(
                        batch_id=batch_id, state=remote.state, submitted_at=batch.submitted_at
                    )
                ]
            )
            crashpoints.reach("after_failed_event")
            summary.failed_batches += 1
            log.warning(
                "Batch %s ended %s: its records are free for resubmission",
                batch_id,
                remote.state,
                extra=extra,
            )
        elif remote.state in WAITING and self._stuck(batch):
            return
        elif remote.state != batch.state:
            w.append([BatchStateObserved(batch_id=batch_id, state=remote.state)])
            crashpoints.reach("after_state_observed")
            if remote.state not in WAITING | {"JOB_STATE_RUNNING"}:
                log.warning(
                    "Batch %s reports a state this tool does not know: %s; polling it "
                    "again next cycle",
                    batch_id,
                    remote.state,
                    extra=extra,
                )
            else:
                log.info("Batch %s is %s", batch_id, remote.state, extra=extra)

    def _stuck(self, batch: ActiveBatch) -> bool:
        """Cancel a batch waiting longer than ``stuck_pending_hours``; its records are freed and
        its results still adopted if they arrive."""
        limit = self.w.config.batching.stuck_pending_hours
        age = self.w.hours_since(batch.submitted_at)
        if limit <= 0 or age < limit:
            return False
        try:
            self.w.gateway.cancel_batch(batch.batch_id)
        except GatewayError as e:
            log.warning(
                "Cannot cancel stuck batch %s (%s); it is freed anyway",
                batch.batch_id,
                e,
                extra={"batch_id": batch.batch_id},
            )
        reason = f"stuck {age:.1f} h waiting to start (limit {limit:g} h); cancelled"
        self.w.append([BatchCleared(batch_id=batch.batch_id, reason=reason)])
        log.warning(
            "Batch %s %s: its records are free for resubmission",
            batch.batch_id,
            reason,
            extra={"batch_id": batch.batch_id},
        )
        return True

    # --- 2. batches given up on ------------------------------------------------------------------

    def watch_abandoned(self) -> None:
        w = self.w
        grace = w.config.batching.late_results_grace_minutes / 60
        for batch_id, model, terminal, sub_seq, sub_at, abandoned_at in w.query(
            "SELECT batch_id, model, terminal, submitted_seq, submitted_at, abandoned_at "
            "FROM abandoned_batches ORDER BY abandoned_seq"
        ):
            ref = BatchRef(batch_id, model, sub_seq, sub_at)
            if w.hours_since(sub_at) > LATE_WINDOW_HOURS:
                self._close(batch_id, "JOB_STATE_EXPIRED", "past the service's 48 h window")
                continue
            try:
                remote = w.gateway.get_batch(batch_id)
            except GatewayError as e:
                if e.code == 404:
                    self._close(batch_id, "JOB_STATE_NOT_FOUND", str(e))
                else:
                    log.warning(
                        "Cannot check abandoned batch %s this cycle: %s",
                        batch_id,
                        e,
                        extra={"batch_id": batch_id},
                    )
                continue
            if remote.state == SUCCEEDED:
                adopt_late(w, ref, remote)
            elif remote.state in FAILED_STATES and (
                not terminal or w.hours_since(abandoned_at) > grace
            ):
                self._close(batch_id, remote.state, "ended without results")

    def _close(self, batch_id: str, state: str, reason: str) -> None:
        self.w.append([AbandonedBatchClosed(batch_id=batch_id, state=state, reason=reason)])

    # --- 3. scan ------------------------------------------------------------------------------

    def scan(self) -> ScanDecision:
        w, batching = self.w, self.w.config.batching
        # No cycle can submit more than this; the rest are only counted.
        decision = scan_dataset(
            w.store, w.config, limit=batching.max_active_batches * batching.batch_size
        )
        w.append(decision.events)
        for event in decision.events:
            if isinstance(event, InputRejected):
                log.warning("Skipping %s: %s", event.path, event.reason)
        crashpoints.reach("after_scan_events")
        self._previous = decision.previous
        log.info("Scan: %s", ", ".join(f"{k} {v}" for k, v in decision.counts.items()))
        return decision

    # --- 4. submit ----------------------------------------------------------------------------

    def submit(self, decision: ScanDecision, summary: CycleSummary) -> None:
        w = self.w
        summary.scan = decision.counts
        batching, uploads = w.config.batching, w.config.uploads
        busy = w.query(
            "SELECT (SELECT count(*) FROM active_batches) + "
            "(SELECT count(*) FROM submission_intents)"
        )[0][0]
        capacity = batching.max_active_batches - busy
        queue = list(decision.candidates)
        while capacity > 0 and queue:
            take, queue = queue[: batching.batch_size], queue[batching.batch_size :]
            ready = self._check_images(take)
            uploaded: list[Uploaded] = []
            bar = w.progress.start(f"uploading {len(ready)} pages", len(ready))
            # Upload events are group-committed (a commit per upload would cost an fsync
            # each); a crash before a flush leaves files the log never heard of, which the
            # clean-up step finds on the service and deletes.
            pending_events: list[Event] = []
            last_flush = time.monotonic()
            for outcome in upload_pages(
                w.gateway,
                ready,
                attempts=uploads.upload_retry_attempts,
                backoff_seconds=uploads.upload_retry_backoff_seconds,
                concurrency=uploads.upload_concurrency,
                sleep=w.sleep,
            ):
                crashpoints.reach("after_image_upload")
                pending_events += outcome.events
                if len(pending_events) >= UPLOAD_EVENTS_PER_COMMIT or (
                    time.monotonic() - last_flush > 1.0
                ):
                    w.append(pending_events)
                    crashpoints.reach("after_upload_events")
                    pending_events, last_flush = [], time.monotonic()
                bar.update(1)
                if outcome.remote is not None:
                    uploaded.append(outcome)
                elif outcome.refused:
                    self._reject(outcome.page, f"the File API refused it: {outcome.message}")
                else:
                    summary.deferred += 1
            w.append(pending_events)
            crashpoints.reach("after_upload_events")
            bar.close()
            if not uploaded:
                continue
            uploaded.sort(key=lambda u: u.page.key)
            created = self._create(uploaded)
            if created == "submitted":
                capacity -= 1
                summary.submitted += 1
                continue
            summary.deferred += len(uploaded)
            if created in ("unanswered", "refused"):
                break  # look it up next cycle / do not waste uploads on a refusing service
        summary.candidates_left = len(queue)

    def _reject(self, page: Page, reason: str) -> None:
        log.warning("Skipping %s: %s", page.path, reason, extra={"record_key": page.key})
        self.w.append([InputRejected(path=page.path, reason=reason)])

    def _check_images(self, pages: list[Page]) -> list[Page]:
        ready = []
        for page in pages:
            reason = check_image(page)
            if reason is None:
                ready.append(page)
            else:
                self._reject(page, reason)
        return ready

    def _create(self, uploaded: list[Uploaded]) -> str:
        """Write and upload the request file, append the intent, create the batch.

        Returns ``submitted``; ``unanswered`` when the service did not answer the create (the
        intent stays open, its records reserved, and the next cycle looks it up); ``refused``
        when it said no (the intent is abandoned); ``deferred`` when the request file could not
        be uploaded. In every case but the first the pages wait for the next cycle.
        """
        w = self.w
        model = w.config.gemini.model
        keys = [u.page.key for u in uploaded]
        files = [u.remote.name for u in uploaded if u.remote is not None]
        body = b"".join(self._request_line(u) for u in uploaded)
        self._batches_submitted += 1
        name = f"gb-{w.run_id}-{self._batches_submitted:03d}"
        extra = {"display_name": name}
        try:
            request_file = w.gateway.upload(
                body, mime_type="jsonl", display_name=f"{name}-requests", retry=True
            )
        except GatewayError as e:
            log.error(
                "Cannot upload the request file of %s: %s; its pages wait for the next cycle",
                name,
                e,
                extra=extra,
            )
            return "deferred"
        crashpoints.reach("after_request_file_upload")
        w.append(
            [
                BatchSubmissionIntended(
                    display_name=name,
                    model=model,
                    record_keys=keys,
                    input_file=request_file.name,
                    files=files,
                )
            ]
        )
        crashpoints.reach("after_intent")
        try:
            job = w.gateway.create_batch(
                model=model, input_file=request_file.name, display_name=name
            )
        except GatewayError as e:
            if e.transient:
                log.error(
                    "Create of %s unanswered (%s): its %d records stay reserved; the next "
                    "cycle looks it up by name",
                    name,
                    e,
                    len(keys),
                    extra=extra,
                )
                return "unanswered"
            w.append(
                [
                    BatchSubmissionAbandoned(
                        display_name=name, error_type=f"http_{e.code}", message=str(e)
                    )
                ]
            )
            log.error("Create of %s refused: %s", name, e, extra=extra)
            return "refused"
        crashpoints.reach("after_create_before_event")
        w.append(
            [
                BatchSubmitted(
                    batch_id=job.name,
                    display_name=name,
                    model=model,
                    record_keys=keys,
                    input_file=request_file.name,
                    state=job.state,
                )
            ]
        )
        crashpoints.reach("after_submitted_event")
        log.info(
            "Batch Submitted: %s (%s, %d records)",
            job.name,
            name,
            len(keys),
            extra={"batch_id": job.name, **extra},
        )
        return "submitted"

    def _request_line(self, u: Uploaded) -> bytes:
        assert u.remote is not None
        page, config = u.page, self.w.config
        parts: list[dict[str, Any]] = [{"text": config.gemini.prompt}]
        prev = self._previous.get(page.key)
        if prev is not None:
            context = output_path(config.paths.output_root, prev.key).read_text()
            parts.append(
                {
                    "text": f"For context, the extraction of the previous page "
                    f"({prev.key}):\n{context}"
                }
            )
        parts.append({"fileData": {"fileUri": u.remote.uri, "mimeType": u.remote.mime_type}})
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
