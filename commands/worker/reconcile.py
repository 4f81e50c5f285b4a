"""Reconciling submissions left open, the I/O around :mod:`commands.rules.reconcile`.

* :func:`reconcile_intents` -- every open intent (a crash between its append and its create's
  answer, or a create left unanswered) is looked up by its display name, all side by side; the
  job found is adopted, none frees the records. If the service cannot answer, the records stay
  reserved: never a blind resubmit.
* :func:`look_up_deferred` -- each deferred submission's display name is looked up once before
  anything new is submitted, so a 429 that made a job after all is adopted, never billed twice.
"""

from __future__ import annotations

import logging

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.admission import admission_halvings
from commands.rules.reconcile import (
    Reconciled,
    judge_deferred_lookup,
    judge_unanswered_lookup,
    reconcile,
)
from commands.rules.submit import CreateContext, OpenIntent
from commands.worker.context import Worker
from commands.worker.pools import gather
from commands.worker.summary import CycleSummary
from eventlog import crashpoints
from eventlog.events import BatchSubmissionDeferred
from projections import queries
from projections.deferred_submissions import DeferredSubmission
from projections.submission_intents import SubmissionIntent

log = logging.getLogger("commands.cycle")

__all__ = ["look_up_deferred", "reconcile_intents"]


async def reconcile_intents(w: Worker, summary: CycleSummary) -> None:
    """Resolve every open intent of this worker's partitions by looking it up, side by side."""
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    flows = []
    for intent in queries.open_intents(w.store):
        partition = w.partition_of(intent.display_name, parts)
        if w.mine(partition):
            flows.append(_reconcile(w, intent, partition, summary))
    await gather(flows)


async def _reconcile(
    w: Worker, intent: SubmissionIntent, partition: str, summary: CycleSummary
) -> None:
    """Resolve one open intent by looking its display name up on the service."""
    name = intent.display_name
    extra = {"display_name": name}
    with w.acting_for(partition):
        keys = queries.reserved_keys(w.store, name)
        try:
            port = w.port(intent.project)
            found = await w.pools.call(port.find_batches, name, created_after=intent.intended_at)
        except GatewayError as e:
            summary.unanswered += 1
            summary.last_error = str(e)
            log.warning(
                "Open submission %s: cannot look it up yet (%s); its %d records stay reserved",
                name,
                e,
                len(keys),
                extra=extra,
            )
            return
        summary.answered += 1
        open_intent = OpenIntent(
            name,
            intent.model,
            intent.input_file,
            keys,
            transport=intent.transport,
            estimated_tokens=intent.estimated_tokens,
            project=intent.project,
        )
        verdict = (
            _unanswered_lookup(w, open_intent, found)
            if name in w.memory.unanswered
            else reconcile(open_intent, found)
        )
        w.append(verdict.events)
        _say(verdict, name, len(keys))


def _say(verdict: Reconciled, name: str, keys: int) -> None:
    extra = {"display_name": name}
    if verdict.outcome == "deferred":
        crashpoints.reach("after_deferred_event")
        deferred = verdict.events[0]
        assert isinstance(deferred, BatchSubmissionDeferred)
        log.warning(
            "Open submission %s was never created: the service keeps leaving creates "
            "unanswered; its %d records are free, creates wait until %s",
            name,
            keys,
            deferred.retry_after,
            extra=extra,
        )
    elif verdict.outcome == "not_created":
        log.info(
            "Open submission %s was never created; its %d records are free again",
            name,
            keys,
            extra=extra,
        )
    else:
        if verdict.matches > 1:
            log.error(
                "Open submission %s matches %d jobs on the service; adopting %s",
                name,
                verdict.matches,
                verdict.batch_id,
                extra=extra,
            )
        log.info(
            "Batch Submitted (adopted by its display name): %s as %s",
            name,
            verdict.batch_id,
            extra={"batch_id": verdict.batch_id, **extra},
        )


def _unanswered_lookup(w: Worker, intent: OpenIntent, found: list[RemoteBatch]) -> Reconciled:
    """The verdict on an intent whose create went unanswered this run, found or not."""
    project, absent = intent.project, w.memory.absent_in_a_row
    in_a_row = absent.get(project, 0) + (0 if found else 1)
    absent[project] = 0 if found else in_a_row
    q = queries.submission_quotas(w.store).get(project)
    batching = w.config.batching
    context = CreateContext(
        intent,
        w.store.clock(),
        halvings=admission_halvings(q.halvings, q.successes_since) if q else 0,
        backoff_seconds=batching.quota_backoff_seconds,
        backoff_max_seconds=batching.quota_backoff_max_seconds,
    )
    return judge_unanswered_lookup(intent, found, in_a_row, context)


async def look_up_deferred(w: Worker) -> set[str] | None:
    """Look each deferred submission's display name up once, side by side. Returns the keys
    adopted, or None when a lookup failed: then nothing is submitted this cycle."""
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    mine = [(d, w.partition_of(d.display_name, parts)) for d in queries.deferred_to_check(w.store)]
    answers = await gather(_look_up(w, d, p) for d, p in mine if w.mine(p))
    if any(a is None for a in answers):
        return None
    return {key for keys in answers if keys is not None for key in keys}


async def _look_up(w: Worker, d: DeferredSubmission, partition: str) -> list[str] | None:
    """One deferred submission looked up: the keys adopted ([] if none), None if it failed."""
    keys = d.record_keys.split("\n") if d.record_keys else []
    extra = {"display_name": d.display_name}
    try:
        found = await w.pools.call(w.port(d.project).find_batches, d.display_name)
    except GatewayError as e:
        log.warning(
            "Deferred submission %s: cannot look it up yet (%s); nothing is submitted this cycle",
            d.display_name,
            e,
            extra=extra,
        )
        return None
    verdict = judge_deferred_lookup(
        OpenIntent(d.display_name, d.model, d.input_file, keys, project=d.project), found
    )
    with w.acting_for(partition):
        w.append(verdict.events)
    crashpoints.reach("after_deferred_lookup")
    if verdict.outcome != "adopted":
        return []
    log.warning(
        "Deferred submission %s was created after all: adopted as %s",
        d.display_name,
        verdict.batch_id,
        extra={"batch_id": verdict.batch_id, **extra},
    )
    return keys
