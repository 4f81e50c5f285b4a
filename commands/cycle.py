"""One cycle of the worker: reconcile open intents, poll active batches (and process results),
scan the dataset, submit new batches. Every transition is appended as an event the moment it
happens, so a crash at any point loses nothing: the next cycle resumes from the log.

The order of side effects in a submission is what makes it exactly-once: the intent (with a
unique display name) is appended before ``batches.create``; an intent left open by a crash or an
unanswered create is resolved next cycle by looking the display name up on the service, never by
creating again.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec
from pydantic import BaseModel

from commands import crashpoints
from commands.actor import run_actor
from commands.config import Config
from commands.dataset import Page, check_image, output_path, walk_inputs
from commands.errors import GatewayError
from commands.gateway import FAILED_STATES, Gateway, RemoteBatch
from commands.outputs import write_outputs
from commands.progress import NoProgress, Progress
from commands.results import Verdict, decide, judge
from commands.scan import ScanDecision, load_state, previous_pages
from commands.scan import decide as decide_scan
from commands.schema import response_json_schema
from commands.upload import upload_pages
from eventlog.events import (
    BatchCompleted,
    BatchFailed,
    BatchStateObserved,
    BatchSubmissionAbandoned,
    BatchSubmissionIntended,
    BatchSubmitted,
    BatchSucceeded,
    Event,
    InputRejected,
)
from eventlog.store import EventStore, Recorded

log = logging.getLogger("commands.cycle")

SUCCEEDED = "JOB_STATE_SUCCEEDED"
RESULT_CHUNK = 500
_KEY_IN_LINE = re.compile(rb'"key"\s*:\s*"((?:[^"\\]|\\.)*)"')


class CycleSummary(msgspec.Struct):
    """What one cycle did, and whether any work is left."""

    polled: int = 0
    submitted: int = 0
    completed: int = 0
    failed_batches: int = 0
    candidates_left: int = 0
    active: int = 0
    open_intents: int = 0
    scan: dict[str, int] = {}

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing left to submit."""
        return self.active == 0 and self.open_intents == 0 and self.candidates_left == 0


class ActiveBatch(msgspec.Struct, frozen=True):
    """What polling needs of an ``active_batches`` row."""

    batch_id: str
    state: str
    model: str
    submitted_at: str


