"""Money: tokens times per-model prices, with the batch discount. Pure functions.

Output tokens include thinking tokens (billed as output). Spend on results that failed
validation is reported separately as *wasted*: it was paid for and produced nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from commands.config import PricingConfig


class Usage(msgspec.Struct):
    """Token counts for one model (a row of ``token_usage``, or a sum of rows)."""

    model: str
    results: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    failed_results: int = 0
    failed_prompt_tokens: int = 0
    failed_output_tokens: int = 0


class Spend(msgspec.Struct):
    """Estimated spend over some usage. ``cost`` is None when a model has no price."""

    currency: str
    results: int
    prompt_tokens: int
    output_tokens: int
    cost: float | None
    wasted_cost: float | None
    unpriced_models: list[str]

    def describe(self) -> str:
        tokens = f"{self.prompt_tokens:,} prompt + {self.output_tokens:,} output tokens"
        if self.cost is None:
            return f"{tokens}; cost unknown (no price for {', '.join(self.unpriced_models)})"
        return (
            f"{tokens}; estimated {money(self.cost, self.currency)} "
            f"({money(self.wasted_cost or 0, self.currency)} on results that failed)"
        )


def money(amount: float, currency: str = "USD") -> str:
    symbol = "$" if currency == "USD" else f"{currency} "
    return f"{symbol}{amount:,.4f}" if amount < 1 else f"{symbol}{amount:,.2f}"


def token_cost(prompt: int, output: int, model: str, pricing: PricingConfig) -> float | None:
    """What ``prompt`` + ``output`` tokens of ``model`` cost through the Batch API."""
    price = pricing.price(model)
    if price is None:
        return None
    list_price = (prompt * price.input_per_million + output * price.output_per_million) / 1e6
    return list_price * (1 - pricing.batch_discount)


def spend(usages: Iterable[Usage], pricing: PricingConfig, default_model: str) -> Spend:
    """Total spend over ``usages`` (rows with an empty model are priced as ``default_model``)."""
    results = prompt = output = 0
    cost: float | None = 0.0
    wasted: float | None = 0.0
    unpriced: list[str] = []
    for u in usages:
        model = u.model or default_model
        results += u.results
        prompt += u.prompt_tokens
        output += u.output_tokens
        c = token_cost(u.prompt_tokens, u.output_tokens, model, pricing)
        w = token_cost(u.failed_prompt_tokens, u.failed_output_tokens, model, pricing)
        if c is None or w is None:
            unpriced.append(model)
            continue
        cost = (cost or 0.0) + c
        wasted = (wasted or 0.0) + w
    if unpriced:
        cost = wasted = None
    return Spend(pricing.currency, results, prompt, output, cost, wasted, sorted(set(unpriced)))
