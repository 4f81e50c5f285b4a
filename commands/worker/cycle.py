"""One cycle of the worker: the stages in their one order, each run on the worker's event loop
(:mod:`commands.worker.pools`), where the batches it touches move side by side.

======================  =========================  ==================================
stage                   decides (pure)             does the I/O and appends
======================  =========================  ==================================
reconcile               ``rules.reconcile``        ``worker.reconcile``
poll (stuck: cancel)    ``rules.poll``             ``worker.poll``
collect                 ``rules.results/collect``  ``worker.collect``
abandoned               ``rules.abandoned``        ``worker.abandoned``
scan                    ``rules.scan``             ``worker.scan``
admission               ``rules.admission``        ``worker.admission``
submit                  ``rules.submit``           ``worker.submit``, ``worker.create``
cleanup                 ``rules.cleanup``          ``worker.cleanup`` (in the background)
======================  =========================  ==================================

Every transition is appended the moment it happens, by the one thread that writes the log, so a
crash at any point loses nothing and the next cycle resumes from the log. A slot freed by a
batch collected in the poll stage is refilled by the submit stage of the same cycle; the jobs
of completed batches are deleted in the background meanwhile, and the clean-up stage waits for
them before the cycle ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from commands.rules.scan import ScanDecision
from commands.worker.abandoned import watch_abandoned
from commands.worker.cleanup import collect_garbage
from commands.worker.context import Worker
from commands.worker.leases import PEEK_SECONDS
from commands.worker.poll import poll
from commands.worker.reconcile import reconcile_intents
from commands.worker.scan import scan_for_cycle
from commands.worker.submit import submit
from commands.worker.summary import CycleSummary
from projections import queries
from projections.active_batches import SPEC as ACTIVE_BATCHES
from projections.submission_intents import SPEC as SUBMISSION_INTENTS

__all__ = ["Cycle", "CycleSummary", "StepRunner", "run_directly"]

#: Listing the service's files finds leftovers the log never heard of (a crash between an upload
#: and its event, a lost answer): a request per 100 files, so on a run's first cycle and then
#: every this many seconds, not every cycle.
SWEEP_EVERY_SECONDS = 15 * 60

T = TypeVar("T")


class StepRunner(Protocol):
    """Runs one named step of the cycle and returns what it returned."""

    def __call__(self, name: str, fn: Callable[[], T], /) -> T: ...


def run_directly(name: str, fn: Callable[[], T], /) -> T:
    """The plain step runner: call it."""
    return fn()


class Cycle:
    """The worker's stages; :meth:`run` is one whole cycle (the Prefect flow runs each stage as
    a task). :meth:`close` ends the worker's pools."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self._start_seq = 0
        self._early: tuple[int, ScanDecision] | None = None

    def scanned_early(self, decision: ScanDecision) -> None:
        """The first cycle's scan, made while the run started: used by that cycle's scan
        stage if nothing was appended to the log since (else the dataset is scanned again)."""
        self._early = (self.w.store.last_seq(), decision)

    def run(self, step: StepRunner | None = None) -> CycleSummary:
        """One whole cycle, its stages in the one order there is; ``step`` runs each named
        stage (default: directly; the Prefect flow runs each as a retried task)."""
        do: StepRunner = step or run_directly
        w, summary = self.w, self.begin()
        do("reconcile open submissions", lambda: self._stage(reconcile_intents(w, summary)))
        do("poll active batches", lambda: self._stage(poll(w, summary)))
        do("watch batches given up on", lambda: self._stage(watch_abandoned(w)))
        decision: ScanDecision = do("scan the dataset", lambda: scan_for_cycle(w, self._take()))
        do("submit new batches", lambda: self._stage(submit(w, decision, summary)))
        do("delete files nothing needs", lambda: self._stage(self.clean_up(summary)))
        return self.settle(summary)

    def begin(self) -> CycleSummary:
        """Mark where this cycle starts in the log (files uploaded later are not garbage yet)."""
        self._start_seq = self.w.store.last_seq()
        if self.w.leases is not None:
            self.w.leases.rebalance()
        return CycleSummary()

    def settle(self, summary: CycleSummary) -> CycleSummary:
        """Fill in what is still in flight after the cycle."""
        summary.active = queries.count_rows(self.w.store, ACTIVE_BATCHES)
        summary.open_intents = queries.count_rows(self.w.store, SUBMISSION_INTENTS)
        return summary

    async def clean_up(self, summary: CycleSummary) -> None:
        """Delete the files nothing needs any more (the service's own list is swept on a run's
        first cycle and then every ``SWEEP_EVERY_SECONDS``), and wait for the background
        deletes of finished jobs."""
        memory, now = self.w.memory, time.monotonic()
        sweep = memory.last_sweep is None or now - memory.last_sweep >= SWEEP_EVERY_SECONDS
        if sweep:
            memory.last_sweep = now
        summary.files_deleted = await collect_garbage(self.w, self._start_seq, sweep=sweep)
        await self.w.pools.settle()

    def _take(self) -> ScanDecision | None:
        early, self._early = self._early, None
        return early[1] if early is not None and early[0] == self.w.store.last_seq() else None

    def close(self) -> None:
        """End the worker's event loop and threads (what is still running is cancelled)."""
        self.w.pools.close()

    def _stage(self, flow: Coroutine[Any, Any, T]) -> T:
        """Run one stage's flows on the worker's loop; in shared mode its leases are renewed
        meanwhile (every sixth of a lease), as between cycles. A stage that fails leaves
        nothing behind: whatever it started (background deletes included) is cancelled before
        the error goes up, so no flow of it goes on into the next cycle (``run --loop`` and a
        Prefect retry start again from the log)."""
        try:
            return self.w.pools.run(self._renewing(flow))
        except Exception:
            self.w.pools.cancel_all()
            raise

    async def _renewing(self, flow: Coroutine[Any, Any, T]) -> T:
        leases = self.w.leases
        if leases is None:
            return await flow
        task = asyncio.ensure_future(flow)
        while not task.done():
            await asyncio.wait([task], timeout=min(leases.workers.lease_seconds / 6, PEEK_SECONDS))
            if not task.done():
                leases.renew_if_due()
        return task.result()
