"""Polling the active batches, the I/O around :mod:`commands.rules.poll`.

Every active batch of this worker's partitions moves on its own flow, all side by side (the
gets on the service-call pool): its answer is judged and its events appended as soon as it is
in (a stuck batch is cancelled on the service first), and a batch that succeeded is collected
at once (:func:`commands.worker.collect.collect`): result files download together and one
batch's lines are judged while the others' polls and downloads are in flight. The jobs of
completed batches are deleted in the background (:func:`commands.worker.cleanup.delete_jobs`).
"""

from __future__ import annotations

import logging

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.poll import PollVerdict, judge_poll
from commands.worker.cleanup import delete_jobs
from commands.worker.collect import BatchRef, collect
from commands.worker.context import Worker
from commands.worker.pools import gather
from commands.worker.progress import Bar
from commands.worker.summary import CycleSummary
from eventlog import crashpoints
from eventlog.states import JobState
from projections import queries
from projections.active_batches import ActiveBatch

log = logging.getLogger("commands.cycle")

__all__ = ["poll"]

#: The crash point reached right after a poll verdict's events are appended (none: no point).
_POLL_CRASHPOINTS = {
    "succeeded": "after_succeeded_event",
    "failed": "after_failed_event",
    "changed": "after_state_observed",
    "unknown_state": "after_state_observed",
}

Answer = RemoteBatch | GatewayError


async def poll(w: Worker, summary: CycleSummary) -> None:
    """Poll every active batch of this worker, each on its own: a batch that succeeded is
    collected as soon as its answer is in, while the others' polls and downloads go on. Then
    start the deletes of finished jobs."""
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    mine = [
        (batch, partition)
        for batch in queries.active_batches(w.store)
        if w.mine(partition := w.partition_of(batch.display_name, parts))
    ]
    summary.polled += len(mine)
    results = _Results(w, [batch for batch, _ in mine])
    await gather(_poll(w, batch, partition, summary, results) for batch, partition in mine)
    results.close()
    if w.config.batching.delete_finished_jobs:
        delete_jobs(w)


class _Results:
    """One progress bar for the results collected this stage, opened with the first batch
    collected: its total is every polled batch's records in flight (those still waiting on the
    service leave it short)."""

    def __init__(self, w: Worker, batches: list[ActiveBatch]) -> None:
        self.w, self.batches = w, batches
        self.bar: Bar | None = None

    def open(self) -> Bar:
        if self.bar is None:
            total = sum(queries.count_in_flight(self.w.store, b.batch_id) for b in self.batches)
            ids = [b.batch_id for b in self.batches]
            more = f" and {len(ids) - 2} more" if len(ids) > 2 else ""
            self.bar = self.w.progress.start(f"results of {', '.join(ids[:2])}{more}", total)
        return self.bar

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


async def _poll(
    w: Worker, batch: ActiveBatch, partition: str, summary: CycleSummary, results: _Results
) -> None:
    """One batch: ask for it, act on the answer, collect it if it succeeded."""
    answer: Answer
    try:
        answer = await w.pools.call(w.port(batch.project).get_batch, batch.batch_id)
    except GatewayError as e:
        answer = e
    with w.acting_for(partition):
        if await _observe(w, batch, answer, summary) and isinstance(answer, RemoteBatch):
            w.check_lease()
            if await collect(w, BatchRef.of(batch), answer, results.open()) is not None:
                summary.completed += 1


async def _observe(w: Worker, batch: ActiveBatch, answer: Answer, summary: CycleSummary) -> bool:
    """Act on one poll's verdict: cancel, append its events, log. True: collect it now."""
    batch_id = batch.batch_id
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
        return False
    summary.answered += 1
    if verdict.cancel:
        try:
            await w.pools.call(w.port(batch.project).cancel_batch, batch_id)
        except GatewayError as e:
            log.warning(
                "Cannot cancel stuck batch %s (%s); it is freed anyway", batch_id, e, extra=extra
            )
    if verdict.events:
        w.append(verdict.events)
        if verdict.outcome in _POLL_CRASHPOINTS:
            crashpoints.reach(_POLL_CRASHPOINTS[verdict.outcome])
    _say(verdict, batch_id, answer, summary)
    return verdict.collect


def _say(verdict: PollVerdict, batch_id: str, answer: Answer, summary: CycleSummary) -> None:
    extra = {"batch_id": batch_id}
    if verdict.collect:
        if verdict.state != JobState.SUCCEEDED:
            log.warning(
                "Batch %s ended %s: collecting its results; records without one fail",
                batch_id,
                verdict.state,
                extra=extra,
            )
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
