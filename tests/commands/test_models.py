"""The model table (``commands/models.toml``): it loads and says where each figure comes from,
a model finds its family by the longest name prefix, an unknown one gets the default rule with
one warning, media tokens follow the row at each resolution, and [pricing]'s built-in prices
are the table's."""

from __future__ import annotations

import logging
import math

import msgspec
import pytest

from commands.config import DEFAULT_PRICES, ModelPrice, PricingConfig
from commands.models import RESOLUTIONS, TABLE, load_table, row_for
from commands.rules.tokens import TILE_TOKENS, image_tokens, media_tokens

FAMILIES = {r.family for r in TABLE.families}


def test_the_table_has_the_families_with_prices_and_sources() -> None:
    wanted = {
        "Gemini 2.0 Flash",
        "Gemini 2.5 Flash",
        "Gemini 2.5 Flash-Lite",
        "Gemini 2.5 Pro",
        "Gemini 3 Flash",
        "Gemini 3 Pro",
    }
    assert wanted <= FAMILIES
    for row in TABLE.families:
        assert row.prefixes and row.input_per_million and row.output_per_million, row.family
        assert row.price_source.startswith("[P]") and row.source, row.family
        assert row.tiles == TABLE.tile_rule  # every row carries the table's tile rule
    assert TABLE.tile_rule.source == "https://ai.google.dev/gemini-api/docs/tokens"


def test_gemini_3_counts_pages_by_resolution_and_2_5_keeps_the_tile_rule() -> None:
    g3 = TABLE.row("gemini-3-flash-preview")
    assert g3 is not None and g3.family == "Gemini 3 Flash"
    # https://ai.google.dev/gemini-api/docs/media-resolution#token-counts, "Gemini 3 models".
    assert [g3.image.at(r) for r in RESOLUTIONS] == [1120, 280, 560, 1120]
    assert [g3.pdf.at(r) for r in RESOLUTIONS] == [560, 280, 560, 1120]
    g25 = TABLE.row("gemini-2.5-flash")
    assert g25 is not None
    assert [g25.image.at(r) for r in RESOLUTIONS] == ["tiles", 64, 256, "tiles"]
    assert [g25.pdf.at(r) for r in RESOLUTIONS] == [258, 64, 256, 258]
    # The default model's estimates before the table are unchanged: 258 a small image or a
    # PDF page when no resolution is sent.
    assert media_tokens(g25, "unspecified", "image", (8, 8)) == 258 == TILE_TOKENS
    assert media_tokens(g25, "unspecified", "pdf", None) == 258


@pytest.mark.parametrize(
    ("model", "family"),
    [
        ("gemini-2.5-flash", "Gemini 2.5 Flash"),
        ("models/gemini-2.5-flash", "Gemini 2.5 Flash"),
        ("gemini-2.5-flash-preview-09-2025", "Gemini 2.5 Flash"),
        ("gemini-2.5-flash-lite", "Gemini 2.5 Flash-Lite"),  # the longer prefix wins
        ("gemini-2.5-flash-lite-preview-09-2025", "Gemini 2.5 Flash-Lite"),
        ("gemini-2.0-flash-lite", "Gemini 2.0 Flash-Lite"),
        ("gemini-2.0-flash-001", "Gemini 2.0 Flash"),
        ("gemini-2.5-pro", "Gemini 2.5 Pro"),
        ("gemini-3-pro-preview", "Gemini 3 Pro"),
        ("gemini-3.1-pro-preview", "Gemini 3 Pro"),
        ("gemini-3-flash-preview", "Gemini 3 Flash"),
    ],
)
def test_a_model_finds_its_family_by_the_longest_prefix(model: str, family: str) -> None:
    row = TABLE.row(model)
    assert row is not None and row.family == family


@pytest.mark.parametrize("model", ["gemini-2.5-flashy", "gemini-flash-latest", "gpt-4o", ""])
def test_a_name_the_table_does_not_know_has_no_row(model: str) -> None:
    assert TABLE.row(model) is None


def test_an_unknown_model_gets_the_default_rule_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="commands.models")
    model = "gemini-unknown-test-model-1"
    rows = [row_for(model) for _ in range(3)]
    assert all(r is TABLE.default for r in rows)
    warnings = [r for r in caplog.records if r.name == "commands.models"]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert model in message and TABLE.default.family in message
    # The default rule is the Gemini 2.x rule at every resolution.
    for resolution in RESOLUTIONS:
        assert media_tokens(TABLE.default, resolution, "image", (1700, 2200)) == 9 * 258
        assert media_tokens(TABLE.default, resolution, "pdf", None) == 258
    caplog.clear()
    assert row_for("gemini-2.5-flash").family == "Gemini 2.5 Flash"
    assert caplog.records == []


SIZES = [None, (8, 8), (384, 384), (769, 768), (1700, 2200), (2480, 3508)]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_media_tokens_follow_the_row(family: str, resolution: str) -> None:
    (row,) = [r for r in TABLE.families if r.family == family]
    rule = TABLE.tile_rule
    for size in SIZES:
        figure = row.image.at(resolution)
        if figure == "tiles":  # the tile rule, computed here from the table's own figures
            if size is None or max(size) <= rule.small_side:
                want = rule.tokens
            else:
                want = math.ceil(size[0] / rule.side) * math.ceil(size[1] / rule.side)
                want *= rule.tokens
        else:
            want = figure
        assert media_tokens(row, resolution, "image", size) == want, (size, figure)
    assert media_tokens(row, resolution, "pdf", None) == row.pdf.at(resolution)


def test_image_tokens_takes_the_table_tile_rule() -> None:
    assert image_tokens((1700, 2200)) == 9 * TABLE.tile_rule.tokens


def test_built_in_prices_are_the_tables_and_match_by_prefix() -> None:
    for row in TABLE.families:
        for prefix in row.prefixes:
            assert DEFAULT_PRICES[prefix] == ModelPrice(
                input_per_million=row.input_per_million or 0.0,
                output_per_million=row.output_per_million or 0.0,
            )
    pricing = PricingConfig()
    flash3 = pricing.price("models/gemini-3-flash-preview")
    assert flash3 == ModelPrice(input_per_million=0.50, output_per_million=3.00)
    lite = pricing.price("gemini-2.0-flash-lite-001")
    assert lite is not None and lite.input_per_million == 0.075
    assert pricing.price("gemini-2.5-flashy") is None and pricing.price("mystery") is None
    # A [pricing.models] entry still wins, for its own name and the names it prefixes.
    override = PricingConfig.model_validate(
        {"models": {"gemini-3-flash": {"input_per_million": 9, "output_per_million": 9}}}
    )
    assert override.price("gemini-3-flash-preview").input_per_million == 9  # type: ignore[union-attr]
    assert override.price("gemini-3-pro-preview").input_per_million == 2.00  # type: ignore[union-attr]


def test_a_malformed_table_is_refused() -> None:
    text = """
[tile_rule]
tokens = 258
small_side = 384
side = 768
[default]
family = "d"
image = { unspecified = "tiles", low = "tiles", medium = "tiles", high = "many" }
pdf = { unspecified = 258, low = 258, medium = 258, high = 258 }
source = "s"
"""
    with pytest.raises(msgspec.ValidationError):
        load_table(text)
