"""``token_usage``: tokens billed per run and model, and how many of them went to results that
failed validation (wasted spend). Prices are applied when read (``commands.rules.cost``), so a price
change never rewrites history."""

from __future__ import annotations

from functools import singledispatch

import msgspec

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


@apply.register(RecordValidated)
@apply.register(RecordFailed)
@apply.register(ResultDiscarded)
def _(e: RecordValidated | RecordFailed | ResultDiscarded, t: Tables, rec: Recorded) -> None:
    if not (e.prompt_tokens or e.output_tokens):
        return  # error lines and missing lines are not billed
    key = (run_of(rec.actor), e.model)
    row = t.get(SPEC, key) or TokenUsage(*key, 0, 0, 0, 0, 0, 0)
    failed = not isinstance(e, RecordValidated)  # paid for, produced nothing
    t.put(
        SPEC,
        TokenUsage(
            row.run_id,
            row.model,
            row.results + 1,
            row.prompt_tokens + e.prompt_tokens,
            row.output_tokens + e.output_tokens,
            row.failed_results + failed,
            row.failed_prompt_tokens + (e.prompt_tokens if failed else 0),
            row.failed_output_tokens + (e.output_tokens if failed else 0),
        ),
    )
