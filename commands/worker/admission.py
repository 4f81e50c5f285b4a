"""The cycle's admission, the I/O around :mod:`commands.rules.admission`: which projects may take
batches now (their quota holds and back-off, read from the log), the order the pages go in, and
the next chunk, planned from each project's room left.

The room counts the batches the log knows (active batches and open intents) *and* the ones this
cycle's submissions have reserved but not yet recorded (:meth:`Admission.reserve`), so batches
prepared side by side never plan past a project's limits; the intent's own transaction checks
the room once more (:func:`commands.rules.admission.has_room`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from commands.config import ProjectConfig
from commands.pages import Page
from commands.rules.admission import (
    Chunk,
    ProjectRoom,
    admission_halvings,
    admitted_batch_size,
    held_back,
    hold_persists,
    pages_alone,
    plan,
    refused_last,
)
from commands.rules.submit import CREATE_REFUSED
from commands.worker.context import Worker
from commands.worker.estimator import TokenEstimator
from commands.worker.reconcile import look_up_deferred
from commands.worker.summary import CycleSummary
from projections import queries
from projections.queries import ProjectLoad
from projections.submission_quota import SubmissionQuota

log = logging.getLogger("commands.cycle")

__all__ = ["Admission", "Reservation", "admit"]


class Reservation:
    """One batch's room, held from the moment it is planned until its intent is appended (then
    the log counts it) or its submission ends without one."""

    def __init__(self, held: list[Reservation], tokens: int) -> None:
        self.held, self.tokens = held, tokens

    def release(self) -> None:
        """Let the room go (again: nothing)."""
        if self in self.held:
            self.held.remove(self)


class Admission:
    """One cycle's admission: each project's limits, hold and back-off, the projects stopped
    this cycle, and the batches reserved by submissions not yet recorded."""

    def __init__(
        self,
        w: Worker,
        projects: Sequence[ProjectConfig],
        quotas: dict[str, SubmissionQuota],
        held: set[str],
        estimator: TokenEstimator,
    ) -> None:
        self.w = w
        self.projects = {p.name: p for p in projects}
        self.halvings = {
            name: admission_halvings(q.halvings, q.successes_since) if q else 0
            for name in self.projects
            for q in [quotas.get(name)]
        }
        self.stopped = set(held)
        self.estimator = estimator
        self._reserved: dict[str, list[Reservation]] = {}

    def reserve(self, project: str, tokens: int) -> Reservation:
        """A batch of ``tokens`` goes to ``project``: it counts against the room until its
        reservation is released (its intent is in the log then, or it never will be)."""
        reservation = Reservation(self._reserved.setdefault(project, []), tokens)
        reservation.held.append(reservation)
        return reservation

    def rooms(self) -> list[ProjectRoom]:
        """Each project's room now: its limits less what the log holds and this cycle reserved."""
        loads = queries.project_loads(self.w.store)
        rooms = []
        for name, p in self.projects.items():
            load = loads.get(name, ProjectLoad())
            reserved = self._reserved.get(name, [])
            batches = load.batches + len(reserved)
            tokens = load.tokens + sum(r.tokens for r in reserved)
            limit = p.max_enqueued_tokens or 0
            rooms.append(
                ProjectRoom(
                    name,
                    (p.max_active_batches or 0) - batches,
                    limit - tokens if limit else None,
                    held=name in self.stopped,
                    max_tokens=limit,
                    tokens=tokens,
                    halvings=self.halvings[name],
                )
            )
        return rooms

    def room(self, project: str) -> int:
        """``project``'s free batch slots now."""
        return next(r.batches_free for r in self.rooms() if r.name == project)

    def next(
        self,
        queue: Sequence[Page],
        refusals: dict[str, int],
        partition_end: int | None,
    ) -> Chunk | None:
        """The next chunk of ``queue`` (:func:`commands.rules.admission.plan`); a project whose
        token room holds the chunk back is stopped for this cycle (logged)."""
        batch_size = self.w.config.batching.batch_size
        costs = [self.estimator.page(p).total for p in queue[:batch_size]]
        rooms = self.rooms()
        chunk = plan(
            rooms,
            [p.key for p in queue],
            costs,
            batch_size=batch_size,
            refusals=refusals,
            partition_end=partition_end,
        )
        if chunk is None:
            return None
        room = next(r for r in rooms if r.name == chunk.project)
        if room.max_tokens:
            _say_tokens(chunk, room, len(queue))
        if chunk.pages == 0:
            self.stopped.add(chunk.project)
        return chunk


def _say_tokens(chunk: Chunk, room: ProjectRoom, waiting: int) -> None:
    if chunk.pages == 0:
        log.info(
            "Token admission: %d tokens estimated in flight, max_enqueued_tokens %d; "
            "%d pages wait for room",
            room.tokens,
            room.max_tokens,
            waiting,
        )
    elif chunk.pages < chunk.size:
        log.info(
            "Token admission: batch cut to %d of %d pages (%d tokens estimated in flight, "
            "max_enqueued_tokens %d)",
            chunk.pages,
            chunk.size,
            room.tokens,
            room.max_tokens,
        )


async def admit(
    w: Worker, queue: list[Page], summary: CycleSummary, estimator: TokenEstimator
) -> tuple[Admission, list[Page], dict[str, int]] | None:
    """The cycle's admission, the pages in the order they go (a deferred submission adopted
    after all takes its pages out; a page the service refused again goes last, alone) and the
    refusals that cut chunks. None: nothing is submitted this cycle (every project is held
    back, or a deferred submission could not be looked up)."""
    projects = w.config.projects()
    quotas = queries.submission_quotas(w.store)
    now = w.store.clock()
    held = {
        p.name
        for p in projects
        if (q := quotas.get(p.name)) is not None and held_back(q.retry_after, now)
    }
    for name in sorted(held):
        quota = quotas[name]
        log.log(
            logging.WARNING if len(held) == len(projects) else logging.INFO,
            "Held back by the service's quota since %s, next try after %s: %d pages wait",
            quota.held_since,
            quota.retry_after,
            len(queue),
            extra={"project": name},
        )
    if len(held) == len(projects):
        _all_held(summary, quotas, held, len(queue))
        return None
    adopted = await look_up_deferred(w)
    if adopted is None:
        return None
    queue = [p for p in queue if p.key not in adopted]
    refusals = pages_alone(
        queries.create_refusals_of(w.store, [p.key for p in queue], CREATE_REFUSED)
    )
    if refusals:
        order = {k: i for i, k in enumerate(refused_last([p.key for p in queue], refusals))}
        queue.sort(key=lambda p: order[p.key])
    admission = Admission(w, projects, quotas, held, estimator)
    batch_size = w.config.batching.batch_size
    for name, halvings in admission.halvings.items():
        size = admitted_batch_size(batch_size, halvings)
        if size < batch_size and name not in held:
            log.info(
                "Admission backed off after the service's quota: batches of %d (of %d)",
                size,
                batch_size,
                extra={"project": name},
            )
    return admission, queue, refusals


def _all_held(
    summary: CycleSummary, quotas: dict[str, SubmissionQuota], held: set[str], waiting: int
) -> None:
    """Every project is held back: say why, and whether the hold has lasted as long as the
    back-off goes."""
    summary.held_back = waiting
    first = quotas[min(held)]
    why = (
        "the service leaving its creates unanswered"
        if first.reason == "service_unavailable"
        else "the service's quota"
    )
    summary.hold = f"held back by {why} ({first.message}); next try {first.retry_after}"
    summary.hold_persists = all(
        hold_persists(admission_halvings(quotas[n].halvings, quotas[n].successes_since))
        for n in held
    )
