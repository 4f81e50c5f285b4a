"""Collecting a succeeded batch's results: judge each line, write outputs, append events.

* The first line per pending record wins; duplicates, keys that were never in the batch and
  unreadable lines are skipped and recorded (``ResultLinesIgnored``); a key from the service
  never becomes a path unless it is one of this batch's own records.
* Outputs are written durably *before* their events are appended, chunk by chunk, so a crash
  leaves either nothing or a file whose event the next attempt appends (the write is repeated
  with the same content). Records already judged are no longer in flight and are skipped.
* A record already written from another batch since this one was submitted (a late result
  adopted first) keeps that output: this result is discarded (``ResultDiscarded``).
* Late results of a batch the system gave up on are adopted only where a record still has no
  output and the result is valid; nothing is resubmitted or counted as a failure.
* Every line gets a verdict (:func:`commands.rules.results.judge_line` never raises): bytes that
  are not UTF-8, JSON nested too deeply, a line of the wrong shape or longer than
  ``[results] max_result_line_bytes`` fail their record and the rest of the batch is collected.
  A line is read at most ``max_result_line_bytes`` at a time, however long it is. Inline
  responses (``dest.inlined_responses``) are re-encoded and meet the same cap and judge.
* A result file that cannot be downloaded (gone, or failing transiently past
  ``[results] download_give_up_hours``) ends the batch with ``BatchResultsUnavailable``: its
  records still in flight go back to pending; nothing is written or counted as a failure.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.collect import (
    Ignored,
    completed,
    decide,
    discarded,
    judge_download_error,
    late_adopted,
    results_unavailable,
)
from commands.rules.results import Verdict, judge, judge_inline, judge_line
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from commands.worker.outputs import write_outputs
from eventlog import crashpoints
from eventlog.events import DEFAULT_PROJECT, BatchSubmitted, Event
from eventlog.states import SUCCESS_STATES
from projections import queries
from projections.active_batches import ActiveBatch

log = logging.getLogger("commands.collect")

CHUNK = 500
_SKIP_CHUNK = 1024 * 1024  # the rest of a line too long to judge is skipped this much at a time


class BatchRef(msgspec.Struct, frozen=True):
    """What collecting needs to know of a batch."""

    batch_id: str
    model: str
    submitted_seq: int
    submitted_at: str
    #: When the batch was last seen changing while already succeeded ("": it succeeded now).
    succeeded_at: str = ""
    #: Its project: the result file is downloaded with that project's key.
    project: str = DEFAULT_PROJECT

    @classmethod
    def of(cls, batch: ActiveBatch) -> BatchRef:
        """The reference to an ``active_batches`` row."""
        succeeded_at = batch.updated_at if batch.state in SUCCESS_STATES else ""
        return cls(
            batch.batch_id,
            batch.model,
            batch.submitted_seq,
            batch.submitted_at,
            succeeded_at,
            batch.project,
        )


def _raw_lines(path: Path, max_bytes: int) -> Iterator[tuple[bytes, int | None]]:
    """Each non-blank line of a JSONL file without its line end, and None; for a line longer
    than ``max_bytes``, its first ``max_bytes + 1`` bytes and its whole length (the rest is
    skipped unread, so memory stays bounded by ``max_bytes``)."""
    with path.open("rb") as fh:
        while True:
            raw = fh.readline(max_bytes + 1)
            if not raw:
                return
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                size = len(raw)
                while True:
                    more = fh.readline(_SKIP_CHUNK)
                    size += len(more)
                    if not more or more.endswith(b"\n"):
                        break
                yield raw, size - (1 if more.endswith(b"\n") else 0)
                continue
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield raw, None


def _verdicts(w: Worker, remote: RemoteBatch, tmp: str, project: str) -> Iterator[Verdict]:
    """A verdict per result line (key "": a line naming no key). The result file is downloaded
    before the first is yielded: a :class:`GatewayError` comes before any verdict."""
    limits = w.config.results
    if remote.inline_lines is not None:
        return (
            judge_inline(
                line,
                w.schema,
                max_line_bytes=limits.max_result_line_bytes,
                max_output_bytes=limits.max_output_bytes,
            )
            for line in remote.inline_lines
        )
    if not remote.result_file:
        raise GatewayError("the succeeded job names no result file", transient=False)
    local = Path(tmp) / "results.jsonl"
    w.port(project).download_to(remote.result_file, local)
    crashpoints.reach("during_result_download")
    return (
        judge_line(
            raw,
            w.schema,
            max_line_bytes=limits.max_result_line_bytes,
            max_output_bytes=limits.max_output_bytes,
            size=size,
        )
        for raw, size in _raw_lines(local, limits.max_result_line_bytes)
    )


def _write(w: Worker, verdicts: list[Verdict]) -> tuple[list[Verdict], dict[str, tuple[str, str]]]:
    """Write the valid verdicts' outputs; a key that cannot be a path becomes a failure."""
    root = w.config.paths.output_root
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
    valid = [v for v in checked if v.valid]
    written = {v.key: (str(p), digests[p]) for v, (p, _) in zip(valid, items, strict=True)}
    return checked, written


