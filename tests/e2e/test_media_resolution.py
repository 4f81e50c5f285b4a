"""Media resolution through the real SDK and the emulator, which bills by the model table: the
same image page and the same one-page PDF, sent at ``low`` and at ``high`` to a Gemini 3 model,
are billed the table's figures (their difference is the table's), the worker's estimate of each
page's media equals what the emulator billed for it, and the run report sets the estimated cost
of the batches it submitted beside the cost billed, by the same prices.

The estimate and the bill differ by text alone, and by design: the estimator counts the prompt
and the response schema at 4 characters a token (rounded up), the emulator bills the prompt's
text part (rounded down) and not the schema, so the media tokens are compared exactly and the
text apart."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from commands.cli import cli
from commands.config import Config, load_config
from commands.models import TABLE, ModelRow
from commands.rules.cost import money
from commands.schema import load_schema, response_json_schema
from commands.worker.session import run
from eventlog.events import BatchSubmissionIntended, RecordValidated
from gemini_emulator import Emulator
from projections import open_store
from tests.media import one_page_pdf, png
from tests.pipeline import API_KEY, check_final_state, events, write_config

MODEL = "gemini-3-flash-preview"
POLICY = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}
IMAGE_KEY, PDF_KEY = "{0}:School:2021:1", "{0}:School:2021:2"


def configured(
    tmp_path: Path, emulator: Emulator, resolution: str, transport: str
) -> tuple[Config, list[str]]:
    """A dataset of one 1000x700 PNG page and one one-page PDF page under a State named after
    ``resolution``, and a config sending them at ``resolution`` to :data:`MODEL`."""
    state = resolution.capitalize()
    year = tmp_path / "input" / state / "School" / "2021"
    year.mkdir(parents=True)
    (year / "1.png").write_bytes(png(1000, 700))
    (year / "2.pdf").write_bytes(one_page_pdf())
    path = write_config(
        tmp_path,
        emulator.url,
        gemini={"model": MODEL, "media_resolution": resolution},
        uploads={"image_transport": transport},
    )
    return load_config(path), [IMAGE_KEY.format(state), PDF_KEY.format(state)]


def text_per_page(config: Config) -> int:
    """The estimator's text tokens a page: prompt and schema at 4 characters a token."""
    schema = response_json_schema(load_schema(config.gemini.output_schema))
    return math.ceil((len(config.gemini.prompt) + len(json.dumps(schema))) / 4)


@pytest.mark.parametrize("transport", ["inline", "file_api"])
def test_low_and_high_are_billed_as_the_table_says_and_as_estimated(
    tmp_path: Path, transport: str
) -> None:
    row = TABLE.row(MODEL)
    assert row is not None
    billed: dict[str, dict[str, int]] = {}
    for resolution in ("low", "high"):  # an emulator each: its ledger is one run's
        with Emulator(POLICY, api_key=API_KEY) as emulator:
            billed[resolution] = run_at(tmp_path / resolution, emulator, resolution, transport)
    # Low against high: the difference is the table's, for the image and for the PDF page.
    for kind, rule in (("image", row.image), ("pdf", row.pdf)):
        high, low = rule.at("high"), rule.at("low")
        assert isinstance(high, int) and isinstance(low, int)  # Gemini 3: a count a page
        assert billed["high"][kind] - billed["low"][kind] == high - low > 0, kind


def run_at(tmp_path: Path, emulator: Emulator, resolution: str, transport: str) -> dict[str, int]:
    """One run of the two pages at ``resolution``, checked; each kind's media tokens billed."""
    row = TABLE.row(MODEL)
    assert row is not None
    config, keys = configured(tmp_path, emulator, resolution, transport)
    # ``estimate`` before the run: each kind's media tokens at this resolution (one page each).
    open_store(config.log_location, create=True).close()
    out = CliRunner().invoke(cli, ["--config", str(config.source), "estimate", "--json"])
    assert out.exit_code == 0, out.output
    (figures,) = [f for f in json.loads(out.output)["by_resolution"] if f["configured"]]
    estimated_media = {
        k: figures[f]["media_tokens"] for k, f in (("image", "images"), ("pdf", "pdf_pages"))
    }
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok"
    assert check_final_state(config, emulator, keys) == {"written": 2}
    wire = f"MEDIA_RESOLUTION_{resolution.upper()}"
    assert {r for k in keys for r in emulator.service.media_resolutions[k]} == {wire}
    prompt_text = len(config.gemini.prompt) // 4  # the text part, as the emulator bills it
    by_key = {b.key: b.prompt_tokens for b in emulator.service.billed if b.key in keys}
    image_key, pdf_key = keys
    media = {"image": by_key[image_key] - prompt_text, "pdf": by_key[pdf_key] - prompt_text}
    # The emulator billed each page the table's figure at this resolution, as estimated.
    assert media == {"image": row.image.at(resolution), "pdf": row.pdf.at(resolution)}
    assert media == estimated_media
    # The log recorded the same prompt tokens the service reported.
    log = events(config)
    recorded = {e.record_key: e.prompt_tokens for e in log if isinstance(e, RecordValidated)}
    assert recorded == by_key
    # The worker's estimate of the batch: each page's media as billed, plus its text.
    estimated = sum(e.estimated_input_tokens for e in log if isinstance(e, BatchSubmissionIntended))
    assert estimated == sum(media.values()) + 2 * text_per_page(config)
    check_report(config, row)
    return media


def check_report(config: Config, row: ModelRow) -> None:
    """The report's cost line: the estimated cost of the batches submitted (their intents'
    input and output estimates) and the billed cost (the results' tokens), by the row's prices
    and the batch discount, as this test works them out."""
    assert row.input_per_million is not None and row.output_per_million is not None
    log = events(config)
    discount = config.pricing.batch_discount

    def cost(prompt: int, output: int) -> float:
        assert row.input_per_million is not None and row.output_per_million is not None
        return (
            (prompt * row.input_per_million + output * row.output_per_million)
            / 1e6
            * (1 - discount)
        )

    intents = [e for e in log if isinstance(e, BatchSubmissionIntended)]
    estimated = sum(
        cost(i.estimated_input_tokens, i.estimated_tokens - i.estimated_input_tokens)
        for i in intents
    )
    results = [e for e in log if isinstance(e, RecordValidated)]
    billed = cost(sum(e.prompt_tokens for e in results), sum(e.output_tokens for e in results))
    report = CliRunner().invoke(cli, ["--config", str(config.source), "report"])
    assert report.exit_code == 0, report.output
    line = re.search(
        r"^- Cost: estimated (\S+) for the batches submitted .*, billed (\S+) ", report.output, re.M
    )
    assert line is not None, report.output
    assert line.groups() == (money(estimated), money(billed))
    assert estimated != billed  # the output estimate (600 a page) is not what was billed
