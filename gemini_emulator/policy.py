"""The emulator's scriptable behaviour: what its "model" answers and which calls it breaks.

A policy is plain data (a dict, or a JSON file for ``python -m gemini_emulator --policy F``)::

    {
      "seed": 7,
      "timing": {"pending_seconds": 0.2, "running_seconds": 0.3},
      "records": [                                  # first matching rule wins, per record key
        {"match": "*:Poison:*", "outcome": "schema_violation"},
        {"match": "Texas:*:2021:3", "outcome": "invalid_json", "times": 1},
        {"match": "*", "outcome": "missing_line", "probability": 0.05}
      ],
      "jobs": [                                     # whole-job outcomes
        {"nth": 2, "outcome": "FAILED"},
        {"match": "Ohio:*", "outcome": "EXPIRED", "times": 1}
      ],
      "results": [                                  # raw result lines, per record key
        {"match": "Texas:*:2021:1", "line": "{\"key\": \"{key}\", \"response\": 7}"},
        {"match": "Ohio:*", "line_b64": "eyJrZXkiOiAie2tleX0iLCAi/yJ9"}
      ],
      "files": [                                    # uploaded files' states, first match wins
        {"match": "gb-*-requests", "processing_seconds": 0.5},
        {"match": "gb-*-003-requests", "state": "FAILED"}
      ],
      "limits": [                                   # per API key, first match wins
        {"key": "key-a", "max_active_jobs": 2, "max_enqueued_tokens": 50000}
      ],
      "faults": [                                   # per endpoint
        {"endpoint": "files.upload", "match": "California:Lincoln:2023:1", "times": 2,
         "status": 503},
        {"endpoint": "batches.get", "calls": [3, 4], "status": 429},
        {"endpoint": "files.upload", "delay": 0.05}
      ]
    }

Record outcomes: ``valid``, ``invalid_json``, ``schema_violation``, ``error_line``,
``missing_line``, ``safety``, ``recitation``, ``max_tokens`` (the JSON cut in half, finish
``MAX_TOKENS``); a record rule's ``output_tokens: N`` (with any outcome, usually ``valid``) cuts
the answer the same way whenever the line's ``maxOutputTokens`` is below N or unset. Job outcomes:
``SUCCEEDED``, ``FAILED``, ``CANCELLED``, ``EXPIRED``, ``STUCK`` (stays PENDING until it expires at
48 h), and glitches of a job that succeeds: ``TRUNCATED`` (the result file ends mid-line),
``DUPLICATES`` (every line twice, the copy a different answer), ``EXTRA_KEYS`` (lines for keys that
were never in the job, one of them hostile), ``ODD_STATE`` (an unknown state for two polls first),
``FAILED_THEN_SUCCEEDED`` (reported FAILED once, SUCCEEDED afterwards); ``PARTIALLY_SUCCEEDED``
(ends so, with its results, as Vertex reports a job some of whose requests failed); ``LIMBO``
(reports a state no client knows, ``BATCH_STATE_LIMBO``, until it expires at 48 h);
``RESULTS_GONE`` (succeeds, naming a result file that is already gone: its download answers 403, as
for a file expired after 48 h). Result rules replace a record's line in a result file (file-mode
jobs; the first matching rule wins, ``times`` per key): ``line`` is text (UTF-8), ``line_b64`` raw
bytes in base64 (for bytes that are not UTF-8); ``{key}`` in either becomes the record key. The
line is billed as answered. Every job reports ``batchStats`` (request, successful, failed, pending
counts) as it runs. Answer rules bend a batch resource (``match`` is the job's display name) as
``batches.get``, ``batches.create`` or ``batches.list`` sends it: ``metadata`` is merged over its
metadata (null removes a key: ``{"output": null}``), ``drop_name`` sends it without a name, and a
list rule's ``garbage`` entries are listed before the jobs, e.g. ``{"endpoint": "batches.get",
"metadata": {"batchStats": {"requestCount": "Infinity"}}}``. File rules (``match`` is the display
name): an uploaded file stays ``PROCESSING`` for ``processing_seconds`` (0: ACTIVE at once), then
is ``state`` (``ACTIVE`` or ``FAILED``); a create whose input file is not ACTIVE answers 400
FAILED_PRECONDITION, as the service does. A quota storm on create is a fault with ``times``:
``{"endpoint": "batches.create", "status": 429, "times": 3}`` answers 429 RESOURCE_EXHAUSTED to the
first three creates, then lets them through. ``times`` limits how often a rule fires (per record
key for record rules); ``probability`` fires it at random (seeded, so a run is reproducible);
``calls`` lists 1-based call numbers of the endpoint; ``every`` fires on every n-th call. A fault
with ``status`` answers that HTTP error (with a Google-style body, its status word ``error_status``
if given, e.g. FAILED_PRECONDITION); with ``delay`` it sleeps first (a slow answer, or a client
timeout); with ``"after": true`` the call is carried out first and only its answer is lost (a
create that happened though the client saw a 503).

Limit rules (``key`` matches the API key, as a pattern): a create that would give the key more
than ``max_active_jobs`` jobs not yet ended, or more than ``max_enqueued_tokens`` input tokens in
them (the new job's included), answers 429 RESOURCE_EXHAUSTED, as the service's per-project
limits do; each key counts only its own jobs.

Endpoints: ``files.upload`` (the resumable start; ``match`` is the display name),
``files.upload_bytes`` (``match`` is the upload's display name), ``files.get``,
``files.list``, ``files.delete``, ``files.download``,
``batches.create`` (``match`` is the display name), ``batches.get``, ``batches.list``,
``batches.cancel``, ``batches.delete``.
"""

