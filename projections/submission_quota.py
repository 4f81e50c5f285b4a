"""``submission_quota``: the service's quota as the creates met it, one row (``scope`` 'creates')
per project (each API key has its own quota, so each its own back-off).

``held_since`` is when the current run of 429 RESOURCE_EXHAUSTED answers began (NULL once a
batch was submitted again); ``retry_after`` is when the next create may be tried; ``halvings``
is the admission's back-off the last deferral set, and ``successes_since`` the batches submitted
after it (each undoes one halving: :func:`commands.rules.admission.admission_halvings`). All of it
is folded from the log, so a restart keeps the back-off. A create left unanswered again and
again (``service_unavailable``) holds the creates back the same way; ``reason`` says which.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import DEFAULT_PROJECT, BatchSubmissionDeferred, BatchSubmitted, Event
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec

SCOPE = "creates"


class SubmissionQuota(msgspec.Struct, array_like=True, gc=False):
    scope: str
    held_since: str | None
    retry_after: str
    halvings: int
    successes_since: int
    message: str
    project: str = DEFAULT_PROJECT
    #: Why the creates are held: ``quota`` (429) or ``service_unavailable``.
    reason: str = "quota"


#: The deferral reasons that hold the creates back.
HOLDING_REASONS = ("quota", "service_unavailable")

SPEC = TableSpec("submission_quota", SubmissionQuota, pk=("scope", "project"))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: BatchSubmissionDeferred, t: Tables, rec: Recorded) -> None:
    if e.reason not in HOLDING_REASONS:
        return
    row = t.get(SPEC, (SCOPE, e.project))
    since = row.held_since if row is not None and row.held_since else rec.ts
    t.put(
        SPEC,
        SubmissionQuota(SCOPE, since, e.retry_after, e.halvings, 0, e.message, e.project, e.reason),
    )


@apply.register
def _(e: BatchSubmitted, t: Tables, rec: Recorded) -> None:
    row = t.get(SPEC, (SCOPE, e.project))
    if row is not None:
        t.put(
            SPEC,
            msgspec.structs.replace(row, held_since=None, successes_since=row.successes_since + 1),
        )
