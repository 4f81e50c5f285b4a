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
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgspec

from commands.gemini.port import RemoteBatch
from commands.rules.results import Verdict, decide, judge
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from commands.worker.outputs import write_outputs
from eventlog import crashpoints
from eventlog.events import (
    BatchCompleted,
    BatchSubmitted,
    Event,
    LateResultsAdopted,
    ResultDiscarded,
    ResultLinesIgnored,
)
from projections import queries
from projections.active_batches import ActiveBatch

log = logging.getLogger("commands.collect")

CHUNK = 500
MAX_LISTED = 100  # keys named in one ResultLinesIgnored event
_KEY_IN_LINE = re.compile(rb'"key"\s*:\s*"((?:[^"\\]|\\.)*)"')

Line = tuple[str | None, dict[str, Any] | None]


class BatchRef(msgspec.Struct, frozen=True):
    """What collecting needs to know of a batch."""

    batch_id: str
    model: str
    submitted_seq: int
    submitted_at: str

    @classmethod
    def of(cls, batch: ActiveBatch) -> BatchRef:
        """The reference to an ``active_batches`` row."""
        return cls(batch.batch_id, batch.model, batch.submitted_seq, batch.submitted_at)


def _read_lines(path: Path) -> Iterator[Line]:
    """(key, line) per JSONL line; (key, None) for a line that is not JSON but names a key, and
    (None, None) for one that names none."""
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


def _lines(w: Worker, remote: RemoteBatch, tmp: str) -> Iterable[Line]:
    if remote.inline_lines is not None:
        return ((str(line.get("key")), line) for line in remote.inline_lines)
    local = Path(tmp) / "results.jsonl"
    w.gateway.download_to(remote.result_file or "", local)
    crashpoints.reach("during_result_download")
    return _read_lines(local)


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


def _discard(batch: BatchRef, v: Verdict, reason: str) -> ResultDiscarded:
    return ResultDiscarded(
        record_key=v.key,
        batch_id=batch.batch_id,
        reason=reason,
        prompt_tokens=v.prompt_tokens,
        output_tokens=v.output_tokens,
        total_tokens=v.total_tokens,
        model=batch.model,
    )


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


def collect(w: Worker, batch: BatchRef, remote: RemoteBatch) -> dict[str, int]:
    """Process a succeeded batch's results and complete it. Safe to repeat after a crash.

    Memory stays flat in the file's size: whether a line's record is still pending is asked of
    the database (it leaves ``inflight_records`` as its chunk commits), not held in a set.
    """
    batch_id = batch.batch_id
    store = w.store
    superseded = queries.superseded_records(store, batch_id, batch.submitted_seq)
    total = queries.count_in_flight(store, batch_id)
    counts = {"validated": 0, "failed": 0}
    ignored = {"duplicates": 0, "unknown": 0}
    duplicates: list[str] = []
    unknown: list[str] = []
    unreadable = 0
    chunk: list[Verdict] = []
    discards: list[Event] = []
    in_chunk: set[str] = set()
    bar = w.progress.start(f"results of {batch_id}", total)

    def add(v: Verdict) -> None:
        nonlocal chunk, discards
        if v.key in superseded:
            discards.append(_discard(batch, v, f"already written from {superseded[v.key]}"))
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
        for key, line in _lines(w, remote, tmp):
            if key is None:
                unreadable += 1
                continue
            if key in in_chunk or not queries.is_pending_in(store, key, batch_id):
                kind = (
                    "duplicates" if queries.batch_held_record(store, batch_id, key) else "unknown"
                )
                ignored[kind] += 1
                listed = duplicates if kind == "duplicates" else unknown
                if len(listed) < MAX_LISTED:
                    listed.append(key)
                continue
            add(
                judge(key, line, w.schema)
                if line is not None
                else Verdict(key, "unparseable_line", "the result line is not valid JSON")
            )
        flush()
    while True:  # records with no line at all, a chunk at a time, in key order
        missing = queries.pending_keys(store, batch_id, CHUNK)
        if not missing:
            break
        for key in missing:
            add(judge(key, None, w.schema))
        flush()
    bar.close()
    tail: list[Event] = []
    if ignored["duplicates"] or ignored["unknown"] or unreadable:
        log.warning(
            "Batch %s: ignored %d duplicate line(s), %d line(s) for keys it never held, "
            "%d unreadable line(s)",
            batch_id,
            ignored["duplicates"],
            ignored["unknown"],
            unreadable,
            extra={"batch_id": batch_id},
        )
        tail.append(
            ResultLinesIgnored(
                batch_id=batch_id,
                duplicates=duplicates[:MAX_LISTED],
                unknown_keys=unknown[:MAX_LISTED],
                unreadable=unreadable,
            )
        )
    tail.append(BatchCompleted(batch_id=batch_id, submitted_at=batch.submitted_at, **counts))
    w.append(tail)
    crashpoints.reach("after_completed_event")
    log.info(
        "Batch Complete: %s (%d validated, %d failed)",
        batch_id,
        counts["validated"],
        counts["failed"],
        extra={"batch_id": batch_id},
    )
    return counts


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
        for key, line in _lines(w, remote, tmp):
            if key is None or key not in keys or key in seen or line is None:
                ignored += 1
                continue
            seen.add(key)
            v = judge(key, line, w.schema)
            if v.valid and not output_path(root, key).exists():
                chunk.append(v)
            else:  # invalid, or written meanwhile (the first result wins)
                ignored += 1
                why = "already written" if v.valid else v.error_type
                discards.append(_discard(batch, v, f"late result not adopted: {why}"))
            if len(chunk) + len(discards) >= CHUNK:
                adopted += _adopt(w, batch, chunk, discards)
                chunk, discards = [], []
        adopted += _adopt(w, batch, chunk, discards)
    w.append(
        [
            LateResultsAdopted(
                batch_id=batch.batch_id,
                adopted=adopted,
                ignored=ignored,
                result_file=remote.result_file or "",
            )
        ]
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