from __future__ import annotations

import fnmatch
import json
import random
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

RecordOutcome = Literal[
    "valid",
    "invalid_json",
    "schema_violation",
    "error_line",
    "missing_line",
    "safety",
    "recitation",
    "max_tokens",
]
JobOutcome = Literal[
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
    "EXPIRED",
    "STUCK",
    "TRUNCATED",
    "DUPLICATES",
    "EXTRA_KEYS",
    "ODD_STATE",
    "FAILED_THEN_SUCCEEDED",
    "PARTIALLY_SUCCEEDED",
    "LIMBO",
    "RESULTS_GONE",
]
ENDPOINTS = (
    "files.upload",
    "files.upload_bytes",
    "files.get",
    "files.list",
    "files.delete",
    "files.download",
    "batches.create",
    "batches.get",
    "batches.list",
    "batches.cancel",
    "batches.delete",
)


class Timing(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pending_seconds: float = 0.0
    running_seconds: float = 0.0


class RecordRule(msgspec.Struct, forbid_unknown_fields=True):
    match: str = "*"
    outcome: RecordOutcome = "valid"
    times: int | None = None
    probability: float | None = None
    #: The answer takes this many output tokens: a request line allowing fewer
    #: (``generationConfig.maxOutputTokens``, or none) is answered cut (``MAX_TOKENS``).
    output_tokens: int | None = None


class JobRule(msgspec.Struct, forbid_unknown_fields=True):
    outcome: JobOutcome = "SUCCEEDED"
    #: Overrides ``timing`` for the jobs this rule picks.
    pending_seconds: float | None = None
    running_seconds: float | None = None
    nth: int | None = None
    match: str | None = None
    display_name: str | None = None
    times: int | None = None
    probability: float | None = None


class Fault(msgspec.Struct, forbid_unknown_fields=True):
    endpoint: str
    status: int | None = None
    delay: float = 0.0
    calls: list[int] = []
    every: int | None = None
    match: str | None = None
    times: int | None = None
    probability: float | None = None
    message: str = ""
    #: The error's status word (default: the code's usual one, e.g. 400 INVALID_ARGUMENT).
    error_status: str = ""
    #: Do the work, then fail: the caller never hears it succeeded (a lost answer).
    after: bool = False
    #: ``batches.create`` only: fire only for a batch holding a record key that matches.
    record: str | None = None


class ResultRule(msgspec.Struct, forbid_unknown_fields=True):
    match: str = "*"
    #: The line to write instead of the answer (``{key}``: the record key), as UTF-8 text...
    line: str | None = None
    #: ... or as raw bytes, base64-encoded.
    line_b64: str | None = None
    times: int | None = None


class AnswerRule(msgspec.Struct, forbid_unknown_fields=True):
    """An odd batch resource: how one endpoint's answer for a job is bent before it is sent."""

    endpoint: Literal["batches.create", "batches.get", "batches.list"] = "batches.get"
    #: The job's display name.
    match: str = "*"
    times: int | None = None
    #: Merged over the resource's ``metadata`` (a null value removes the key).
    metadata: dict[str, Any] = {}
    #: Send the operation without its ``name``.
    drop_name: bool = False
    #: ``batches.list`` only: raw entries listed before the jobs (any JSON value).
    garbage: list[Any] = []


class FileRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    match: str = "*"
    processing_seconds: float = 0.0
    state: Literal["ACTIVE", "FAILED"] = "ACTIVE"


class KeyLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: str = "*"
    max_active_jobs: int | None = None
    max_enqueued_tokens: int | None = None


class PolicySpec(msgspec.Struct, forbid_unknown_fields=True):
    seed: int = 0
    timing: Timing = Timing()
    records: list[RecordRule] = []
    jobs: list[JobRule] = []
    files: list[FileRule] = []
    limits: list[KeyLimit] = []
    faults: list[Fault] = []
    results: list[ResultRule] = []
    answers: list[AnswerRule] = []


class Policy:
    """A loaded policy and the counters that ``times``/``calls``/``every`` need. Thread-safe."""

    def __init__(self, spec: PolicySpec | None = None) -> None:
        self.spec = spec or PolicySpec()
        for fault in self.spec.faults:
            if fault.endpoint not in ENDPOINTS:
                raise ValueError(f"unknown endpoint {fault.endpoint!r} (one of {ENDPOINTS})")
        self._rng = random.Random(self.spec.seed)
        self._lock = threading.Lock()
        self._record_fired: dict[tuple[int, str], int] = {}
        self._job_fired: dict[int, int] = {}
        self._fault_fired: dict[tuple[int, str], int] = {}
        self._result_fired: dict[tuple[int, str], int] = {}
        self._answer_fired: dict[int, int] = {}
        self._calls: dict[str, int] = {}
        self._jobs_created = 0

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Policy:
        return cls(msgspec.convert(data, PolicySpec))

    @classmethod
    def from_file(cls, path: Path) -> Policy:
        return cls.from_data(json.loads(path.read_text()))

    @property
    def timing(self) -> Timing:
        return self.spec.timing

    def _chance(self, probability: float | None) -> bool:
        return probability is None or self._rng.random() < probability

    def record_outcome(self, key: str) -> RecordOutcome:
        """The answer for one request line (counts a firing of the rule that decides it)."""
        with self._lock:
            for i, rule in enumerate(self.spec.records):
                if not fnmatch.fnmatchcase(key, rule.match):
                    continue
                fired = self._record_fired.get((i, key), 0)
                if rule.times is not None and fired >= rule.times:
                    continue
                if not self._chance(rule.probability):
                    continue
                self._record_fired[(i, key)] = fired + 1
                return rule.outcome
            return "valid"

    def output_tokens_needed(self, key: str) -> int | None:
        """The output tokens the answer for ``key`` takes (the first rule naming them), if any."""
        for rule in self.spec.records:
            if rule.output_tokens is not None and fnmatch.fnmatchcase(key, rule.match):
                return rule.output_tokens
        return None

    def job_rule(self, display_name: str, keys: list[str]) -> JobRule:
        """The rule deciding a new job's fate (outcome, timing); decided once, at creation."""
        with self._lock:
            self._jobs_created += 1
            n = self._jobs_created
            for i, rule in enumerate(self.spec.jobs):
                if rule.nth is not None and rule.nth != n:
                    continue
                if rule.display_name is not None and not fnmatch.fnmatchcase(
                    display_name, rule.display_name
                ):
                    continue
                if rule.match is not None and not any(
                    fnmatch.fnmatchcase(k, rule.match) for k in keys
                ):
                    continue
                fired = self._job_fired.get(i, 0)
                if rule.times is not None and fired >= rule.times:
                    continue
                if not self._chance(rule.probability):
                    continue
                self._job_fired[i] = fired + 1
                return rule
            return JobRule()

    def timing_for(self, rule: JobRule) -> Timing:
        return Timing(
            self.timing.pending_seconds if rule.pending_seconds is None else rule.pending_seconds,
            self.timing.running_seconds if rule.running_seconds is None else rule.running_seconds,
        )

    def result_line(self, key: str) -> bytes | None:
        """The raw line to write for ``key`` instead of its answer (None: the answer itself)."""
        import base64

        with self._lock:
            for i, rule in enumerate(self.spec.results):
                if not fnmatch.fnmatchcase(key, rule.match):
                    continue
                fired = self._result_fired.get((i, key), 0)
                if rule.times is not None and fired >= rule.times:
                    continue
                self._result_fired[(i, key)] = fired + 1
                escaped = json.dumps(key)[1:-1].encode()
                if rule.line_b64 is not None:
                    raw = base64.b64decode(rule.line_b64)
                else:
                    raw = (rule.line or "").encode()
                return raw.replace(b"{key}", escaped)
            return None

    def shape_answer(self, endpoint: str, resource: dict[str, Any]) -> dict[str, Any]:
        """``resource`` (a batch operation) as the first matching answer rule bends it."""
        metadata = resource.get("metadata") or {}
        display_name = str(metadata.get("displayName", ""))
        with self._lock:
            for i, rule in enumerate(self.spec.answers):
                if rule.endpoint != endpoint or not fnmatch.fnmatchcase(display_name, rule.match):
                    continue
                fired = self._answer_fired.get(i, 0)
                if rule.times is not None and fired >= rule.times:
                    continue
                self._answer_fired[i] = fired + 1
                out = {k: v for k, v in resource.items() if not (rule.drop_name and k == "name")}
                merged = {**metadata, **rule.metadata}
                out["metadata"] = {k: v for k, v in merged.items() if v is not None}
                return out
            return resource

    def list_garbage(self) -> list[Any]:
        """The raw entries ``batches.list`` answers before its jobs."""
        return [
            g for rule in self.spec.answers if rule.endpoint == "batches.list" for g in rule.garbage
        ]

    def file_rule(self, display_name: str) -> FileRule:
        """How a newly uploaded file's state goes (the first rule matching its display name)."""
        for rule in self.spec.files:
            if fnmatch.fnmatchcase(display_name, rule.match):
                return rule
        return FileRule()

    def limit_for(self, key: str) -> KeyLimit | None:
        """The per-key limits on jobs for ``key`` (the first rule matching it), if any."""
        for rule in self.spec.limits:
            if fnmatch.fnmatchcase(key, rule.key):
                return rule
        return None

    def fault_for(self, endpoint: str, subject: str = "", keys: Sequence[str] = ()) -> Fault | None:
        """The fault to inject into this call, if any (counts the call); ``keys`` are the record
        keys of the batch a ``batches.create`` would make (for ``record`` rules)."""
        with self._lock:
            n = self._calls.get(endpoint, 0) + 1
            self._calls[endpoint] = n
            for i, fault in enumerate(self.spec.faults):
                if fault.endpoint != endpoint:
                    continue
                if fault.calls and n not in fault.calls:
                    continue
                if fault.every is not None and n % fault.every:
                    continue
                if fault.match is not None and not fnmatch.fnmatchcase(subject, fault.match):
                    continue
                if fault.record is not None and not any(
                    fnmatch.fnmatchcase(k, fault.record) for k in keys
                ):
                    continue
                counter = (i, subject if fault.match is not None else "")
                fired = self._fault_fired.get(counter, 0)
                if fault.times is not None and fired >= fault.times:
                    continue
                if not self._chance(fault.probability):
                    continue
                self._fault_fired[counter] = fired + 1
                return fault
            return None

    def calls(self, endpoint: str) -> int:
        with self._lock:
            return self._calls.get(endpoint, 0)

    def all_calls(self) -> dict[str, int]:
        """Calls so far per endpoint (every HTTP request the service answered counts once)."""
        with self._lock:
            return dict(self._calls)
