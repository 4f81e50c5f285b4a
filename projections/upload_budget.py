"""``upload_budget``: each page's failed upload attempts since its last success, and whether it
was given up on.

A row grows with each ``UploadAbandoned`` (a cycle whose attempts all failed), becomes given up
with ``UploadGivenUp`` (the scanner then skips the page while its file's size and mtime stay
those recorded), and goes with a successful upload (``FileUploaded``), with the page going out
in a batch (``BatchSubmitted``: an inline page or a reused image has no upload of its own to
succeed), with ``UploadGivenUpCleared`` (the file changed) and with ``FailuresReset`` naming
the page. The
state, school and year columns make ``reset-failures`` filters plain SQL.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    BatchSubmitted,
    Event,
    FailuresReset,
    FileUploaded,
    UploadAbandoned,
    UploadGivenUp,
    UploadGivenUpCleared,
)
from eventlog.keys import parse_key
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class UploadBudget(msgspec.Struct, array_like=True, gc=False):
    record_key: str
    state: str
    school: str
    year: int | None
    failed_attempts: int
    last_message: str
    #: 1 once given up on (the scanner skips it), else 0.
    given_up: int
    path: str
    size_bytes: int
    mtime_ns: int


SPEC = TableSpec(
    "upload_budget",
    UploadBudget,
    pk=("record_key",),
    indexes=("given_up",),
    refuse_hint=(
        "to upload pages given up on again run `python -m commands reset-failures`, "
        "or change the file"
    ),
)


def _row(t: Tables, key: str) -> UploadBudget:
    row = t.get(SPEC, (key,))
    if row is None:
        state, school, year, _ = parse_key(key)
        row = UploadBudget(key, state, school, year, 0, "", 0, "", -1, -1)
    return row


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: UploadAbandoned, t: Tables, rec: Recorded) -> None:
    row = _row(t, e.record_key)
    t.put(
        SPEC,
        msgspec.structs.replace(
            row, failed_attempts=row.failed_attempts + e.attempts, last_message=e.message
        ),
    )


@apply.register
def _(e: UploadGivenUp, t: Tables, rec: Recorded) -> None:
    row = _row(t, e.record_key)
    t.put(
        SPEC,
        msgspec.structs.replace(
            row,
            failed_attempts=max(row.failed_attempts, e.attempts),
            last_message=e.reason,
            given_up=1,
            path=e.path,
            size_bytes=e.size_bytes,
            mtime_ns=e.mtime_ns,
        ),
    )


@apply.register(FileUploaded)
@apply.register(UploadGivenUpCleared)
def _(e: FileUploaded | UploadGivenUpCleared, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.record_key,))


@apply.register(BatchSubmitted)
@apply.register(FailuresReset)
def _(e: BatchSubmitted | FailuresReset, t: Tables, rec: Recorded) -> None:
    for key in e.record_keys:
        t.delete(SPEC, (key,))
