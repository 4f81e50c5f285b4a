"""``estimate``: what the pending work should cost, before it is submitted (read-only).

Tokens per page come from the same estimator token admission uses
(:mod:`commands.worker.estimator`): input by Gemini's image rule on the dimensions in each pending
page's header (the mean over up to ``HEADER_SAMPLE`` of them) plus the prompt and schema at 4
characters a token; output from the mean billed for the configured model in this log, or the
rule's default before any result.
"""

from __future__ import annotations

import msgspec

from commands.config import Config
from commands.rules.cost import token_cost
from commands.rules.tokens import image_tokens
from commands.schema import load_schema, response_json_schema
from commands.worker.estimator import TokenEstimator
from commands.worker.scan import scan_dataset
from eventlog.store import EventStore

#: The pending pages whose headers are read for the input figure (the mean of them).
HEADER_SAMPLE = 1000


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
    """Read-only: the pending pages' tokens and cost, by the worker's own estimator."""
    decision = scan_dataset(store, config, limit=HEADER_SAMPLE)
    model = config.gemini.model
    schema = load_schema(
        config.gemini.output_schema, config.source.parent if config.source else None
    )
    with store.snapshot():
        estimator = TokenEstimator(store, config, response_json_schema(schema))
    sample = [estimator.page(p) for p in decision.candidates]
    measured = sum(e.measured for e in sample)
    if sample:
        per_in = sum(e.input for e in sample) / len(sample)
    else:
        per_in = float(image_tokens(None) + estimator.text_per_page)
    per_out = float(estimator.output_per_page)
    basis = (
        f"input: Gemini's image rule on {measured} of {len(sample)} pending pages' headers "
        f"({len(sample) - measured} at the default {image_tokens(None)}) + prompt and schema at "
        f"4 characters a token; output: {estimator.output_basis}"
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
