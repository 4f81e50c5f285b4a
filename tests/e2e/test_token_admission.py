"""Token-aware admission through the real SDK and the emulator: with a small
``max_enqueued_tokens`` the first cycle submits only the pages whose estimate fits, the rest go as
batches complete, and every page is written in the end; ``estimate`` and the run report use the
same estimator."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from click.testing import CliRunner

from commands.cli import cli
from commands.config import Config, load_config
from commands.rules.tokens import DEFAULT_OUTPUT_TOKENS, image_tokens, text_tokens
from commands.schema import load_schema, response_json_schema
from commands.worker.session import run
from eventlog.events import BatchCompleted, BatchSubmissionIntended, BatchSubmitted
from gemini_emulator import Emulator
from projections import open_store, queries
from tests.pipeline import (
    API_KEY,
    check_final_state,
    events,
    keys_for,
    make_dataset,
    write_config,
)

KEYS = keys_for(1, 1, 1, 8)


def page_cost(config: Config) -> tuple[int, int]:
    """One test page's estimate before any result is billed: (input, input + output)."""
    schema = response_json_schema(load_schema(config.gemini.output_schema))
    text = text_tokens(len(config.gemini.prompt) + len(json.dumps(schema)))
    prompt = image_tokens((8, 8)) + text  # tests.pipeline's pages are 8x8 PNGs
    return prompt, prompt + DEFAULT_OUTPUT_TOKENS


def setup(tmp_path: Path, emulator: Emulator, limit_pages: float) -> tuple[Config, int]:
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(write_config(tmp_path, emulator.url))
    cost = page_cost(config)[1]
    limit = int(cost * limit_pages)
    batching = {"batch_size": 8, "max_active_batches": 4, "max_enqueued_tokens": limit}
    return load_config(write_config(tmp_path, emulator.url, batching=batching)), limit


def test_admission_holds_batches_back_at_the_token_limit(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, limit = setup(tmp_path, emulator, 3.5)  # room for 3 pages' estimate
    prompt, cost = page_cost(config)
    run(config, max_cycles=1, loop=True, api_key=API_KEY, sleep=lambda s: time.sleep(0.05))

    log = events(config)
    submitted = [e for e in log if isinstance(e, BatchSubmitted)]
    assert len(submitted) == 1  # the first batch cut down to fit; the rest held back
    assert len(submitted[0].record_keys) == 3 and submitted[0].estimated_tokens == 3 * cost
    (intent,) = [e for e in log if isinstance(e, BatchSubmissionIntended)]
    assert intent.estimated_tokens == 3 * cost and intent.estimated_input_tokens == 3 * prompt
    store = open_store(config.paths.database)
    # What admission counts as enqueued (every project, active batches and open intents).
    assert sum(load.tokens for load in queries.project_loads(store).values()) == 3 * cost
    assert [b.estimated_tokens for b in queries.active_batches(store)] == [3 * cost]
    store.close()

    run(config, until_idle=True, max_cycles=100, api_key=API_KEY)

    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    log = events(config)
    # Replayed from the log: the estimate in flight never went over the limit.
    in_flight: dict[str, int] = {}
    order: list[str] = []
    sizes = []
    for e in log:
        if isinstance(e, BatchSubmitted):
            in_flight[e.batch_id] = e.estimated_tokens
            sizes.append(len(e.record_keys))
            order.append("submitted")
            assert sum(in_flight.values()) <= limit
        elif isinstance(e, BatchCompleted):
            in_flight.pop(e.batch_id, None)
            order.append("completed")
    # The rest went only after the first batch completed (then in bigger batches: the output
    # estimate is the mean billed so far, far under the default the first batch was sized by).
    assert order[:3] == ["submitted", "completed", "submitted"]
    assert sum(sizes) == len(KEYS) and sizes[0] == 3 and len(sizes) >= 2

    report = CliRunner().invoke(cli, ["--config", str(config.source), "report"])
    assert report.exit_code == 0, report.output
    # The report is the last run's: the batches it submitted (all but the first three pages).
    line = f"estimated {(len(KEYS) - 3) * prompt:,} input tokens for the batches submitted, billed "
    assert line in report.output
    billed = re.search(re.escape(line) + r"([\d,]+)", report.output)
    assert billed is not None and int(billed.group(1).replace(",", "")) > 0


def test_a_page_bigger_than_the_limit_still_goes_alone(tmp_path: Path, emulator: Emulator) -> None:
    config, _ = setup(tmp_path, emulator, 0.5)  # under two pages, under one at first
    run(config, until_idle=True, max_cycles=100, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    sizes = [len(e.record_keys) for e in events(config) if isinstance(e, BatchSubmitted)]
    assert sizes == [1] * len(KEYS)


def test_estimate_uses_the_image_rule_on_the_headers(tmp_path: Path, emulator: Emulator) -> None:
    config, _ = setup(tmp_path, emulator, 3.5)
    prompt, _ = page_cost(config)
    open_store(config.paths.database, create=True).close()  # a fresh log: no results billed yet
    result = CliRunner().invoke(cli, ["--config", str(config.source), "estimate", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pages"] == len(KEYS) and data["prompt_tokens_per_page"] == prompt
    assert data["output_tokens_per_page"] == DEFAULT_OUTPUT_TOKENS
    assert f"image rule on {len(KEYS)} of {len(KEYS)} pending pages' headers" in data["basis"]
