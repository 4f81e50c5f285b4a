"""The emulated Gemini File + Batch service: files, batch jobs, their lifecycle, the "model", and
a ledger of what was billed. No HTTP here (see :mod:`gemini_emulator.server`).

Every resource belongs to the API key that created it, as on the real service. The clock is real
time plus an offset that tests move with :meth:`Service.advance`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from gemini_emulator.billing import prompt_tokens
from gemini_emulator.policy import Fault, JobOutcome, Policy, RecordOutcome, Timing
from gemini_emulator.schema_fill import break_, fill

FILE_TTL_SECONDS = 48 * 3600
BATCH_TTL_SECONDS = 48 * 3600
MAX_FILE_BYTES = 2 * 1024**3
PROJECT_QUOTA_BYTES = 20 * 1024**3

TERMINAL = {"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}
#: Ended with results (a result file or inline responses).
WITH_RESULTS = {"SUCCEEDED", "PARTIALLY_SUCCEEDED"}
#: The state a ``LIMBO`` job reports until it expires: one no client has heard of.
LIMBO_STATE = "LIMBO"


class ApiError(Exception):
    """An error the service answers with a Google-style body."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        408: "DEADLINE_EXCEEDED",
        409: "ALREADY_EXISTS",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or self.STATUS.get(code, "UNKNOWN")

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def apply_fault(fault: Fault, endpoint: str) -> None:
    """An injected fault as every handler applies it: a slow answer, then (with a status) an
    error."""
    if fault.delay:
        time.sleep(fault.delay)
    if fault.status:
        raise ApiError(
            fault.status,
            fault.message or f"Injected {fault.status} on {endpoint}.",
            fault.error_status or None,
        )


