"""Collecting a succeeded batch's results: judge each line, write outputs, append events (the I/O
around :mod:`commands.rules.results` and :mod:`commands.rules.collect`).

* The first line per pending record wins; duplicates, keys that were never in the batch and
  unreadable lines are skipped and recorded (``ResultLinesIgnored``); a key from the service
  never becomes a path unless it is one of this batch's own records.
* **Durability order.** A chunk's outputs are written and flushed (:mod:`commands.worker.outputs`)
  *before* its events are appended, so a crash leaves either nothing or a file whose event the
  next attempt appends (the write is repeated with the same content). Records already judged
  are no longer in flight and are skipped.
* **Off the critical path.** Chunks are pipelined: while one chunk's files are written and
  flushed on threads, the next chunk's lines are read and judged here, and other batches' calls
  go on; a chunk's events are appended once its own files are durable. The output folders'
  symlink guard is made once per folder and chunk (:class:`~commands.worker.dataset.OutputTree`).
* A record already written from another batch since this one was submitted (a late result
  adopted first) keeps that output: this result is discarded (``ResultDiscarded``).
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

import asyncio
import logging
import tempfile
from collections.abc import Iterable, Iterator
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
    results_unavailable,
)
from commands.rules.results import Verdict, judge, judge_inline, judge_line
from commands.worker.context import Worker
from commands.worker.dataset import OutputTree
from commands.worker.outputs import write_outputs
from commands.worker.progress import Bar, NullBar
from eventlog import crashpoints
from eventlog.events import DEFAULT_PROJECT, Event
from eventlog.states import SUCCESS_STATES
from projections import queries
from projections.active_batches import ActiveBatch

log = logging.getLogger("commands.collect")

__all__ = ["CHUNK", "BatchRef", "Chunk", "collect", "read_verdicts", "write_chunk"]

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


async def read_verdicts(
    w: Worker, remote: RemoteBatch, tmp: str, project: str
) -> Iterator[Verdict]:
    """A verdict per result line (key "": a line naming no key), judged as it is read. The
    result file is downloaded first: a :class:`GatewayError` comes before any verdict."""
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
    await w.pools.call(w.port(project).download_to, remote.result_file, local)
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


class Chunk(msgspec.Struct):
    """Up to :data:`CHUNK` records' verdicts, their outputs to write, and the results
    discarded with them (``checked``: the verdicts, a key that cannot be a path failed)."""

    checked: list[Verdict]
    items: list[tuple[Path, bytes]]
    discards: list[Event]
    keys: set[str]


def write_chunk(w: Worker, verdicts: list[Verdict], discards: list[Event], keys: set[str]) -> Chunk:
    """The chunk's outputs to write (one folder check per folder); a valid verdict whose key
    cannot be a path (a folder swapped for a symlink out of the root) fails as ``unsafe_key``."""
    tree = OutputTree(w.config.paths.output_root)
    items: list[tuple[Path, bytes]] = []
    checked: list[Verdict] = []
    for v in verdicts:
        if v.valid:
            try:
                items.append((tree.path(v.key), v.output or b""))
            except ValueError as e:
                v = Verdict(v.key, "unsafe_key", str(e))
        checked.append(v)
    return Chunk(checked, items, discards, keys)


class _Collecting:
    """One batch's collection in progress: its counts, what it ignored, the keys taken by
    chunks not yet recorded (a later line for one is a duplicate), and its progress bar."""

    def __init__(self, w: Worker, batch: BatchRef, bar: Bar) -> None:
        self.w, self.batch, self.bar = w, batch, bar
        self.superseded = queries.superseded_records(w.store, batch.batch_id, batch.submitted_seq)
        self.counts = {"validated": 0, "failed": 0}
        self.ignored = Ignored()
        self.taken: set[str] = set()

    def chunks(self, verdicts: Iterable[Verdict]) -> Iterator[Chunk]:
        """The verdicts of the records still pending in this batch, a chunk at a time (the
        first line of a record wins; whether a line's record is pending is asked of the log
        once a chunk, and of the chunks not yet recorded)."""
        lines: list[Verdict] = []
        seen: set[str] = set()
        for v in verdicts:
            if not v.key:
                self.ignored.unreadable += 1
            elif v.key in seen or v.key in self.taken:
                self._ignore(v.key)
            else:
                seen.add(v.key)
                lines.append(v)
                if len(lines) >= CHUNK:
                    yield from self._pending(lines)
                    lines, seen = [], set()
        if lines:
            yield from self._pending(lines)

    def _pending(self, lines: list[Verdict]) -> Iterator[Chunk]:
        """``lines`` (one a record) as a chunk of those whose record is still pending; a line
        for a record already judged, or one the batch never held, is ignored (said later)."""
        batch_id = self.batch.batch_id
        pending = queries.pending_among(self.w.store, batch_id, [v.key for v in lines])
        verdicts: list[Verdict] = []
        discards: list[Event] = []
        keys: set[str] = set()
        for v in lines:
            if v.key not in pending:
                self._ignore(v.key)
                continue
            keys.add(v.key)
            if v.key in self.superseded:
                why = f"already written from {self.superseded[v.key]}"
                discards.append(discarded(batch_id, self.batch.model, v, why))
            else:
                verdicts.append(v)
        if keys:
            yield self._chunk(verdicts, discards, keys)

    def _ignore(self, key: str) -> None:
        """A line no record takes: a duplicate (its record is the batch's) or a key the batch
        never held."""
        held = key in self.taken or queries.batch_held_record(
            self.w.store, self.batch.batch_id, key
        )  # a record this collection judged already is the batch's: no query for its duplicate
        self.ignored.add(key, duplicate=held)

    def _chunk(self, verdicts: list[Verdict], discards: list[Event], keys: set[str]) -> Chunk:
        self.taken |= keys
        return write_chunk(self.w, verdicts, discards, keys)

    async def pipeline(self, chunks: Iterable[Chunk]) -> None:
        """Write each chunk on threads while the next is read and judged; record each once
        its own files are durable, in order."""
        waiting: tuple[Chunk, asyncio.Future[dict[Path, str]]] | None = None
        try:
            for chunk in chunks:
                writing = asyncio.ensure_future(self.w.pools.files(write_outputs, chunk.items))
                if waiting is not None:
                    await self.record(*waiting)
                waiting = (chunk, writing)
            if waiting is not None:
                await self.record(*waiting)
                waiting = None
        finally:
            if waiting is not None and not waiting[1].done():  # a chunk left behind by an error
                await asyncio.wait([waiting[1]])

    async def record(self, chunk: Chunk, writing: asyncio.Future[dict[Path, str]]) -> None:
        """Once ``chunk``'s outputs are durable, append its events in one transaction."""
        w, batch = self.w, self.batch
        digests = await writing
        crashpoints.reach("after_output_write")
        valid = [v for v in chunk.checked if v.valid]
        written = {
            v.key: (str(path), digests[path])
            for v, (path, _) in zip(valid, chunk.items, strict=True)
        }
        failed = [v for v in chunk.checked if not v.valid]
        with w.store.write() as tx:
            failures = queries.failure_counts_of(w.store, [v.key for v in failed])
            events = decide(
                batch.batch_id,
                chunk.checked,
                written,
                failures,
                w.config.batching.max_retries,
                batch.model,
            )
            if events or chunk.discards:
                tx.append([*events, *chunk.discards], actor=w.actor)
        crashpoints.reach("after_result_events")
        self.taken -= chunk.keys
        for v in failed:
            log.info(
                "Record %s failed: %s: %s",
                v.key,
                v.error_type,
                v.message,
                extra={"batch_id": batch.batch_id, "record_key": v.key, "error_type": v.error_type},
            )
        self.counts["validated"] += len(written)
        self.counts["failed"] += len(failed)
        self.bar.update(len(chunk.keys))

    async def missing(self) -> None:
        """Fail the records with no line at all, a chunk at a time, in key order (each recorded
        before the next is asked for: they have no files to overlap)."""
        while True:
            keys = queries.pending_keys(self.w.store, self.batch.batch_id, CHUNK)
            if not keys:
                return
            chunk = self._chunk([judge(k, None, self.w.schema) for k in keys], [], set(keys))
            await self.record(chunk, asyncio.ensure_future(self.w.pools.files(write_outputs, [])))


async def collect(
    w: Worker, batch: BatchRef, remote: RemoteBatch, bar: Bar | None = None
) -> dict[str, int] | None:
    """Process a succeeded batch's results and complete it. Safe to repeat after a crash.
    Returns the counts, or None when the result file could not be downloaded (the batch was
    ended by ``BatchResultsUnavailable``, or is tried again next cycle).

    Memory stays flat in the file's size: whether a line's record is still pending is asked of
    the database (it leaves ``inflight_records`` as its chunk commits) and of the keys of the
    chunks not yet recorded, not held in a set of the whole file.
    """
    batch_id = batch.batch_id
    collecting = _Collecting(w, batch, bar or NullBar())
    with tempfile.TemporaryDirectory(dir=w.store.path.parent, prefix=".results-") as tmp:
        try:
            verdicts = await read_verdicts(w, remote, tmp, batch.project)
        except GatewayError as e:
            _download_failed(w, batch, e)
            return None
        await collecting.pipeline(collecting.chunks(verdicts))
    await collecting.missing()
    counts, ignored = collecting.counts, collecting.ignored
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
