"""Admission: how many batches go now, to which project, and how big (pure, no I/O).

* :func:`plan` -- the one admission check: from each project's room left (free batch slots, free
  estimated tokens, a quota hold), the batch size its back-off allows, and the pages waiting,
  the next chunk: its project and how many pages it takes (``None``: nothing more goes now).
* :func:`has_room` -- the same room, checked again inside the transaction that appends an intent,
  so workers deciding at once never go over a project's limits together.
* :func:`admission_halvings`, :func:`admitted_batch_size`, :func:`quota_backoff_seconds`,
  :func:`held_back`, :func:`hold_persists` -- the back-off after 429 RESOURCE_EXHAUSTED answers
  (and creates left unanswered again and again).
* :func:`pages_alone`, :func:`refused_last`, :func:`next_chunk` -- a page the service refused
  again goes in a batch of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from commands.rules.retry import backoff_delay
from commands.rules.tokens import admitted_pages
from eventlog.timestamps import parse_ts

__all__ = [
    "ALONE_AFTER_FAILURES",
    "MAX_HALVINGS",
    "Chunk",
    "ProjectRoom",
    "admission_halvings",
    "admitted_batch_size",
    "has_room",
    "held_back",
    "hold_persists",
    "next_chunk",
    "pages_alone",
    "pick_project",
    "plan",
    "quota_backoff_seconds",
    "refused_last",
]

#: The most the admission halves the batch size after 429s in a row (1/64 of it).
MAX_HALVINGS = 6
#: A page whose last failure was a refused create goes in a batch of its own once it has failed
#: this many times: a batch refused once is tried whole again (a refusal may be a fluke, and
#: splitting a batch of N makes N jobs); refused again, its pages are isolated.
ALONE_AFTER_FAILURES = 2


# --- the back-off after a quota answer ----------------------------------------------------------


def admission_halvings(halvings: int, successes_since: int) -> int:
    """The back-off in force: the last deferral's ``halvings``, less one per batch submitted
    since (the admission grows back after successes), never below 0."""
    return max(0, halvings - successes_since)


def admitted_batch_size(batch_size: int, halvings: int) -> int:
    """The batch size the admission allows: ``batch_size`` halved ``halvings`` times, at least 1."""
    return max(1, batch_size >> max(0, halvings))


def quota_backoff_seconds(halvings: int, base_seconds: float, max_seconds: float) -> float:
    """How long the creates wait after the ``halvings``-th 429 in a row: ``base_seconds``
    doubled for each one after the first, at most ``max_seconds``."""
    return min(max_seconds, backoff_delay(base_seconds, max(1, halvings)))


def held_back(retry_after: str, now: datetime) -> bool:
    """Whether the creates still wait (``retry_after`` a stored timestamp; '' is no wait)."""
    return bool(retry_after) and now < parse_ts(retry_after)


def hold_persists(halvings: int) -> bool:
    """Whether a hold has lasted as long as the back-off goes (``MAX_HALVINGS`` deferrals in a
    row, none submitted since): ``run --until-idle`` then ends instead of waiting for ever."""
    return halvings >= MAX_HALVINGS


# --- a project's room ---------------------------------------------------------------------------


def has_room(
    batches: int, tokens: int, max_batches: int, max_tokens: int, estimated_tokens: int
) -> bool:
    """Whether a project with ``batches`` active batches and open intents and ``tokens``
    estimated in flight takes one more batch of ``estimated_tokens`` under its limits
    (``max_tokens`` 0: no token limit; with nothing in flight a batch goes even when bigger than
    the limit, as :func:`~commands.rules.tokens.admitted_pages` lets a lone page through).
    Decided again inside the transaction that appends the intent, so workers deciding at once
    never go over the limit together (outcome ``full``)."""
    if batches >= max_batches:
        return False
    return not max_tokens or tokens <= 0 or tokens + estimated_tokens <= max_tokens


class ProjectRoom(msgspec.Struct, frozen=True):
    """One project's room for another batch this moment: free batch slots, free estimated
    tokens (None: no token limit) and whether its quota back-off holds its creates.
    ``max_tokens`` and ``tokens`` (its limit and what is estimated in flight) and ``halvings``
    (its back-off) are what :func:`plan` sizes the chunk by."""

    name: str
    batches_free: int
    tokens_free: int | None = None
    held: bool = False
    max_tokens: int = 0
    tokens: int = 0
    halvings: int = 0


def pick_project(rooms: Sequence[ProjectRoom]) -> str | None:
    """The project the next batch goes to: of those not held with a batch slot free and token
    room left, the one with the most free slots, then the most free tokens (no limit counts as
    the most), then the first configured. None: every project is full or held."""
    best: ProjectRoom | None = None

    def rank(r: ProjectRoom) -> tuple[int, float]:
        return (r.batches_free, math.inf if r.tokens_free is None else r.tokens_free)

    for room in rooms:
        if (
            room.held
            or room.batches_free <= 0
            or (room.tokens_free is not None and room.tokens_free <= 0)
        ):
            continue
        if best is None or rank(room) > rank(best):
            best = room
    return None if best is None else best.name


# --- pages refused again go alone ---------------------------------------------------------------


def pages_alone(refusals: Mapping[str, int]) -> dict[str, int]:
    """Of the pages whose last failure was a refused create (their failure counts), those the
    next batches hold one by one: failed at least ``ALONE_AFTER_FAILURES`` times."""
    return {k: n for k, n in refusals.items() if n >= ALONE_AFTER_FAILURES}


def refused_last(keys: Sequence[str], refusals: Mapping[str, int]) -> list[str]:
    """``keys`` in the order the submit loop takes them: those whose last failure was not a
    refused create first, in their order; then the refused, fewest failures first (a page
    refused once because of a neighbour goes before the page that was refused again)."""
    clean = [k for k in keys if k not in refusals]
    refused = sorted((k for k in keys if k in refusals), key=lambda k: (refusals[k], k))
    return clean + refused


def next_chunk(keys: Sequence[str], refusals: Mapping[str, int], size: int) -> int:
    """How many of ``keys`` (ordered by :func:`refused_last`) the next batch takes, at most
    ``size``: a page whose last failure was a refused create goes alone (so one bad page is
    isolated and the rest of its old batch goes through); else the pages before the first such."""
    if not keys or size <= 0:
        return 0
    if keys[0] in refusals:
        return 1
    taken = 0
    for key in keys[:size]:
        if key in refusals:
            break
        taken += 1
    return taken


# --- the plan of the next chunk -----------------------------------------------------------------


class Chunk(msgspec.Struct, frozen=True):
    """The next batch: ``project`` takes the first ``pages`` pages waiting, of the ``size`` its
    batch size, partition and refusals allow (fewer: its token room cut it; 0: its tokens hold
    them back, the project is full for now); ``slots`` is its free batch slots before it."""

    project: str
    pages: int
    slots: int
    size: int


def plan(
    rooms: Sequence[ProjectRoom],
    keys: Sequence[str],
    costs: Sequence[int],
    *,
    batch_size: int,
    refusals: Mapping[str, int],
    partition_end: int | None = None,
) -> Chunk | None:
    """The next chunk of the pages waiting (``keys``, in submission order, and ``costs``: the
    estimated tokens of at least the first ``batch_size`` of them): the project with the most
    room (:func:`pick_project`), the batch size its back-off admits, cut where a page refused
    again must go alone (``refusals``, :func:`next_chunk`), at ``partition_end`` (the first page
    of another partition), and by its token room (:func:`admitted_pages`). None: every project
    is full or held."""
    project = pick_project(rooms)
    if project is None:
        return None
    room = next(r for r in rooms if r.name == project)
    size = admitted_batch_size(batch_size, room.halvings)
    if partition_end is not None:
        size = min(size, partition_end)
    if refusals:
        size = next_chunk(keys[:size], refusals, size)
    size = min(size, len(keys))
    fits = admitted_pages(costs[:size], room.tokens, room.max_tokens)
    return Chunk(project, fits, room.batches_free, size)
