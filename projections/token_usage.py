"""``token_usage``: tokens billed per run and model, and how many of them went to results that
failed validation (wasted spend). Prices are applied when read (``commands.rules.cost``), so a price
change never rewrites history."""

from __future__ import annotations

from functools import singledispatch
from typing import NamedTuple

import msgspec
from msgspec.structs import astuple

from eventlog.actors import run_of
from eventlog.events import Event, RecordFailed, RecordValidated, ResultDiscarded
from eventlog.store import Recorded
from projections.tables import Tables, TableSpec


class TokenUsage(msgspec.Struct, array_like=True, gc=False):
    run_id: str
    model: str
    results: int
    prompt_tokens: int
    output_tokens: int
    failed_results: int
    failed_prompt_tokens: int
    failed_output_tokens: int


SPEC = TableSpec("token_usage", TokenUsage, pk=("run_id", "model"))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


class Billed(NamedTuple):
    """What one result adds to the tokens billed, and to those spent on failed answers."""

    results: int
    prompt_tokens: int
    output_tokens: int
    failed_results: int
    failed_prompt_tokens: int
    failed_output_tokens: int


def billed(e: RecordValidated | RecordFailed | ResultDiscarded) -> Billed:
    """The tokens ``e`` was billed (none for an error or a missing line), and the part paid for
    an answer that produced nothing (failed validation, or discarded as a later duplicate)."""
    if not (e.prompt_tokens or e.output_tokens):
        return Billed(0, 0, 0, 0, 0, 0)
    if isinstance(e, RecordValidated):
        return Billed(1, e.prompt_tokens, e.output_tokens, 0, 0, 0)
    return Billed(1, e.prompt_tokens, e.output_tokens, 1, e.prompt_tokens, e.output_tokens)


@apply.register(RecordValidated)
@apply.register(RecordFailed)
@apply.register(ResultDiscarded)
def _(e: RecordValidated | RecordFailed | ResultDiscarded, t: Tables, rec: Recorded) -> None:
    add = billed(e)
    if not add.results:
        return  # error lines and missing lines are not billed
    key = (run_of(rec.actor), e.model)
    row = t.get(SPEC, key) or TokenUsage(*key, 0, 0, 0, 0, 0, 0)
    counts = (a + b for a, b in zip(astuple(row)[2:], add, strict=True))
    t.put(SPEC, TokenUsage(row.run_id, row.model, *counts))