def _record(
    w: Worker,
    batch: BatchRef,
    verdicts: list[Verdict],
    discards: list[Event],
    counts: dict[str, int],
) -> None:
    """Write a chunk's outputs, then append its events in one transaction."""
    if not verdicts and not discards:
        return
    checked, written = _write(w, verdicts)
    failed_keys = [v.key for v in checked if not v.valid]
    with w.store.write() as tx:
        failures = queries.failure_counts_of(w.store, failed_keys)
        events = decide(
            batch.batch_id, checked, written, failures, w.config.batching.max_retries, batch.model
        )
        tx.append([*events, *discards], actor=w.actor)
    crashpoints.reach("after_result_events")
    for v in checked:
        if not v.valid:
            log.info(
                "Record %s failed: %s: %s",
                v.key,
                v.error_type,
                v.message,
                extra={"batch_id": batch.batch_id, "record_key": v.key, "error_type": v.error_type},
            )
    counts["validated"] += len(written)
    counts["failed"] += len(failed_keys)


def collect(w: Worker, batch: BatchRef, remote: RemoteBatch) -> dict[str, int] | None:
    """Process a succeeded batch's results and complete it. Safe to repeat after a crash.
    Returns the counts, or None when the result file could not be downloaded (the batch was
    ended by ``BatchResultsUnavailable``, or is tried again next cycle).

    Memory stays flat in the file's size: whether a line's record is still pending is asked of
    the database (it leaves ``inflight_records`` as its chunk commits), not held in a set.
    """
    batch_id = batch.batch_id
    store = w.store
    superseded = queries.superseded_records(store, batch_id, batch.submitted_seq)
    total = queries.count_in_flight(store, batch_id)
    counts = {"validated": 0, "failed": 0}
    ignored = Ignored()
    chunk: list[Verdict] = []
    discards: list[Event] = []
    in_chunk: set[str] = set()
    bar = w.progress.start(f"results of {batch_id}", total)

    def add(v: Verdict) -> None:
        nonlocal chunk, discards
        if v.key in superseded:
            discards.append(
                discarded(batch_id, batch.model, v, f"already written from {superseded[v.key]}")
            )
        else:
            chunk.append(v)
        in_chunk.add(v.key)
        if len(in_chunk) >= CHUNK:
            flush()

    def flush() -> None:
        nonlocal chunk, discards
        _record(w, batch, chunk, discards, counts)
        bar.update(len(in_chunk))
        chunk, discards = [], []
        in_chunk.clear()

    with tempfile.TemporaryDirectory(dir=w.store.path.parent, prefix=".results-") as tmp:
        try:
            verdicts = _verdicts(w, remote, tmp, batch.project)
        except GatewayError as e:
            _download_failed(w, batch, e)
            return None
        for v in verdicts:
            key = v.key
            if not key:
                ignored.unreadable += 1
                continue
            if key in in_chunk or not queries.is_pending_in(store, key, batch_id):
                ignored.add(key, duplicate=queries.batch_held_record(store, batch_id, key))
                continue
            add(v)
        flush()
    while True:  # records with no line at all, a chunk at a time, in key order
        missing = queries.pending_keys(store, batch_id, CHUNK)
        if not missing:
            break
        for key in missing:
            add(judge(key, None, w.schema))
        flush()
    bar.close()
    if ignored:
        log.warning(
            "Batch %s: ignored %d duplicate line(s), %d line(s) for keys it never held, "
            "%d unreadable line(s)",
            batch_id,
            ignored.duplicates,
            ignored.unknown,
            ignored.unreadable,
            extra={"batch_id": batch_id},
        )
    w.append(
        completed(batch_id, batch.submitted_at, counts["validated"], counts["failed"], ignored)
    )
    crashpoints.reach("after_completed_event")
    log.info(
        "Batch Complete: %s (%d validated, %d failed)",
        batch_id,
        counts["validated"],
        counts["failed"],
        extra={"batch_id": batch_id},
    )
    return counts


