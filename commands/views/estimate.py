"""``estimate``: what the pending work should cost, before it is submitted (read-only).

Tokens per page come from the same estimator token admission uses
(:mod:`commands.worker.estimator`): input by the model table's row for the configured model and
media resolution (a PDF page's figure, or an image's from the dimensions in its header; the mean
over up to ``HEADER_SAMPLE`` pending pages) plus the prompt and schema at 4 characters a token;
output from the mean billed for the configured model in this log, or the rule's default before
any result. Before the first run (no database yet) it is the same from the dataset alone: an
empty log's figures, and a basis that says so; nothing is created. ``by_resolution`` sets the
same pages' input tokens and cost at every media resolution side by side, images and PDF pages
apart (:mod:`commands.rules.estimate`).
"""

from __future__ import annotations

import contextlib

import msgspec

from commands.config import Config
from commands.rules.cost import token_cost
from commands.rules.estimate import ResolutionFigures, by_resolution
from commands.rules.tokens import media_tokens
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
    #: ``[gemini] media_resolution``, the model table's family of the model, and the pending
    #: pages' figures at each resolution (images and PDF pages apart).
    media_resolution: str = "unspecified"
    model_family: str = ""
    by_resolution: list[ResolutionFigures] = []


def estimate(store: EventStore | None, config: Config) -> Estimate:
    """Read-only: the pending pages' tokens and cost, by the worker's own estimator. ``store``
    None: there is no log yet (before the first run), every page of the dataset is pending."""
    decision = scan_dataset(store, config, limit=HEADER_SAMPLE)
    model = config.gemini.model
    schema = load_schema(
        config.gemini.output_schema, config.source.parent if config.source else None
    )
    with store.snapshot() if store is not None else contextlib.nullcontext():
        estimator = TokenEstimator(store, config, response_json_schema(schema))
    sample = [estimator.page(p) for p in decision.candidates]
    measured = sum(e.measured for e in sample)
    resolution = config.gemini.media_resolution
    unknown = media_tokens(estimator.row, resolution, "image", None)
    if sample:
        per_in = sum(e.input for e in sample) / len(sample)
    else:
        per_in = float(unknown + estimator.text_per_page)
    per_out = float(estimator.output_per_page)
    basis = (
        f"input: the model table's {estimator.row.family} figures at media_resolution "
        f"{resolution}, the image rule on {measured} of {len(sample)} pending pages' headers "
        f"({len(sample) - measured} at the default {unknown}) + prompt and schema at "
        f"4 characters a token; output: {estimator.output_basis}"
    )
    if store is None:
        basis += f"; no database at {config.log_location} yet (none is created)"
    n = decision.counts["candidates"]
    waiting = decision.counts["waiting_for_previous_page"]
    price = config.pricing.price(model)

    def cost(count: int) -> float | None:
        return token_cost(round(per_in * count), round(per_out * count), model, config.pricing)

    figures = by_resolution(
        [(e.kind, e.size) for e in sample],
        n,
        row=estimator.row,
        model=model,
        configured=resolution,
        text_per_page=estimator.text_per_page,
        output_per_page=estimator.output_per_page,
        pricing=config.pricing,
    )

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
        resolution,
        estimator.row.family,
        figures,
    )
