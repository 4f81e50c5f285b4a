"""``estimate``: what the pending work should cost, before it is submitted (read-only).

Tokens per page come from this log's history for the configured model when it has any (the mean
of past billed results), otherwise from a stated assumption: the image (258 tokens), the prompt
and schema text (4 characters a token), and ``ASSUMED_OUTPUT_TOKENS`` of output.
"""

from __future__ import annotations

import json

import msgspec

from commands.config import Config
from commands.rules.cost import token_cost
from commands.schema import load_schema, response_json_schema
from commands.worker.scan import scan_dataset
from eventlog.store import EventStore
from projections import queries

IMAGE_TOKENS = 258
ASSUMED_OUTPUT_TOKENS = 600


class Estimate(msgspec.Struct, frozen=True):
    model: str
    pages: int
    waiting_for_previous_page: int
    prompt_tokens_per_page: float
    output_tokens_per_page: float
    basis: str
    currency: str
    input_per_million: float | None
    output_per_million: float | None
    batch_discount: float
    cost: float | None
    cost_with_waiting: float | None


def estimate(store: EventStore, config: Config) -> Estimate:
    decision = scan_dataset(store, config, limit=0)
    model = config.gemini.model
    with store.snapshot():
        usage = queries.usage_totals(store, model)
    results, prompt, output = usage.results, usage.prompt_tokens, usage.output_tokens
    if results:
        per_in, per_out = prompt / results, output / results
        basis = f"the mean of {results} past results of {model} in this log"
    else:
        schema = load_schema(
            config.gemini.output_schema, config.source.parent if config.source else None
        )
        text = len(config.gemini.prompt) + len(json.dumps(response_json_schema(schema)))
        per_in, per_out = IMAGE_TOKENS + text / 4, float(ASSUMED_OUTPUT_TOKENS)
        basis = (
            f"an assumption (no past results of {model}): {IMAGE_TOKENS} image tokens + "
            f"prompt and schema at 4 characters a token; {ASSUMED_OUTPUT_TOKENS} output "
            "tokens"
        )
    n = decision.counts["candidates"]
    waiting = decision.counts["waiting_for_previous_page"]
    price = config.pricing.price(model)

    def cost(count: int) -> float | None:
        return token_cost(round(per_in * count), round(per_out * count), model, config.pricing)

    return Estimate(
        model,
        n,
        waiting,
        round(per_in, 1),
        round(per_out, 1),
        basis,
        config.pricing.currency,
        price.input_per_million if price else None,
        price.output_per_million if price else None,
        config.pricing.batch_discount,
        cost(n),
        cost(n + waiting),
    )
