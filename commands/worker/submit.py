"""Submitting the cycle's new batches: the candidates cut into chunks by the admission
(:mod:`commands.worker.admission`), each chunk's images made ready (:mod:`commands.worker.images`)
and its request files written (:mod:`commands.worker.request_files`), each request file made a
batch by its own flow (:func:`commands.worker.create.create_batch`).

Batches overlap: the next request file's upload, ACTIVE wait and create go on while the
previous one is being created (at most :data:`IN_FLIGHT` at once), and the next chunk is
prepared meanwhile. Each project's first create of a cycle goes alone: a quota storm or a
refusal stops that project before another of its batches is created, and before another chunk
of it uploads images. Every batch's events are appended by its flow, in its own order, on the
worker's one thread.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from commands.pages import Page
from commands.rules.admission import Chunk
from commands.rules.scan import ScanDecision
from commands.rules.submit import CreateOutcome, submit_goes_on
from commands.rules.transport import route_image
from commands.schema import response_json_schema
from commands.worker.admission import Admission, Reservation, admit
from commands.worker.context import Worker
from commands.worker.create import Creates, create_batch
from commands.worker.dataset import MAX_IMAGE_BYTES
from commands.worker.estimator import PageTokens, TokenEstimator
from commands.worker.images import ready_images, reject
from commands.worker.pools import gather, retrieved
from commands.worker.request_files import (
    LineMaker,
    RequestFile,
    RequestFiles,
    write_request_files,
)
from commands.worker.summary import CycleSummary
from eventlog import interrupts

log = logging.getLogger("commands.cycle")

__all__ = ["IN_FLIGHT", "submit"]

#: Batches being submitted at once (request file uploaded, waiting to be ACTIVE, created).
IN_FLIGHT = 8


async def submit(w: Worker, decision: ScanDecision, summary: CycleSummary) -> None:
    """Submit the candidates in batches, each to the project with the most room left: every
    project has its own batch slots, token limit and quota back-off, so a project held back or
    full leaves the others going."""
    summary.scan = decision.counts
    queue = list(decision.candidates)
    summary.candidates_left = len(queue) + decision.others
    if not queue:
        return
    json_schema = response_json_schema(w.schema)
    estimator = TokenEstimator(w.store, w.config, json_schema)
    admitted = await admit(w, queue, summary, estimator)
    if admitted is None:
        return
    admission, queue, refusals = admitted
    leases = w.leases
    if leases is not None:  # a batch holds one partition's pages: its holder polls it
        queue.sort(key=lambda p: leases.partition_of(p.state, p.school))
    submitting = _Submitting(w, summary, admission, json_schema, decision.previous)
    try:
        queue = await _plan(w, submitting, queue, refusals)
    except Exception:
        await submitting.settle(quietly=True)  # what was started records its outcome first
        raise
    await submitting.settle()
    summary.candidates_left = len(queue) + decision.others


async def _plan(
    w: Worker, submitting: _Submitting, queue: list[Page], refusals: dict[str, int]
) -> list[Page]:
    """Take chunks off ``queue`` while the admission lets them go, and start their batches;
    returns the pages left."""
    leases, admission = w.leases, submitting.admission
    while queue:
        partition = ""
        if leases is not None:
            partition = leases.partition_of(queue[0].state, queue[0].school)
            if not w.mine(partition):
                queue = [p for p in queue if leases.partition_of(p.state, p.school) != partition]
                continue
        end = _partition_end(w, queue, partition)
        # The next batch's files are read for their estimates on the file pool, not here: the
        # other batches' flows go on meanwhile (the planning itself then reads none).
        head = queue[: w.config.batching.batch_size]
        await w.pools.files(admission.estimator.pages, head)
        chunk = admission.next(queue, refusals, end)
        if chunk is None:
            break
        if chunk.pages == 0:
            continue
        take = queue[: chunk.pages]
        # A chunk with images to upload waits for its project's first create of the cycle: a
        # quota storm or a refusal then costs no upload. One sent inline goes ahead (its
        # request file is written and uploaded; its create waits for the first all the same).
        if _uploads(w, take, admission):
            await submitting.wait_for_first(chunk.project)
        if submitting.broken:
            break
        if chunk.project in submitting.creates.halted:  # its first create did not go through
            admission.stopped.add(chunk.project)
            continue
        queue = queue[chunk.pages :]
        with w.acting_for(partition):
            await submitting.chunk(take, chunk, partition)
    return queue


def _uploads(w: Worker, take: list[Page], admission: Admission) -> bool:
    """Whether some of ``take``'s images may go through the File API (by the transport mode
    and, in ``auto``, their sizes as their estimates read them)."""
    uploads = w.config.uploads
    if uploads.image_transport != "auto":
        return uploads.image_transport == "file_api"
    probes = admission.estimator.probes
    return any(
        (probe := probes.get(page.key)) is None
        or probe.stamp is None
        or route_image(
            "auto",
            probe.stamp.size,
            inline_max=uploads.inline_image_max_bytes,
            file_max=MAX_IMAGE_BYTES,
            request_max=uploads.max_request_file_bytes,
        ).transport
        == "file_api"
        for page in take
    )


def _partition_end(w: Worker, queue: list[Page], partition: str) -> int | None:
    """Where the first partition's pages end in ``queue`` (shared mode; None alone)."""
    leases = w.leases
    if leases is None:
        return None
    size = w.config.batching.batch_size
    return next(
        (
            i
            for i, p in enumerate(queue[:size])
            if leases.partition_of(p.state, p.school) != partition
        ),
        None,
    )