def _download_failed(w: Worker, batch: BatchRef, error: GatewayError) -> None:
    """A succeeded batch whose result file did not download: end it (its records go back to
    pending) once :func:`judge_download_error` says it is unavailable, else log and wait."""
    batch_id = batch.batch_id
    extra = {"batch_id": batch_id}
    since = w.hours_since(batch.succeeded_at) if batch.succeeded_at else 0.0
    give_up = w.config.results.download_give_up_hours
    if judge_download_error(error, since, give_up) == "retry":
        log.warning(
            "Cannot download the results of %s yet (%s); the next cycle tries again "
            "(given up %g h after it succeeded)",
            batch_id,
            error,
            give_up,
            extra=extra,
        )
        return
    freed = queries.count_in_flight(w.store, batch_id)
    w.append([results_unavailable(batch_id, error, batch.submitted_at)])
    crashpoints.reach("after_results_unavailable")
    log.warning(
        "Batch %s: its results cannot be downloaded (%s); its %d record(s) are free for "
        "resubmission",
        batch_id,
        error,
        freed,
        extra=extra,
    )


def batch_keys(w: Worker, submitted_seq: int) -> list[str]:
    """The record keys of the batch submitted at ``submitted_seq``, read from the log."""
    for rec in w.store.read(after_seq=submitted_seq - 1, until_seq=submitted_seq):
        if isinstance(rec.event, BatchSubmitted):
            return list(rec.event.record_keys)
    return []


def adopt_late(w: Worker, batch: BatchRef, remote: RemoteBatch) -> tuple[int, int]:
    """Adopt the valid results of a batch given up on, for records that still have no output;
    every other answer it was billed for is recorded as discarded. Returns (adopted, ignored)."""
    keys = set(batch_keys(w, batch.submitted_seq))
    root = w.config.paths.output_root
    seen: set[str] = set()
    adopted = ignored = 0
    with tempfile.TemporaryDirectory(dir=w.store.path.parent, prefix=".late-") as tmp:
        chunk: list[Verdict] = []
        discards: list[Event] = []
        try:
            verdicts = _verdicts(w, remote, tmp, batch.project)
        except GatewayError as e:
            log.warning(
                "Cannot download the late results of %s (%s); looking again next cycle",
                batch.batch_id,
                e,
                extra={"batch_id": batch.batch_id},
            )
            return 0, 0
        for v in verdicts:
            key = v.key
            if not key or key not in keys or key in seen or v.error_type == "unparseable_line":
                ignored += 1
                continue
            seen.add(key)
            if v.valid and not output_path(root, key).exists():
                chunk.append(v)
            else:  # invalid, or written meanwhile (the first result wins)
                ignored += 1
                why = "already written" if v.valid else v.error_type
                discards.append(
                    discarded(batch.batch_id, batch.model, v, f"late result not adopted: {why}")
                )
            if len(chunk) + len(discards) >= CHUNK:
                adopted += _adopt(w, batch, chunk, discards)
                chunk, discards = [], []
        adopted += _adopt(w, batch, chunk, discards)
    w.append(
        [late_adopted(batch.batch_id, adopted, ignored, remote.result_file or "", batch.project)]
    )
    log.info(
        "Late results of %s: %d adopted, %d ignored",
        batch.batch_id,
        adopted,
        ignored,
        extra={"batch_id": batch.batch_id},
    )
    return adopted, ignored


def _adopt(w: Worker, batch: BatchRef, verdicts: list[Verdict], discards: list[Event]) -> int:
    """Write the adopted outputs, then append their events and the discards together."""
    checked, written = _write(w, verdicts) if verdicts else ([], {})
    events = decide(
        batch.batch_id,
        [v for v in checked if v.valid],
        written,
        {},
        w.config.batching.max_retries,
        batch.model,
    )
    w.append([*events, *discards])
    return len(events)