class Cycle:
    """The worker's side effects, with ``store`` and ``gateway`` at the edges."""

    def __init__(
        self,
        config: Config,
        store: EventStore,
        gateway: Gateway,
        *,
        run_id: str,
        schema: type[BaseModel],
        sleep: Callable[[float], None] = time.sleep,
        progress: Progress | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.gateway = gateway
        self.run_id = run_id
        self.actor = run_actor(run_id)
        self.progress: Progress = progress or NoProgress()
        self.schema = schema
        self.json_schema = response_json_schema(schema)
        self.sleep = sleep
        self._batches_submitted = 0
        self._previous: dict[str, Page] = {}

    def append(self, events: list[Event]) -> list[Recorded]:
        return self.store.append(events, actor=self.actor) if events else []

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.store.conn.execute(sql, params).fetchall()

    # --- the cycle -------------------------------------------------------------------------------

    def run(self) -> CycleSummary:
        """One whole cycle (the Prefect flow calls the same steps as separate tasks)."""
        summary = CycleSummary()
        self.reconcile_intents()
        self.poll(summary)
        self.submit(self.scan(), summary)
        return self.settle(summary)

    def settle(self, summary: CycleSummary) -> CycleSummary:
        """Fill in what is still in flight after the cycle."""
        summary.active = self._query("SELECT count(*) FROM active_batches")[0][0]
        summary.open_intents = self._query("SELECT count(*) FROM submission_intents")[0][0]
        return summary

    # --- 0. intents a crash or an unanswered create left open ------------------------------------

    def reconcile_intents(self) -> None:
        for name, model, input_file in self._query(
            "SELECT display_name, model, input_file FROM submission_intents ORDER BY intended_seq"
        ):
            keys = [
                r[0]
                for r in self._query(
                    "SELECT record_key FROM inflight_records WHERE display_name = ? "
                    "AND batch_id IS NULL ORDER BY record_key",
                    (name,),
                )
            ]
            try:
                found = self.gateway.find_batches(name)
            except GatewayError as e:
                log.warning(
                    "Open submission %s: cannot look it up yet (%s); its %d records stay reserved",
                    name,
                    e,
                    len(keys),
                    extra={"display_name": name},
                )
                continue
            if found:
                job = found[-1]
                if len(found) > 1:
                    log.error(
                        "Open submission %s matches %d jobs on the service; adopting %s",
                        name,
                        len(found),
                        job.name,
                        extra={"display_name": name},
                    )
                self.append(
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
                    extra={"batch_id": job.name, "display_name": name},
                )
            else:
                self.append(
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
                    extra={"display_name": name},
                )

    # --- 1. poll ------------------------------------------------------------------------------

    def poll(self, summary: CycleSummary) -> None:
        for row in self._query(
            "SELECT batch_id, state, model, submitted_at FROM active_batches ORDER BY submitted_seq"
        ):
            batch = ActiveBatch(*row)
            summary.polled += 1
            try:
                remote = self.gateway.get_batch(batch.batch_id)
            except GatewayError as e:
                if e.code == 404:
                    self.append(
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
        batch_id = batch.batch_id
        extra = {"batch_id": batch_id}
        if remote.state == SUCCEEDED:
            if batch.state != SUCCEEDED:
                self.append(
                    [BatchSucceeded(batch_id=batch_id, result_file=remote.result_file or "")]
                )
                crashpoints.reach("after_succeeded_event")
            self.process_results(batch, remote)
            summary.completed += 1
        elif remote.state in FAILED_STATES:
            self.append(
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
        elif remote.state != batch.state:
            self.append([BatchStateObserved(batch_id=batch_id, state=remote.state)])
            crashpoints.reach("after_state_observed")
            log.info("Batch %s is %s", batch_id, remote.state, extra=extra)

    # --- 1b. results --------------------------------------------------------------------------

    def process_results(self, batch: ActiveBatch, remote: RemoteBatch) -> None:
        """Judge every line for a record still in flight in this batch, write outputs, append
        events chunk by chunk, then complete the batch. Safe to repeat after a crash: records
        already judged are no longer in flight and are skipped."""
        batch_id = batch.batch_id
        pending = {
            r[0]
            for r in self._query(
                "SELECT record_key FROM inflight_records WHERE batch_id = ?", (batch_id,)
            )
        }
        counts = {"validated": 0, "failed": 0}
        with tempfile.TemporaryDirectory(dir=self.store.path.parent, prefix=".results-") as tmp:
            if remote.inline_lines is not None:
                lines: Iterable[tuple[str | None, dict[str, Any] | None]] = (
                    (str(line.get("key")), line) for line in remote.inline_lines
                )
            else:
                local = Path(tmp) / "results.jsonl"
                self.gateway.download_to(remote.result_file or "", local)
                crashpoints.reach("during_result_download")
                lines = _read_lines(local)
            chunk: list[Verdict] = []
            bar = self.progress.start(f"results of {batch_id}", len(pending))
            for key, line in lines:
                if key is None or key not in pending:
                    if key is not None:
                        log.warning(
                            "Result line for %s ignored: not a pending record of %s "
                            "(duplicate, or never in this batch)",
                            key,
                            batch_id,
                            extra={"batch_id": batch_id, "record_key": key},
                        )
                    continue
                pending.discard(key)
                chunk.append(
                    judge(key, line, self.schema)
                    if line is not None
                    else Verdict(key, "unparseable_line", "the result line is not valid JSON")
                )
                if len(chunk) >= RESULT_CHUNK:
                    self.record_verdicts(batch, chunk, counts)
                    bar.update(len(chunk))
                    chunk = []
            chunk.extend(judge(key, None, self.schema) for key in sorted(pending))
            self.record_verdicts(batch, chunk, counts)
            bar.update(len(chunk))
            bar.close()
        self.append([BatchCompleted(batch_id=batch_id, submitted_at=batch.submitted_at, **counts)])
        crashpoints.reach("after_completed_event")
        log.info(
            "Batch Complete: %s (%d validated, %d failed)",
            batch_id,
            counts["validated"],
            counts["failed"],
            extra={"batch_id": batch_id},
        )

    def record_verdicts(
        self, batch: ActiveBatch, verdicts: list[Verdict], counts: dict[str, int]
    ) -> None:
        if not verdicts:
            return
        batch_id = batch.batch_id
        root = self.config.paths.output_root
        items: list[tuple[Path, bytes]] = []
        checked: list[Verdict] = []
        for v in verdicts:
            if v.valid:
                try:
                    items.append((output_path(root, v.key), v.output or b""))
                except ValueError as e:
                    v = Verdict(v.key, "unsafe_key", str(e))
            checked.append(v)
        digests = write_outputs(items)
        crashpoints.reach("after_output_write")
        written = {
            v.key: (str(p), digests[p])
            for v, (p, _) in zip([c for c in checked if c.valid], items, strict=True)
        }
        failed_keys = [v.key for v in checked if not v.valid]
        with self.store.write() as w:
            failures = dict(
                self._in(
                    "SELECT record_key, count FROM failure_counts WHERE record_key IN ({})",
                    failed_keys,
                )
            )
            events = decide(
                batch_id,
                checked,
                written,
                failures,
                self.config.batching.max_retries,
                batch.model,
            )
            w.append(events, actor=self.actor)
        crashpoints.reach("after_result_events")
        for v in checked:
            if not v.valid:
                log.info(
                    "Record %s failed: %s: %s",
                    v.key,
                    v.error_type,
                    v.message,
                    extra={"batch_id": batch_id, "record_key": v.key, "error_type": v.error_type},
                )
        counts["validated"] += len(written)
        counts["failed"] += len(failed_keys)

    def _in(self, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            out += self._query(sql.format(", ".join("?" for _ in part)), tuple(part))
        return out

    # --- 2. scan ------------------------------------------------------------------------------

    def scan(self) -> ScanDecision:
        paths = self.config.paths
        pages, problems = walk_inputs(paths.input_root)
        state = load_state(self.store, paths.output_root)
        decision = decide_scan(
            pages,
            problems,
            state,
            max_retries=self.config.batching.max_retries,
            context_previous_page=self.config.gemini.context_previous_page,
        )
        self.append(decision.events)
        for event in decision.events:
            if isinstance(event, InputRejected):
                log.warning("Skipping %s: %s", event.path, event.reason)
        crashpoints.reach("after_scan_events")
        self._previous = previous_pages(pages) if self.config.gemini.context_previous_page else {}
        log.info("Scan: %s", ", ".join(f"{k} {v}" for k, v in decision.counts.items()))
        return decision

    # --- 3. submit ----------------------------------------------------------------------------

    def submit(self, decision: ScanDecision, summary: CycleSummary) -> None:
        summary.scan = decision.counts
        batching, uploads = self.config.batching, self.config.uploads
        busy = self._query(
            "SELECT (SELECT count(*) FROM active_batches) + "
            "(SELECT count(*) FROM submission_intents)"
        )[0][0]
        capacity = batching.max_active_batches - busy
        queue = list(decision.candidates)
        while capacity > 0 and queue:
            take, queue = queue[: batching.batch_size], queue[batching.batch_size :]
            ready = self._check_images(take)
            uploaded = []
            bar = self.progress.start(f"uploading {len(ready)} pages", len(ready))
            for outcome in upload_pages(
                self.gateway,
                ready,
                attempts=uploads.upload_retry_attempts,
                backoff_seconds=uploads.upload_retry_backoff_seconds,
                concurrency=uploads.upload_concurrency,
                sleep=self.sleep,
            ):
                crashpoints.reach("after_image_upload")
                self.append(outcome.events)
                crashpoints.reach("after_upload_events")
                bar.update(1)
                if outcome.remote is not None:
                    uploaded.append(outcome)
            bar.close()
            if not uploaded:
                continue
            uploaded.sort(key=lambda u: u.page.key)
            if not self._create(uploaded):
                break
            capacity -= 1
            summary.submitted += 1
        summary.candidates_left = len(queue)

    def _check_images(self, pages: list[Page]) -> list[Page]:
        ready, events = [], []
        for page in pages:
            reason = check_image(page)
            if reason is None:
                ready.append(page)
            else:
                log.warning("Skipping %s: %s", page.path, reason, extra={"record_key": page.key})
                events.append(InputRejected(path=page.path, reason=reason))
        self.append(events)
        return ready

    def _create(self, uploaded: list[Any]) -> bool:
        """Write and upload the request file, append the intent, create the batch.

        Returns False when the service did not answer the create: the intent stays open (its
        records reserved) and the next cycle looks it up; nothing more is submitted now.
        """
        model = self.config.gemini.model
        keys = [u.page.key for u in uploaded]
        body = b"".join(
            self._request_line(u.page, u.remote.uri, u.remote.mime_type) for u in uploaded
        )
        self._batches_submitted += 1
        name = f"gb-{self.run_id}-{self._batches_submitted:03d}"
        try:
            request_file = self.gateway.upload(
                body, mime_type="jsonl", display_name=f"{name}-requests", retry=True
            )
        except GatewayError as e:
            log.error(
                "Cannot upload the request file of %s: %s; its pages wait for the next cycle",
                name,
                e,
                extra={"display_name": name},
            )
            return True
        crashpoints.reach("after_request_file_upload")
        self.append(
            [
                BatchSubmissionIntended(
                    display_name=name, model=model, record_keys=keys, input_file=request_file.name
                )
            ]
        )
        crashpoints.reach("after_intent")
        try:
            job = self.gateway.create_batch(
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
                    extra={"display_name": name},
                )
                return False
            self.append(
                [
                    BatchSubmissionAbandoned(
                        display_name=name, error_type=f"http_{e.code}", message=str(e)
                    )
                ]
            )
            log.error("Create of %s refused: %s", name, e, extra={"display_name": name})
            return True
        crashpoints.reach("after_create_before_event")
        self.append(
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
            extra={"batch_id": job.name, "display_name": name},
        )
        return True

    def _request_line(self, page: Page, file_uri: str, mime_type: str) -> bytes:
        parts: list[dict[str, Any]] = [{"text": self.config.gemini.prompt}]
        prev = self._previous.get(page.key)
        if prev is not None:
            context = output_path(self.config.paths.output_root, prev.key).read_text()
            parts.append(
                {
                    "text": f"For context, the extraction of the previous page "
                    f"({prev.key}):\n{context}"
                }
            )
        parts.append({"fileData": {"fileUri": file_uri, "mimeType": mime_type}})
        request = {
            "contents": [{"role": "user", "parts": parts}],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": self.json_schema,
            },
        }
        return msgspec.json.encode({"key": page.key, "request": request}) + b"\n"


def _read_lines(path: Path) -> Iterator[tuple[str | None, dict[str, Any] | None]]:
    """(key, line) per JSONL line; (key, None) for a line that is not JSON but names a key."""
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                line = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                m = _KEY_IN_LINE.search(raw)
                yield (m.group(1).decode(errors="replace") if m else None), None
                continue
            if isinstance(line, dict) and line.get("key") is not None:
                yield str(line["key"]), line
            else:
                yield None, None
