"""``estimate`` at every media resolution, images and PDF pages apart: on a small dataset (PNGs of
known sizes and one-page PDFs at ``<Year>/<Page>.pdf``) the figures printed, as text and as
JSON, equal the model table's arithmetic done here from the table row (its figures, its tile
rule, its prices), and for a Gemini 3 model they differ between low, medium and high."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from commands.cli import cli
from commands.config import Config, load_config
from commands.models import RESOLUTIONS, TABLE, ModelRow
from commands.rules.cost import money
from commands.rules.tokens import DEFAULT_OUTPUT_TOKENS
from commands.schema import load_schema, response_json_schema
from projections import open_store
from tests.media import one_page_pdf, png
from tests.pipeline import write_config

#: Image pages: (page number, width, height): a small one, one of 2 x 1 tiles, one of 3 x 3.
IMAGES = [(1, 8, 8), (2, 1000, 700), (4, 1700, 2200)]
#: One-page PDF page files.
PDFS = [3, 5]
YEAR = ("StateA", "SchoolA", "2021")


def dataset(tmp_path: Path, model: str, resolution: str) -> Config:
    year = tmp_path.joinpath("input", *YEAR)
    year.mkdir(parents=True)
    for page, width, height in IMAGES:
        (year / f"{page}.png").write_bytes(png(width, height))
    for page in PDFS:
        (year / f"{page}.pdf").write_bytes(one_page_pdf())
    gemini = {"model": model, "media_resolution": resolution}
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", gemini=gemini))
    open_store(config.log_location, create=True).close()  # a fresh log: nothing billed yet
    return config


def tokens_of(row: ModelRow, resolution: str, kind: str, size: tuple[int, int] | None) -> int:
    """The table's figure for one page, the tile rule worked out here from its own numbers."""
    figure = (row.pdf if kind == "pdf" else row.image).at(resolution)
    if figure != "tiles":
        assert isinstance(figure, int)
        return figure
    rule = TABLE.tile_rule
    if size is None or (size[0] <= rule.small_side and size[1] <= rule.small_side):
        return rule.tokens
    return math.ceil(size[0] / rule.side) * math.ceil(size[1] / rule.side) * rule.tokens


def expected(config: Config, row: ModelRow) -> dict[str, dict[str, Any]]:
    """Per resolution: each kind's input tokens and cost, and the totals."""
    schema = response_json_schema(load_schema(config.gemini.output_schema))
    text = math.ceil((len(config.gemini.prompt) + len(json.dumps(schema))) / 4)
    assert row.input_per_million is not None and row.output_per_million is not None
    discount = config.pricing.batch_discount

    def cost(prompt: int, output: int) -> float:
        assert row.input_per_million is not None and row.output_per_million is not None
        list_price = prompt * row.input_per_million + output * row.output_per_million
        return list_price / 1e6 * (1 - discount)

    out: dict[str, dict[str, Any]] = {}
    for res in RESOLUTIONS:
        image_in = sum(tokens_of(row, res, "image", (w, h)) + text for _, w, h in IMAGES)
        pdf_in = sum(tokens_of(row, res, "pdf", None) + text for _ in PDFS)
        image_out, pdf_out = (n * DEFAULT_OUTPUT_TOKENS for n in (len(IMAGES), len(PDFS)))
        out[res] = {
            "images": (image_in, cost(image_in, image_out)),
            "pdf_pages": (pdf_in, cost(pdf_in, pdf_out)),
            "all": (image_in + pdf_in, cost(image_in, image_out) + cost(pdf_in, pdf_out)),
        }
    return out


def run_estimate(config: Config, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config.source), "estimate", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    ("model", "resolution"),
    [("gemini-3-flash-preview", "medium"), ("gemini-3-pro-preview", "unspecified")],
)
def test_gemini_3_figures_at_each_resolution_are_the_tables(
    tmp_path: Path, model: str, resolution: str
) -> None:
    config = dataset(tmp_path, model, resolution)
    row = TABLE.row(model)
    assert row is not None and row.family.startswith("Gemini 3")
    want = expected(config, row)

    data = json.loads(run_estimate(config, "--json"))
    assert data["pages"] == len(IMAGES) + len(PDFS) and data["model_family"] == row.family
    figures = {f["resolution"]: f for f in data["by_resolution"]}
    assert list(figures) == list(RESOLUTIONS)
    for res, f in figures.items():
        assert f["configured"] == (res == resolution)
        assert (f["images"]["pages"], f["pdf_pages"]["pages"]) == (len(IMAGES), len(PDFS))
        for kind in ("images", "pdf_pages"):
            tokens, cost = want[res][kind]
            assert f[kind]["input_tokens"] == tokens, (res, kind)
            assert f[kind]["cost"] == pytest.approx(cost), (res, kind)
        assert f["input_tokens"] == want[res]["all"][0]
        assert f["cost"] == pytest.approx(want[res]["all"][1])
    # The configured resolution's figures are the estimate's own (the worker's estimator).
    assert data["cost"] == pytest.approx(want[resolution]["all"][1])
    # Gemini 3: low < medium < high, for images and for PDF pages alike.
    for kind in ("images", "pdf_pages"):
        low, medium, high = (want[r][kind][0] for r in ("low", "medium", "high"))
        assert low < medium < high, kind

    text = run_estimate(config)
    for res in RESOLUTIONS:
        mark = " *" if res == resolution else ""
        cells = [
            re.escape(f"{want[res][k][0]:,}") + r"\s+" + re.escape(money(want[res][k][1]))
            for k in ("images", "pdf_pages", "all")
        ]
        line = "^" + re.escape(res + mark) + r"\s+" + r"\s+".join(cells) + "$"
        assert re.search(line, text, re.M), (line, text)
    assert f"images ({len(IMAGES)}) input" in text and f"PDF pages ({len(PDFS)}) input" in text


def test_gemini_2_5_images_follow_the_tile_rule_and_low_is_cheaper(tmp_path: Path) -> None:
    config = dataset(tmp_path, "gemini-2.5-flash", "unspecified")
    row = TABLE.row("gemini-2.5-flash")
    assert row is not None
    want = expected(config, row)
    data = json.loads(run_estimate(config, "--json"))
    figures = {f["resolution"]: f for f in data["by_resolution"]}
    for res in RESOLUTIONS:
        assert figures[res]["images"]["input_tokens"] == want[res]["images"][0]
        assert figures[res]["pdf_pages"]["input_tokens"] == want[res]["pdf_pages"][0]
    # Unchanged for the default model: with nothing sent, a page is the 2.x tile rule's figure
    # (1 + 2 + 9 tiles of 258 for the three images, 258 a PDF page).
    media = figures["unspecified"]["images"]["media_tokens"]
    assert media == (1 + 2 * 1 + 3 * 3) * TABLE.tile_rule.tokens
    assert figures["unspecified"]["pdf_pages"]["media_tokens"] == len(PDFS) * 258
    assert figures["low"]["input_tokens"] < figures["unspecified"]["input_tokens"]