def rfc3339(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class StoredFile:
    id: str
    owner: str
    display_name: str
    mime_type: str
    data: bytes
    created: float
    source: str = "UPLOADED"
    #: PROCESSING until this moment (the service's clock), then ``final_state``.
    ready_at: float = 0.0
    final_state: str = "ACTIVE"

    @property
    def name(self) -> str:
        return f"files/{self.id}"

    def state_at(self, now: float) -> str:
        """``PROCESSING`` before ``ready_at``, then ``final_state`` (ACTIVE or FAILED)."""
        return "PROCESSING" if now < self.ready_at else self.final_state

    def resource(self, base_url: str, now: float) -> dict[str, Any]:
        """The File resource; its ``state`` as at ``now`` (the service's clock)."""
        out = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": rfc3339(self.created),
            "updateTime": rfc3339(self.created),
            "expirationTime": rfc3339(self.created + FILE_TTL_SECONDS),
            "sha256Hash": base64.b64encode(hashlib.sha256(self.data).digest()).decode(),
            "uri": f"{base_url}/v1beta/{self.name}",
            "state": self.state_at(now),
            "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.source == "GENERATED":
            out["downloadUri"] = f"{base_url}/download/v1beta/{self.name}:download?alt=media"
        return out


@dataclass
class UploadSession:
    id: str
    owner: str
    display_name: str
    mime_type: str
    size_bytes: int
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Job:
    id: str
    owner: str
    display_name: str
    model: str
    created: float
    outcome: JobOutcome
    requests: list[tuple[str, dict[str, Any]]]
    inline: bool
    state: str = "PENDING"
    ended: float | None = None
    updated: float = 0.0
    result_file: str | None = None
    inline_responses: list[dict[str, Any]] = field(default_factory=list)
    cancel_requested: bool = False
    timing: Timing | None = None
    #: A state to report instead of the real one, for ``glitch_reports`` more polls.
    glitch: str | None = None
    glitch_reports: int = 0
    #: Deleted by its owner: gone from get and list (404), kept here for what tests look at.
    deleted: bool = False
    #: ``batchStats``: requests answered (while running: the share of its run time passed) and
    #: answered with an error or not at all (known once it ended).
    done: int = 0
    failed: int = 0
    #: Input tokens of its requests: what a per-key ``max_enqueued_tokens`` counts.
    input_tokens: int = 0

    @property
    def name(self) -> str:
        return f"batches/{self.id}"

    def reported_state(self) -> str:
        """The state a poll sees (consumes one glitch report)."""
        if self.glitch is not None and self.glitch_reports > 0:
            self.glitch_reports -= 1
            return self.glitch
        return self.state


@dataclass
class Billed:
    """One result line the service produced (and charged for) in a succeeded job."""

    batch: str
    display_name: str
    key: str
    outcome: str
    total_tokens: int
    #: The image the line was answered from: its bytes' sha256 (hex) and how it came
    #: (``inline`` base64 or ``file_api`` by URI); empty for a request without an image.
    image_sha256: str = ""
    transport: str = ""
    #: The API key whose job it was.
    owner: str = ""
    #: Its ``promptTokenCount`` (:mod:`gemini_emulator.billing`: the model table's media tokens
    #: at the line's media resolution, plus its text).
    prompt_tokens: int = 0


class Service:
    """All state of the emulated service, guarded by one lock."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        quota_bytes: int = PROJECT_QUOTA_BYTES,
        max_file_bytes: int = MAX_FILE_BYTES,
    ) -> None:
        self.policy = policy or Policy()
        self.quota_bytes = quota_bytes
        self.max_file_bytes = max_file_bytes
        self.lock = threading.RLock()
        self.offset = 0.0
        self.files: dict[str, StoredFile] = {}
        self.uploads: dict[str, UploadSession] = {}
        self.jobs: dict[str, Job] = {}
        self.billed: list[Billed] = []
        self.creates: Counter[str] = Counter()
        #: Files uploaded (finalized), by display name.
        self.uploaded: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        #: Per record key, the ``maxOutputTokens`` of each request line answered (None: unset).
        self.output_limits: dict[str, list[int | None]] = {}
        #: Per record key, the ``mediaResolution`` of each request line answered ("": unset).
        self.media_resolutions: dict[str, list[str]] = {}
        #: Calls per API key and endpoint (``"<endpoint> <key>"``), and lookups of a job or file
        #: that exists under another key (answered 404/403 as for one that does not exist).
        self.calls_by_key: Counter[str] = Counter()
        self.foreign_lookups = 0

    # --- clock --------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the service's clock forward (file expiry, batch timing and expiry follow it)."""
        with self.lock:
            self.offset += seconds

    # --- files --------------------------------------------------------------------------------

    def _live_file(self, owner: str, file_id: str) -> StoredFile:
        f = self.files.get(file_id)
        if f is not None and f.owner != owner:
            self.foreign_lookups += 1
        if f is None or f.owner != owner or self.now() > f.created + FILE_TTL_SECONDS:
            raise ApiError(
                403,
                f"You do not have permission to access the File {file_id} or it may not exist.",
            )
        return f

    def start_upload(self, owner: str, display_name: str, mime_type: str, size: int) -> str:
        if size > self.max_file_bytes:
            raise ApiError(400, f"File size {size} exceeds the 2 GB limit.")
        with self.lock:
            used = sum(len(f.data) for f in self.files.values() if f.owner == owner)
            if used + size > self.quota_bytes:
                raise ApiError(429, "Project file storage quota (20 GB) exceeded.")
            sid = secrets.token_hex(8)
            self.uploads[sid] = UploadSession(sid, owner, display_name, mime_type, size)
            return sid

    def upload_bytes(
        self, sid: str, offset: int, chunk: bytes, finalize: bool
    ) -> StoredFile | None:
        with self.lock:
            session = self.uploads.get(sid)
            if session is None:
                raise ApiError(404, f"Upload session {sid} not found.")
            if offset != len(session.received):
                raise ApiError(400, f"Offset {offset} does not match {len(session.received)}.")
            session.received.extend(chunk)
            if not finalize:
                return None
            del self.uploads[sid]
            if len(session.received) != session.size_bytes:
                raise ApiError(
                    400,
                    f"Declared size {session.size_bytes} but received {len(session.received)}.",
                )
            now = self.now()
            rule = self.policy.file_rule(session.display_name)
            f = StoredFile(
                _new_id(),
                session.owner,
                session.display_name,
                session.mime_type,
                bytes(session.received),
                now,
                ready_at=now + rule.processing_seconds,
                final_state=rule.state,
            )
            self.files[f.id] = f
            self.uploaded[f.display_name] += 1
            return f

    def file_state(self, f: StoredFile) -> str:
        """The file's state now (PROCESSING for the policy's ``files`` time, then ACTIVE/FAILED)."""
        return f.state_at(self.now())

    def file_resource(self, f: StoredFile, base_url: str) -> dict[str, Any]:
        """The File resource as ``files.get`` answers it now."""
        return f.resource(base_url, self.now())

    def get_file(self, owner: str, file_id: str) -> StoredFile:
        with self.lock:
            return self._live_file(owner, file_id)

    def list_files(self, owner: str) -> list[StoredFile]:
        with self.lock:
            now = self.now()
            return [
                f
                for f in self.files.values()
                if f.owner == owner and now <= f.created + FILE_TTL_SECONDS
            ]

    def delete_file(self, owner: str, file_id: str) -> None:
        with self.lock:
            self._live_file(owner, file_id)
            del self.files[file_id]

    def download(self, owner: str, file_id: str) -> bytes:
        with self.lock:
            f = self._live_file(owner, file_id)
            if f.source != "GENERATED":
                raise ApiError(400, "Only generated files can be downloaded.")
            return f.data

    # --- batches -------------------------------------------------------------------------------

    def batch_keys(self, owner: str, batch: dict[str, Any]) -> list[str]:
        """The record keys a create of ``batch`` would hold ([] when it names nothing readable):
        what a fault's ``record`` pattern is matched against."""
        config = batch.get("inputConfig") or {}
        try:
            if "fileName" in config:
                with self.lock:
                    source = self._live_file(owner, str(config["fileName"]).removeprefix("files/"))
                    return [k for k, _ in _parse_jsonl(source.data)]
            items = (config.get("requests") or {}).get("requests", [])
            return [str((item.get("metadata") or {}).get("key", "")) for item in items]
        except (ApiError, AttributeError, TypeError):
            return []

    def create_batch(self, owner: str, model: str, batch: dict[str, Any]) -> Job:
        display_name = batch.get("displayName", "")
        config = batch.get("inputConfig") or {}
        with self.lock:
            if "fileName" in config:
                file_id = str(config["fileName"]).removeprefix("files/")
                source = self._live_file(owner, file_id)
                state = self.file_state(source)
                if state != "ACTIVE":
                    raise ApiError(
                        400,
                        f"The input file {source.name} is not in an ACTIVE state ({state}).",
                        "FAILED_PRECONDITION",
                    )
                requests = _parse_jsonl(source.data)
                inline = False
            elif "requests" in config:
                items = config["requests"].get("requests", [])
                requests = [
                    (str((item.get("metadata") or {}).get("key", i)), item.get("request", {}))
                    for i, item in enumerate(items)
                ]
                inline = True
            else:
                raise ApiError(400, "batch.inputConfig needs fileName or requests.")
            keys = [k for k, _ in requests]
            tokens = sum(self._prompt_tokens(normalize_keys(r), model) for _, r in requests)
            self._check_limits(owner, tokens)
            self.creates[display_name] += 1
            job = Job(
                _new_id(),
                owner,
                display_name,
                model,
                self.now(),
                (rule := self.policy.job_rule(display_name, keys)).outcome,
                requests,
                inline,
            )
            job.timing = self.policy.timing_for(rule)
            job.input_tokens = tokens
            job.updated = job.created
            self.jobs[job.id] = job
            return job

    def _check_limits(self, owner: str, tokens: int) -> None:
        """429 RESOURCE_EXHAUSTED when a new job of ``tokens`` input tokens would take ``owner``
        past its policy's per-key limits (its jobs not yet ended count)."""
        limit = self.policy.limit_for(owner)
        if limit is None:
            return
        live = [j for j in self.jobs.values() if j.owner == owner and not j.deleted]
        for job in live:
            self._settle(job)
        live = [j for j in live if j.state not in TERMINAL]
        if limit.max_active_jobs is not None and len(live) >= limit.max_active_jobs:
            raise ApiError(
                429,
                f"Quota exceeded: at most {limit.max_active_jobs} concurrent batch jobs "
                "per project.",
            )
        enqueued = sum(j.input_tokens for j in live)
        if limit.max_enqueued_tokens is not None and enqueued + tokens > limit.max_enqueued_tokens:
            raise ApiError(
                429,
                f"Quota exceeded: enqueued tokens {enqueued} + {tokens} over the project's "
                f"limit of {limit.max_enqueued_tokens}.",
            )

    def get_batch(self, owner: str, batch_id: str) -> Job:
        with self.lock:
            job = self.jobs.get(batch_id)
            if job is not None and job.owner != owner:
                self.foreign_lookups += 1
            if job is None or job.owner != owner or job.deleted:
                raise ApiError(404, f"Batch {batch_id} not found.")
            self._settle(job)
            return job

    def list_batches(self, owner: str) -> list[Job]:
        with self.lock:
            jobs = [j for j in self.jobs.values() if j.owner == owner and not j.deleted]
            for job in jobs:
                self._settle(job)
            return sorted(jobs, key=lambda j: j.created, reverse=True)

    def cancel_batch(self, owner: str, batch_id: str) -> None:
        with self.lock:
            job = self.get_batch(owner, batch_id)
            if job.state not in TERMINAL:
                job.cancel_requested = True
                self._finish(job, "CANCELLED")

    def delete_batch(self, owner: str, batch_id: str) -> None:
        with self.lock:
            self.get_batch(owner, batch_id).deleted = True

    def settle_all(self) -> None:
        """Bring every job up to date with the clock (jobs finish even if nobody polls)."""
        with self.lock:
            for job in self.jobs.values():
                self._settle(job)

    def _settle(self, job: Job) -> None:
        if job.state in TERMINAL:
            return
        timing = job.timing or self.policy.timing
        elapsed = self.now() - job.created
        if elapsed >= BATCH_TTL_SECONDS:
            self._finish(job, "EXPIRED")
        elif job.outcome == "LIMBO":
            job.state = LIMBO_STATE
        elif job.outcome == "STUCK" or elapsed < timing.pending_seconds:
            job.state = "PENDING"
        elif elapsed < timing.pending_seconds + timing.running_seconds:
            if job.state != "RUNNING":
                job.state, job.updated = "RUNNING", self.now()
            share = (elapsed - timing.pending_seconds) / max(timing.running_seconds, 1e-9)
            job.done = min(len(job.requests), int(len(job.requests) * share))
        elif job.outcome in GLITCHES:
            job.glitch, job.glitch_reports = GLITCHES[job.outcome]
            self._finish(job, "SUCCEEDED")
        else:
            self._finish(job, job.outcome)

    def _finish(self, job: Job, state: str) -> None:
        job.state = "SUCCEEDED" if state in OUTPUT_GLITCHES else state
        job.ended = job.updated = self.now()
        if job.state in WITH_RESULTS:
            answers = [
                line
                for key, request in job.requests
                if (line := self._answer(job, key, request)) is not None
            ]
            job.done = len(job.requests)
            job.failed = job.done - sum(1 for line in answers if "response" in line)
            # Results come back in no particular order: join on the key.
            lines = list(reversed(answers))
            if state == "DUPLICATES":
                lines += [{"key": line["key"], "response": _second_opinion()} for line in answers]
            elif state == "EXTRA_KEYS":
                lines += [{"key": key, "response": _second_opinion()} for key in EXTRA_KEYS]
            if job.inline:
                job.inline_responses = [_inline(line) for line in lines]
            else:
                data = b"".join(self._result_line(job, line) + b"\n" for line in lines)
                if state == "TRUNCATED" and lines:
                    data = data[: len(data) - len(json.dumps(lines[-1])) // 2 - 1]
                f = StoredFile(
                    f"batch-{job.id}",
                    job.owner,
                    f"results of {job.name}",
                    "application/jsonl",
                    data,
                    self.now(),
                    source="GENERATED",
                )
                if state != "RESULTS_GONE":  # else named, but gone already
                    self.files[f.id] = f
                job.result_file = f.name

    def _result_line(self, job: Job, line: dict[str, Any]) -> bytes:
        """A line of ``job``'s result file: the answer, or the policy's raw line for its key
        (then the line is billed as ``result_override``: no valid answer was delivered)."""
        key = str(line["key"])
        raw = self.policy.result_line(key)
        if raw is None:
            return json.dumps(line).encode()
        for billed in reversed(self.billed):
            if billed.batch == job.name and billed.key == key:
                billed.outcome = "result_override"
                break
        return raw

    # --- the model ------------------------------------------------------------------------------

    def _answer(self, job: Job, key: str, request: dict[str, Any]) -> dict[str, Any] | None:
        request = normalize_keys(request)
        invalid = _invalid_inline(request)
        if invalid is not None:
            return {
                "key": key,
                "error": {"code": 400, "status": "INVALID_ARGUMENT", "message": invalid},
            }
        missing = self._missing_file(job.owner, request)
        if missing is not None:
            return {
                "key": key,
                "error": {
                    "code": 403,
                    "status": "PERMISSION_DENIED",
                    "message": f"You do not have permission to access "
                    f"the File {missing} or it may not exist.",
                },
            }
        self.attempts[key] += 1
        outcome: RecordOutcome = self.policy.record_outcome(key)
        if outcome == "missing_line":
            return None
        if outcome == "error_line":
            return {
                "key": key,
                "error": {
                    "code": 500,
                    "status": "INTERNAL",
                    "message": "An internal error has occurred.",
                },
            }
        schema = (request.get("generationConfig") or {}).get("responseJsonSchema") or {
            "type": "object"
        }
        finish = "STOP"
        text: str | None
        generation = request.get("generationConfig") or {}
        limit = generation.get("maxOutputTokens")
        self.output_limits.setdefault(key, []).append(limit if isinstance(limit, int) else None)
        resolution = generation.get("mediaResolution")
        self.media_resolutions.setdefault(key, []).append(str(resolution or ""))
        needed = self.policy.output_tokens_needed(key)
        if outcome == "valid" and needed is not None and (limit is None or limit < needed):
            outcome = "max_tokens"  # the answer needs more than the request allows
        if outcome == "max_tokens":  # cut mid-JSON, as the service cuts at the limit
            whole = json.dumps(fill(schema, key))
            finish, text = "MAX_TOKENS", whole[: max(1, len(whole) // 2)]
        elif outcome == "valid":
            text = json.dumps(fill(schema, key))
        elif outcome == "invalid_json":
            text = 'Sure! Here is the JSON you asked for: {"text": "unterminated'
        elif outcome == "schema_violation":
            text = json.dumps(break_(schema, key))
        else:
            finish, text = outcome.upper(), None
        prompt = self._prompt_tokens(request, job.model)
        out_tokens = len(text) // 4 + 1 if text else 0
        usage = {
            "promptTokenCount": prompt,
            "candidatesTokenCount": out_tokens,
            "thoughtsTokenCount": 0,
            "totalTokenCount": prompt + out_tokens,
        }
        sha, transport = self._image_of(request)
        self.billed.append(
            Billed(
                job.name,
                job.display_name,
                key,
                outcome,
                usage["totalTokenCount"],
                image_sha256=sha,
                transport=transport,
                owner=job.owner,
                prompt_tokens=prompt,
            )
        )
        candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
        if text is not None:
            candidate["content"] = {"role": "model", "parts": [{"text": text}]}
        response = {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": job.model.removeprefix("models/"),
        }
        return {"key": key, "response": response}

    def _prompt_tokens(self, request: dict[str, Any], model: str) -> int:
        """What the model bills ``request``'s prompt (:func:`gemini_emulator.billing.prompt_tokens`;
        a ``fileData`` part's bytes from this service's files)."""

        def file_bytes(file_id: str) -> bytes | None:
            f = self.files.get(file_id)
            return f.data if f is not None else None

        return prompt_tokens(request, model, file_bytes)

    def _image_of(self, request: dict[str, Any]) -> tuple[str, str]:
        """(sha256 hex, transport) of the request's first image; ("", "") without one."""
        for part in _parts(request):
            if "inlineData" in part:
                data = base64.b64decode(part["inlineData"].get("data", ""))
                return hashlib.sha256(data).hexdigest(), "inline"
            if "fileData" in part:
                f = self.files.get(_file_id(str(part["fileData"].get("fileUri", ""))))
                return (hashlib.sha256(f.data).hexdigest() if f else ""), "file_api"
        return "", ""

    def _missing_file(self, owner: str, request: dict[str, Any]) -> str | None:
        now = self.now()
        for part in _parts(request):
            data = part.get("fileData")
            if not data:
                continue
            file_id = _file_id(str(data.get("fileUri", "")))
            f = self.files.get(file_id)
            if f is None or f.owner != owner or now > f.created + FILE_TTL_SECONDS:
                return file_id
        return None

    # --- what tests look at --------------------------------------------------------------------

    def live_jobs(self) -> list[Job]:
        """The jobs on the service (not deleted), oldest first."""
        with self.lock:
            return sorted((j for j in self.jobs.values() if not j.deleted), key=lambda j: j.created)

    def ledger(self) -> list[Billed]:
        self.settle_all()
        with self.lock:
            return list(self.billed)


def operation(job: Job, base_url: str) -> dict[str, Any]:
    """A batch job as the long-running Operation the API returns."""
    state = job.reported_state()
    metadata: dict[str, Any] = {
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.GenerateContentBatch",
        "name": job.name,
        "model": job.model,
        "displayName": job.display_name,
        "state": f"BATCH_STATE_{state}",
        "createTime": rfc3339(job.created),
        "updateTime": rfc3339(job.updated),
        "batchStats": batch_stats(job),
    }
    if job.ended is not None:
        metadata["endTime"] = rfc3339(job.ended)
    if state in WITH_RESULTS:
        if job.inline:
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": job.inline_responses}}
        else:
            metadata["output"] = {"responsesFile": job.result_file}
    return {"name": job.name, "done": state in TERMINAL, "metadata": metadata}


def batch_stats(job: Job) -> dict[str, str]:
    """The job's ``batchStats`` (int64 counts, as strings on the wire)."""
    total = len(job.requests)
    done = total if job.state in WITH_RESULTS else job.done
    return {
        "requestCount": str(total),
        "successfulRequestCount": str(done - job.failed),
        "failedRequestCount": str(job.failed),
        "pendingRequestCount": str(total - done),
    }


#: Job outcomes that succeed but are reported oddly first: (reported state, how many polls).
GLITCHES = {"ODD_STATE": ("MYSTERY", 2), "FAILED_THEN_SUCCEEDED": ("FAILED", 1)}
#: Job outcomes that succeed with a damaged result file.
OUTPUT_GLITCHES = {"TRUNCATED", "DUPLICATES", "EXTRA_KEYS", "RESULTS_GONE"}
#: Keys an EXTRA_KEYS job answers for although nobody asked; one tries to escape the output root.
EXTRA_KEYS = ("Nowhere:Ghost:2020:1", "../../..:etc:2020:1", "..:..:..:passwd")


def _second_opinion() -> dict[str, Any]:
    """A response that is not JSON: if a duplicate or stray line won, the record would fail."""
    return {
        "candidates": [
            {
                "finishReason": "STOP",
                "content": {"role": "model", "parts": [{"text": "a second, different answer"}]},
            }
        ]
    }


def _inline(line: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"metadata": {"key": str(line["key"])}}
    if "response" in line:
        out["response"] = line["response"]
    else:
        out["error"] = line["error"]
    return out


def _parse_jsonl(data: bytes) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for n, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ApiError(400, f"Input file line {n} is not JSON: {e}") from None
        if not isinstance(line, dict) or "request" not in line:
            raise ApiError(400, f"Input file line {n} has no request.")
        out.append((str(line.get("key", n)), line["request"]))
    return out


def _parts(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for c in request.get("contents", []) for p in c.get("parts", [])]


def _file_id(uri: str) -> str:
    return uri.rsplit("/files/", 1)[-1] if "/files/" in uri else uri.removeprefix("files/")


def _invalid_inline(request: dict[str, Any]) -> str | None:
    """Why the request's inline data is refused (None if it is fine or there is none), as the
    service answers: an ``image/*`` MIME type and valid base64."""
    for part in _parts(request):
        blob = part.get("inlineData")
        if blob is None:
            continue
        mime = str(blob.get("mimeType", ""))
        if not mime.startswith("image/") and mime != "application/pdf":
            return f"Unsupported MIME type for inline data: {mime!r}."
        try:
            data = base64.b64decode(str(blob.get("data", "")), validate=True)
        except (ValueError, TypeError):
            return "Invalid value at 'inline_data.data' (TYPE_BYTES): invalid base64 data."
        if mime == "application/pdf":
            return _invalid_pdf(data)
    return None


def _invalid_pdf(data: bytes) -> str | None:
    """Why a PDF part is refused (None if it is one readable page), as the service answers a
    document it cannot process."""
    import io

    from pypdf import PdfReader

    if not data.startswith(b"%PDF-"):
        return "The document has no pages."  # what the service says of bytes that are no PDF
    try:
        pages = len(PdfReader(io.BytesIO(data)).pages)
    except Exception:  # any failure to read is the service's 400
        return "Unable to process input document: the PDF is damaged."
    if pages != 1:
        return f"Expected a one-page PDF, got {pages} pages."
    return None


def _new_id() -> str:
    return secrets.token_hex(6)


_OPAQUE = {"properties", "$defs", "definitions", "patternProperties"}
_SCHEMAS = {
    "responseJsonSchema",
    "responseSchema",
    "response_json_schema",
    "response_schema",
    "_responseJsonSchema",
}


def normalize_keys(value: Any, parent: str = "") -> Any:
    """snake_case keys to camelCase, recursively; user property names and schemas untouched."""
    if isinstance(value, list):
        return [normalize_keys(v, parent) for v in value]
    if not isinstance(value, dict):
        return value
    if parent in _OPAQUE:
        return {k: normalize_keys(v, "") for k, v in value.items()}
    out = {}
    for k, v in value.items():
        camel = _camel(k)
        out[camel] = v if k in _SCHEMAS else normalize_keys(v, k)
    return out


def _camel(key: str) -> str:
    if "_" not in key or key.startswith(("_", "$", "@")):
        return key
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)
