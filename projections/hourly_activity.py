"""``hourly_activity``: per hour (UTC, ``YYYY-MM-DDTHH``) and model, the pages written, the
failed attempts, the dead letters and the tokens billed (and how many of them on failed answers).

Folded at append time, so the progress rates, the expected finish and every chart read a few
rows per hour of the job (about 3,300 for 139 days), never the log; a day is 24 of them.
Dead letters carry no model: they are counted under ``""``.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    Event,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
    ResultDiscarded,
)
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec
from projections.token_usage import billed


class HourlyActivity(msgspec.Struct, array_like=True, gc=False):
    hour: str
    model: str
    written: int = 0
    failed: int = 0
    dead_lettered: int = 0
    results: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    failed_prompt_tokens: int = 0
    failed_output_tokens: int = 0


SPEC = TableSpec("hourly_activity", HourlyActivity, pk=("hour", "model"))


def hour_of(ts: str) -> str:
    """The hour bucket of an event time (``2026-12-06T07:01:05.004Z`` -> ``2026-12-06T07``)."""
    return ts[:13]


def _row(t: Tables, rec: Recorded, model: str) -> HourlyActivity:
    key = (hour_of(rec.ts), model)
    found: HourlyActivity | None = t.get(SPEC, key)
    return found or HourlyActivity(*key)


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register(RecordValidated)
@apply.register(RecordFailed)
@apply.register(ResultDiscarded)
def _(e: RecordValidated | RecordFailed | ResultDiscarded, t: Tables, rec: Recorded) -> None:
    row = _row(t, rec, e.model)
    add = billed(e)
    t.put(
        SPEC,
        msgspec.structs.replace(
            row,
            written=row.written + isinstance(e, RecordValidated),
            failed=row.failed + isinstance(e, RecordFailed),
            results=row.results + add.results,
            prompt_tokens=row.prompt_tokens + add.prompt_tokens,
            output_tokens=row.output_tokens + add.output_tokens,
            failed_prompt_tokens=row.failed_prompt_tokens + add.failed_prompt_tokens,
            failed_output_tokens=row.failed_output_tokens + add.failed_output_tokens,
        ),
    )


@apply.register
def _(e: RecordDeadLettered, t: Tables, rec: Recorded) -> None:
    row = _row(t, rec, "")
    t.put(SPEC, msgspec.structs.replace(row, dead_lettered=row.dead_lettered + 1))
