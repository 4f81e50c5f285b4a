"""Answers cut short (``finish_max_tokens``) and the other finish reasons: what a failure says,
and the output limit each retry asks for (pure rules and the request line; the run end to end is
``tests/e2e/test_output_limits.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.genai.types import MediaResolution

from commands.config import Config
from commands.gemini.requests import request_line
from commands.pages import Page
from commands.rules.results import FINISH_MEANINGS, MAX_TOKENS_HINT, judge
from commands.rules.retry import output_limit
from commands.schema import PageExtraction
from commands.worker.estimator import TokenEstimator
from eventlog.events import RecordFailed
from projections import open_store


@pytest.mark.parametrize(
    ("base", "ceiling", "cuts", "limit"),
    [
        (8192, 65536, 0, 8192),
        (8192, 65536, 1, 16384),
        (8192, 65536, 2, 32768),
        (8192, 65536, 3, 65536),
        (8192, 65536, 9, 65536),  # never past the ceiling
        (1000, 3000, 1, 2000),
        (1000, 3000, 2, 3000),
        (4096, 2048, 3, 4096),  # a ceiling below the base never lowers it
        (0, 65536, 0, None),  # 0: nothing sent, the model's own limit
        (0, 65536, 2, None),  # ... which a retry cannot raise
    ],
)
def test_output_limit_doubles_per_cut_up_to_the_ceiling(
    base: int, ceiling: int, cuts: int, limit: int | None
) -> None:
    assert output_limit(base, ceiling, cuts) == limit


def _line(finish: str, text: str | None = '{"text": "cut') -> dict[str, Any]:
    candidate: dict[str, Any] = {"finishReason": finish}
    if text is not None:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    return {"key": "k", "response": {"candidates": [candidate]}}


def test_a_cut_answer_is_named_with_the_hint_naming_the_key() -> None:
    v = judge("k", _line("MAX_TOKENS"), PageExtraction)
    assert v.error_type == "finish_max_tokens"
    assert v.message.startswith("finish reason MAX_TOKENS: the answer was cut at the output limit")
    assert v.message.endswith(MAX_TOKENS_HINT)
    assert "[gemini] max_output_tokens" in v.message
    assert v.excerpt == '{"text": "cut'


@pytest.mark.parametrize("reason", sorted(set(FINISH_MEANINGS) - {"MAX_TOKENS"}))
def test_every_other_finish_reason_keeps_its_type_and_says_what_it_means(reason: str) -> None:
    v = judge("k", _line(reason, None), PageExtraction)
    assert v.error_type == f"finish_{reason.lower()}"
    assert v.message == f"finish reason {reason}: {FINISH_MEANINGS[reason]}"
    assert "max_output_tokens" not in v.message


def test_a_finish_reason_nobody_knows_is_said_so() -> None:
    v = judge("k", _line("SOMETHING_NEW", None), PageExtraction)
    assert v.error_type == "finish_something_new"
    assert v.message == "finish reason SOMETHING_NEW: a finish reason this tool does not know"


def test_the_request_line_carries_the_output_limit_and_temperature_when_given() -> None:
    line = json.loads(request_line("k", "p", [], {"type": "object"}))
    assert "maxOutputTokens" not in line["request"]["generationConfig"]
    assert "temperature" not in line["request"]["generationConfig"]
    line = json.loads(
        request_line("k", "p", [], {"type": "object"}, max_output_tokens=16384, temperature=0.0)
    )
    generation = line["request"]["generationConfig"]
    assert generation["maxOutputTokens"] == 16384 and generation["temperature"] == 0.0
    assert "mediaResolution" not in generation  # unspecified: the model's default
    assert generation["responseMimeType"] == "application/json"


@pytest.mark.parametrize("resolution", ["low", "medium", "high"])
def test_the_request_line_carries_the_media_resolution(resolution: str) -> None:
    line = json.loads(request_line("k", "p", [], {}, media_resolution=resolution))
    wire = line["request"]["generationConfig"]["mediaResolution"]
    assert wire == f"MEDIA_RESOLUTION_{resolution.upper()}"
    assert wire in {m.value for m in MediaResolution}  # a value the SDK knows


def test_the_estimate_of_a_page_cut_before_counts_at_least_the_limit_it_was_cut_at(
    tmp_path: Path,
) -> None:
    """Admission and ``estimate`` count what a larger limit costs: a page cut twice (at 8,192,
    then 16,384) bills at least 16,384 output tokens when it goes again; the others the mean."""
    store = open_store(tmp_path / "log.db", create=True)
    try:
        cut = [
            RecordFailed(
                record_key="S:A:2020:1",
                batch_id="batches/x",
                error_type="finish_max_tokens",
                message="cut",
            )
        ] * 2
        store.append(cut, actor="run:test")
        estimator = TokenEstimator(store, Config(), {"type": "object"})
    finally:
        store.close()
    long, short = (
        Page(f"S:A:2020:{n}", "S", "A", "2020", str(n), "/none", "image/png") for n in (1, 2)
    )
    assert estimator.page(long).output == 16384
    assert estimator.page(short).output == estimator.output_per_page < 16384
