"""Batches given up on (ended, cleared or stuck), watched for late results: the I/O around
:mod:`commands.rules.abandoned`.

Each one of this worker's partitions is asked for, side by side, while its late window is open;
a batch that succeeded after all has its valid results adopted for records that still have no
output (every other answer it was billed for is recorded as discarded); nothing is resubmitted
or counted as a failure.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.abandoned import AbandonedBatch, judge_abandoned
from commands.rules.collect import decide, discarded, late_adopted
from commands.rules.results import Verdict
from commands.worker.collect import CHUNK, BatchRef, read_verdicts, write_chunk
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from commands.worker.outputs import write_outputs
from commands.worker.pools import gather
from eventlog import crashpoints
from eventlog.events import BatchSubmitted, Event
from projections import queries
from projections.abandoned_batches import AbandonedBatch as AbandonedBatchRow

log = logging.getLogger("commands.cycle")

__all__ = ["adopt_late", "watch_abandoned"]


async def watch_abandoned(w: Worker) -> None:
    """Look at every batch given up on whose late window is open, side by side; adopt the
    late results of one at a time (two batches given up on may hold the same record: the first
    result wins, so the second must see the first's output)."""
    grace = w.config.batching.late_results_grace_minutes / 60
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    adopting = asyncio.Lock()
    flows = []
    for a in queries.abandoned_batches(w.store):
        partition = w.partition_of(a.display_name, parts)
        if w.mine(partition):
            flows.append(_watch(w, a, grace, partition, adopting))
    await gather(flows)


async def _watch(
    w: Worker, a: AbandonedBatchRow, grace: float, partition: str, adopting: asyncio.Lock
) -> None:
    batch_id = a.batch_id
    batch = AbandonedBatch(batch_id, bool(a.terminal))
    with w.acting_for(partition):
        age, abandoned = w.hours_since(a.submitted_at), w.hours_since(a.abandoned_at)
        verdict = judge_abandoned(batch, None, age, abandoned, grace)
        if verdict.outcome == "look":
            answer: RemoteBatch | GatewayError
            try:
                answer = await w.pools.call(w.port(a.project).get_batch, batch_id)
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
            elif verdict.outcome == "adopt" and isinstance(answer, RemoteBatch):
                ref = BatchRef(batch_id, a.model, a.submitted_seq, a.submitted_at, "", a.project)
                async with adopting:
                    w.check_lease()
                    await adopt_late(w, ref, answer)
        w.append(verdict.events)


def batch_keys(w: Worker, submitted_seq: int) -> list[str]:
    """The record keys of the batch submitted at ``submitted_seq``, read from the log."""
    for rec in w.store.read(after_seq=submitted_seq - 1, until_seq=submitted_seq):
        if isinstance(rec.event, BatchSubmitted):
            return list(rec.event.record_keys)
    return []


async def adopt_late(w: Worker, batch: BatchRef, remote: RemoteBatch) -> tuple[int, int]:
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
            verdicts = await read_verdicts(w, remote, tmp, batch.project)
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
                reason = f"late result not adopted: {why}"
                discards.append(discarded(batch.batch_id, batch.model, v, reason))
            if len(chunk) + len(discards) >= CHUNK:
                adopted += await _adopt(w, batch, chunk, discards)
                chunk, discards = [], []
        adopted += await _adopt(w, batch, chunk, discards)
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


async def _adopt(w: Worker, batch: BatchRef, verdicts: list[Verdict], discards: list[Event]) -> int:
    """Write the adopted outputs, then append their events and the discards together."""
    chunk = write_chunk(w, verdicts, discards, {v.key for v in verdicts})
    digests = await w.pools.files(write_outputs, chunk.items)
    if verdicts:
        crashpoints.reach("after_output_write")
    valid = [v for v in chunk.checked if v.valid]
    written = {v.key: (str(p), digests[p]) for v, (p, _) in zip(valid, chunk.items, strict=True)}
    events = decide(batch.batch_id, valid, written, {}, w.config.batching.max_retries, batch.model)
    w.append([*events, *discards])
    return len(events)
