"""Cost arithmetic against hand-computed figures."""

from __future__ import annotations

import pytest

from commands.config import ModelPrice, PricingConfig
from commands.rules.cost import Usage, money, spend, token_cost

PRICING = PricingConfig(models={"m": ModelPrice(input_per_million=1.00, output_per_million=4.00)})


def test_token_cost_applies_prices_and_the_batch_discount() -> None:
    # 1,000,000 prompt tokens at $1 + 250,000 output tokens at $4 = $2 list, $1 at half price.
    assert token_cost(1_000_000, 250_000, "m", PRICING) == pytest.approx(1.00)
    assert token_cost(1_000_000, 250_000, "models/m", PRICING) == pytest.approx(1.00)
    full = PricingConfig(batch_discount=0.0, models=PRICING.models)
    assert token_cost(1_000_000, 250_000, "m", full) == pytest.approx(2.00)
    assert token_cost(10, 10, "unknown-model", PRICING) is None


def test_spend_sums_models_and_separates_waste() -> None:
    usages = [
        Usage(
            "m",
            results=10,
            prompt_tokens=600_000,
            output_tokens=100_000,
            failed_results=2,
            failed_prompt_tokens=200_000,
            failed_output_tokens=50_000,
        ),
        Usage("", results=5, prompt_tokens=400_000, output_tokens=150_000),  # default model
    ]
    s = spend(usages, PRICING, default_model="m")
    # (1,000,000 x $1 + 250,000 x $4) / 2 = $1.00; waste (200,000 x $1 + 50,000 x $4) / 2 = $0.20
    assert (s.results, s.prompt_tokens, s.output_tokens) == (15, 1_000_000, 250_000)
    assert s.cost == pytest.approx(1.00) and s.wasted_cost == pytest.approx(0.20)
    assert "estimated $1.00 ($0.2000 on results that failed)" in s.describe()


def test_an_unpriced_model_makes_the_cost_unknown_and_says_which() -> None:
    s = spend([Usage("mystery", results=1, prompt_tokens=5)], PRICING, default_model="m")
    assert s.cost is None and s.unpriced_models == ["mystery"]
    assert "no price for mystery" in s.describe()


def test_built_in_prices_and_overrides() -> None:
    default = PricingConfig()
    assert default.price("gemini-2.5-flash") == ModelPrice(
        input_per_million=0.30, output_per_million=2.50
    )
    override = PricingConfig.model_validate(
        {"models": {"gemini-2.5-flash": {"input_per_million": 9, "output_per_million": 9}}}
    )
    assert override.price("gemini-2.5-flash").input_per_million == 9  # type: ignore[union-attr]
    assert override.price("gemini-2.5-pro") is not None  # the other defaults stay


def test_money_formatting() -> None:
    assert money(0.0123) == "$0.0123" and money(1234.5) == "$1,234.50"
    assert money(3, "EUR") == "EUR 3.00"
