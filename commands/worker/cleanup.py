"""Deleting uploaded files nothing will use again, so the project's 20 GB File API quota does not
fill with leftovers (files also expire by themselves after 48 h).

A file is garbage when the submission holding it is over (its batch completed or ended on the
service, or its intent was abandoned; a batch cleared while the service may still be running it
keeps its files until it ends; the images of a deferred submission are kept while young enough to
be reused), or when no submission ever took it (a page skipped after its upload,
a crash) and it was uploaded before this cycle began. Files on the service that the log never
heard of (a crash between an upload and its event) are found by listing the service: page images
(display name ``State:School:Year:Page``), request files (``gb-...-requests``) and result files
(``files/batch-<id>``) of batches no longer watched. Each deletion is a ``FileDeleted`` event; a
file already gone counts as deleted. Every file belongs to one project (the key that uploaded
it, or whose batch wrote it): it is deleted, and the service's files listed, with that key.
"""

from __future__ import annotations

import logging

from commands.errors import GatewayError
from commands.rules.cleanup import (
    file_deleted,
    image_reusable_since,
    is_ours,
    judge_job_delete,
    request_file_run,
    result_file_batch,
)
from commands.rules.leases import is_live
from commands.worker.context import Worker
from commands.worker.pools import gather
from eventlog import crashpoints
from eventlog.events import DEFAULT_PROJECT, Event
from eventlog.timestamps import format_ts
from projections import queries
from projections.finished_jobs import FinishedJob

log = logging.getLogger("commands.cleanup")

__all__ = ["collect_garbage", "delete_jobs"]


def delete_jobs(w: Worker) -> None:
    """Start deleting, in the background, the jobs of completed batches from the service (their
    results are durable), each followed by its ``BatchJobDeleted``. A 404 counts as deleted; a
    transient failure is retried next cycle; any other refusal is recorded and the job left on
    the service."""
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    for job in queries.finished_jobs(w.store):
        partition = w.partition_of(job.batch_id, parts)
        if w.mine(partition):
            w.pools.background(_delete_job(w, job, partition))


async def _delete_job(w: Worker, job: FinishedJob, partition: str) -> None:
    batch_id = job.batch_id
    extra = {"batch_id": batch_id}
    answer: bool | GatewayError
    with w.acting_for(partition):
        try:
            answer = await w.pools.call(w.port(job.project).delete_batch, batch_id)
        except GatewayError as e:
            answer = e
        verdict = judge_job_delete(batch_id, answer)
        if verdict.outcome == "retry":
            log.warning(
                "Cannot delete finished job %s yet (%s); the next cycle tries again",
                batch_id,
                answer,
                extra=extra,
            )
            return
        if verdict.outcome == "refused":
            log.warning(
                "The service refused to delete finished job %s (%s); it is left there",
                batch_id,
                answer,
                extra=extra,
            )
        crashpoints.reach("after_job_delete")
        w.append(verdict.events)
        log.debug("Finished job %s: %s", batch_id, verdict.outcome, extra=extra)


async def collect_garbage(w: Worker, cycle_start_seq: int, *, sweep: bool = True) -> int:
    """Delete the files no submission needs, side by side; returns how many were deleted."""
    names = queries.garbage_files(w.store, cycle_start_seq, image_reusable_since(w.store.clock()))
    if w.leases is not None:
        names = _of_my_partitions(w, names)
    owners = queries.file_projects(w.store, names)
    files = [(name, owners.get(name, DEFAULT_PROJECT)) for name in names]
    if sweep:
        files += await _unknown_files(w)
    if not files:
        return 0
    outcomes = await gather(_delete(w, *f) for f in files)
    events: list[Event] = [
        file_deleted(name, existed=outcome)
        for (name, _), outcome in zip(files, outcomes, strict=True)
        if outcome is not None
    ]
    crashpoints.reach("after_file_delete")
    w.append(events)
    if events:
        log.info("Deleted %d uploaded file(s) no batch needs any more", len(events))
    return len(events)


def _of_my_partitions(w: Worker, names: list[str]) -> list[str]:
    """Shared mode: the files of partitions this worker holds (an image by its record key, a
    request or result file by its submission's partition). Another worker's unheld upload is
    its own to clean: it may be about to go into a batch."""
    owners = queries.file_owners(w.store, names)
    parts = queries.batch_partitions(w.store)
    assert w.leases is not None
    mine: dict[str, bool] = {}
    out = []
    for name in names:
        key, holder = owners.get(name, ("", None))
        if holder:
            partition = w.partition_of(holder, parts)
        elif key:
            partition = w.leases.partition_of_key(key)
        else:
            partition = w.leases.legacy_partition()
        if partition not in mine:
            mine[partition] = w.mine(partition)
        if mine[partition]:
            out.append(name)
    return out


def _sweepable(w: Worker, display_name: str, batch_id: str, parts: dict[str, str]) -> bool:
    """Shared mode: whether this worker may delete a file of ours the log does not know: an
    image of its partitions, the result file of one of its partitions' batches, or a request
    file of its own run, or of a run no live worker runs (swept by the legacy holder)."""
    leases = w.leases
    assert leases is not None
    if batch_id:
        return w.mine(w.partition_of(batch_id, parts))
    run_id = request_file_run(display_name)
    if run_id is None:
        return w.mine(leases.partition_of_key(display_name))
    if run_id == w.run_id:
        return True
    now, ended = format_ts(w.store.clock()), queries.ended_worker_runs(w.store)
    live = {r.run_id for r in queries.workers(w.store) if is_live(r, now, ended)}
    return run_id not in live and w.mine(leases.legacy_partition())


async def _delete(w: Worker, name: str, project: str) -> bool | None:
    """Whether ``name`` existed (True) or was already gone (False); None: it is still there."""
    try:
        return await w.pools.call(w.port(project).delete_file, name)
    except GatewayError as e:
        log.warning("Cannot delete %s yet (%s); the next cycle tries again", name, e)
        return None


async def _unknown_files(w: Worker) -> list[tuple[str, str]]:
    """Files of ours on the service that the log does not know, or result files of batches that
    are done, with the project whose listing showed them."""
    known = queries.uploaded_file_names(w.store)
    watched = queries.watched_batch_ids(w.store)
    parts = queries.batch_partitions(w.store) if w.leases is not None else {}
    out = []
    for project in w.ports or {DEFAULT_PROJECT: w.gateway}:
        try:
            remote = await w.pools.call(w.port(project).list_files)
        except GatewayError as e:
            log.warning(
                "Cannot list the service's files (%s); leftovers wait for the next cycle", e
            )
            continue
        for f in remote:
            if f.name in known:
                continue
            batch_id = result_file_batch(f.name)
            if batch_id is not None:
                if batch_id not in watched and (
                    w.leases is None or _sweepable(w, "", batch_id, parts)
                ):
                    out.append((f.name, project))
            elif is_ours(f.display_name) and (
                w.leases is None or _sweepable(w, f.display_name, "", parts)
            ):
                out.append((f.name, project))
    return out