class _Submitting:
    """The cycle's submissions in flight: at most :data:`IN_FLIGHT`, each project's first
    alone, their outcomes counted in the summary."""

    def __init__(
        self,
        w: Worker,
        summary: CycleSummary,
        admission: Admission,
        json_schema: dict[str, Any],
        previous: dict[str, Page],
    ) -> None:
        self.w, self.summary, self.admission = w, summary, admission
        self.json_schema, self.previous = json_schema, previous
        self.creates = Creates()
        self.in_flight = asyncio.Semaphore(IN_FLIGHT)
        self.flows: list[asyncio.Task[None]] = []
        self.first: dict[str, asyncio.Task[None]] = {}
        self.went: set[str] = set()
        #: A flow raised (the run stops once every flow has ended): start no more.
        self.broken = False

    async def wait_for_first(self, project: str) -> None:
        """Before another chunk of ``project`` with images to upload: wait for its first
        create of the cycle to end."""
        first = self.first.get(project)
        if first is not None and project not in self.went:
            await asyncio.wait([first])

    async def chunk(self, take: list[Page], chunk: Chunk, partition: str) -> None:
        """Make ``take``'s images ready, write its request files and start a flow for each,
        while ``chunk.project`` has a batch slot free."""
        w, project = self.w, chunk.project
        probes = self.admission.estimator.probes
        images = await ready_images(w, take, project, self.summary, probes)
        if not images.ready:
            return
        ready = sorted(images.ready, key=lambda r: r[0].key)
        estimator = self.admission.estimator
        lines = LineMaker(
            w.config, self.json_schema, self.previous, images.stamps, estimator.output_limit
        )
        too_big: list[tuple[Page, str]] = []  # said on this thread once each file is written
        files = RequestFiles(
            write_request_files(
                ready,
                lines,
                max_bytes=w.config.uploads.max_request_file_bytes,
                directory=w.config.paths.database.parent,
                reject=lambda page, reason: too_big.append((page, reason)),
            )
        )
        consumed = 0
        try:
            while True:
                # Each file is written on the file pool (images read, base64, lines encoded),
                # so the other batches' flows and the lease renewals go on meanwhile.
                request_file = await w.pools.files(files.next)
                if request_file is None:
                    consumed = len(ready)
                    break
                for page, reason in too_big:
                    reject(w, page, reason)
                too_big.clear()
                halted = self.broken or project in self.creates.halted
                if halted or self.admission.room(project) <= 0:
                    break  # the file is deleted below
                consumed = request_file.consumed
                await self._start(files, request_file, project, partition)
        finally:
            with interrupts.deferred():  # waits for a file being written, deletes it
                files.close()
            for page, reason in list(too_big):
                reject(w, page, reason)
        # Pages of a chunk no batch could take this cycle (their uploads are garbage now),
        # and inline pages whose file changed before their line was written.
        self.summary.deferred += len(ready) - consumed + lines.skipped

    async def _start(
        self, files: RequestFiles, request_file: RequestFile, project: str, partition: str
    ) -> None:
        """Start ``request_file``'s flow once fewer than :data:`IN_FLIGHT` are; the flow owns
        the file from then on (it is deleted when the flow ends, even cancelled unstarted)."""
        estimates = [self.admission.estimator.page(page) for page, _ in request_file.items]
        reservation = self.admission.reserve(project, sum(e.total for e in estimates))
        try:
            await self.in_flight.acquire()
        except BaseException:
            reservation.release()
            raise
        with interrupts.deferred():
            first = self.creates.enter(project)
            flow = retrieved(
                asyncio.ensure_future(
                    self._flow(request_file, project, partition, estimates, reservation, first)
                )
            )
            flow.add_done_callback(lambda _: request_file.delete())
            files.hand_off()
            self.flows.append(flow)
            self.first.setdefault(project, flow)

    async def _flow(
        self,
        request_file: RequestFile,
        project: str,
        partition: str,
        estimates: list[PageTokens],
        reservation: Reservation,
        first: bool,
    ) -> None:
        w, summary = self.w, self.summary
        outcome: CreateOutcome = "deferred"
        try:
            with w.acting_for(partition):
                halvings = self.admission.halvings[project]
                outcome = await create_batch(
                    w,
                    request_file,
                    project,
                    estimates,
                    halvings,
                    self.creates,
                    on_intent=reservation.release,
                    first=first,
                )
        except BaseException:
            self.broken = True
            self.admission.stopped.add(project)
            raise
        finally:
            if first:
                self.creates.first_ended(project)
            request_file.delete()  # now, not when the task's callbacks run
            reservation.release()
            self.in_flight.release()
        self.went.add(project)
        if outcome == "submitted":
            summary.submitted += 1
        else:
            summary.deferred += len(request_file.items)
        if not submit_goes_on(outcome):
            self.admission.stopped.add(project)

    async def settle(self, *, quietly: bool = False) -> None:
        """Wait for every flow started; the first error is raised once all have ended (not
        ``quietly``: another error is already on its way)."""
        if not quietly:
            await gather(self.flows)
        elif self.flows:
            await asyncio.wait(self.flows)
            for flow in self.flows:  # seen, so not reported again when they are collected
                if not flow.cancelled() and flow.exception() is not None:
                    log.error("A submission also failed: %s", flow.exception())
