"""The Gemini port: the File and Batch API calls the worker makes, and the values they speak.

The worker (:mod:`commands.worker`) depends on :class:`GeminiPort` only. The production adapter
is :class:`commands.gemini.sdk.Gateway` (google-genai over HTTP); tests hand in an in-process
adapter over the emulator's service (``tests/fakes.py``). Nothing here does I/O or imports the
SDK.

The contract every adapter keeps:

* every failure of the service (an HTTP error, a timeout, a dropped connection, an unreadable
  answer) is raised as :class:`commands.errors.GatewayError`, with ``code`` (the HTTP status,
  None without one) and ``transient`` (5xx, 408, 429, timeouts, connection errors: trying again
  later may work; 4xx: it will not); any other exception is a bug and propagates as it is;
* ``create_batch`` is attempted once (creation is not idempotent); the other calls may be retried
  by the adapter on transient failures, by its own policy;
* an adapter is safe to call from several threads at once (uploads run concurrently).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Protocol

import msgspec

from eventlog.states import JobState

__all__ = [
    "MAX_SERVICE_COUNT",
    "BatchStats",
    "GeminiPort",
    "RemoteBatch",
    "RemoteFile",
    "normalize_state",
    "service_count",
    "stats_of",
]

#: The largest count or size believed of the service (request counts, byte sizes); anything
#: above is clamped to it, so no number the service sends reaches arithmetic unbounded.
MAX_SERVICE_COUNT = 10**12
_DIGITS = frozenset("0123456789")


def normalize_state(state: object) -> str:
    """``BATCH_STATE_X``, ``JOB_STATE_X``, an SDK enum, any case -> ``JOB_STATE_X`` (pure): a
    :class:`JobState` member when the state is known, else the plain ``JOB_STATE_X`` text (the
    worker records it and polls again)."""
    text = str(getattr(state, "value", state) or "UNSPECIFIED").upper()
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    name = f"JOB_STATE_{text}"
    return JobState(name) if name in _KNOWN else name


_KNOWN = frozenset(JobState)


def service_count(value: object) -> int:
    """A count or size as the service sent it (an int64 comes as a string on the wire), as an
    integer in ``0..MAX_SERVICE_COUNT`` (pure, never raises). An integer, an integral finite
    float or a string of ASCII digits (optionally signed) is clamped into that range; anything
    else (a bool, NaN, infinity, a fraction, other text, other digits, an object) is 0."""
    number: int
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            return 0
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in ("-", "+") else text
        if not digits or not set(digits) <= _DIGITS or text.startswith("-"):
            return 0
        number = MAX_SERVICE_COUNT if len(digits) > 13 else int(digits)
    else:
        return 0
    return min(max(number, 0), MAX_SERVICE_COUNT)


def stats_of(metadata: object) -> BatchStats | None:
    """The ``batchStats`` of a batch resource's ``metadata`` (counts come as strings, absent
    ones are 0; each through :func:`service_count`), or None when the resource carries none
    (pure, never raises)."""
    if not isinstance(metadata, dict):
        return None
    raw = metadata.get("batchStats") or metadata.get("batch_stats")
    if not isinstance(raw, dict):
        return None

    def count(*names: str) -> int:
        for n in names:
            if n in raw:
                return service_count(raw[n])
        return 0

    return BatchStats(
        requests=count("requestCount", "request_count"),
        succeeded=count("successfulRequestCount", "successful_request_count"),
        failed=count("failedRequestCount", "failed_request_count"),
        pending=count("pendingRequestCount", "pending_request_count"),
    )


class RemoteFile(msgspec.Struct, frozen=True):
    """A file on the File API."""

    name: str
    uri: str
    mime_type: str
    size_bytes: int
    display_name: str = ""
    #: ``PROCESSING``, ``ACTIVE`` or ``FAILED`` (a batch can be created only from an ACTIVE one).
    state: str = "ACTIVE"


class BatchStats(msgspec.Struct, frozen=True):
    """A job's request counts as the service reports them (the batch resource's ``batchStats``)."""

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0


class RemoteBatch(msgspec.Struct, frozen=True):
    """A batch job as the service last reported it; ``state`` is normalised (``JOB_STATE_X``)."""

    name: str
    display_name: str
    state: str
    result_file: str | None = None
    #: Inline results (inline-request jobs), as ``{"key", "response"|"error"}`` lines.
    inline_lines: list[dict[str, Any]] | None = None
    #: The job's request counts, when the answer carried them.
    stats: BatchStats | None = None
    #: When the job was created (RFC 3339, as the service wrote it); "" if not reported.
    create_time: str = ""


class GeminiPort(Protocol):
    """The calls the worker makes on the Gemini File and Batch API (see the module's contract)."""

    def upload(
        self, source: Path | bytes, *, mime_type: str, display_name: str, retry: bool = False
    ) -> RemoteFile:
        """Upload a file. One attempt unless ``retry`` (then the adapter's retry policy); a
        failed attempt may still have left a file on the service."""
        ...

    def get_file(self, name: str) -> RemoteFile:
        """An uploaded file as the service has it now (its ``state`` above all). Read-only."""
        ...

    def delete_file(self, name: str) -> bool:
        """Delete an uploaded file; False if it was already gone (403/404). Idempotent."""
        ...

    def list_files(self) -> list[RemoteFile]:
        """Every file this key has on the service (all pages). Read-only."""
        ...

    def check_access(self) -> None:
        """One cheap authenticated call (the first page of at most one file), so a refused key
        or a URL that is not the API shows before any work: raises :class:`GatewayError` as every
        call does, nothing otherwise. Read-only."""
        ...

    def download_to(self, file_name: str, destination: Path) -> None:
        """Write a (result) file's whole content to ``destination``, replacing what was there."""
        ...

    def create_batch(self, *, model: str, input_file: str, display_name: str) -> RemoteBatch:
        """Create a batch job from an uploaded request file. Attempted once: a transient error
        means the job may or may not exist (look it up by ``display_name``)."""
        ...

    def get_batch(self, name: str) -> RemoteBatch:
        """A job's current state. Read-only."""
        ...

    def find_batches(self, display_name: str, *, created_after: str = "") -> list[RemoteBatch]:
        """Every job created under ``display_name``. Read-only. The list is read page by page;
        with ``created_after`` (RFC 3339) the adapter may stop once the service's list, newest
        first, has gone past jobs created before it (else the whole list is read)."""
        ...

    def cancel_batch(self, name: str) -> None:
        """Ask the service to cancel a job (a terminal job stays as it is). Idempotent."""
        ...

    def delete_batch(self, name: str) -> bool:
        """Delete a job from the service; False if it was already gone (404). Idempotent."""
        ...

    def close(self) -> None:
        """Release the adapter's connections; no call may follow."""
        ...
