"""Judging result lines (pure)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from commands.rules.collect import decide
from commands.rules.results import Verdict, judge
from commands.schema import PageExtraction
from eventlog.events import RecordDeadLettered, RecordFailed, RecordValidated

VALID = {
    "page_number": 3,
    "document_type": "report card",
    "title": None,
    "text": "Hello",
    "fields": [{"label": "Name", "value": "Ada"}],
}


def line(text: str | None = None, finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    cand: dict[str, Any] = {"finishReason": finish}
    if text is not None:
        cand["content"] = {"role": "model", "parts": [{"text": text}]}
    return {
        "key": "k",
        "response": {
            "candidates": [cand],
            "usageMetadata": {
                "promptTokenCount": 300,
                "candidatesTokenCount": 40,
                "thoughtsTokenCount": 5,
                "totalTokenCount": 345,
            },
        },
        **extra,
    }


def test_a_valid_line_validates_and_carries_its_tokens() -> None:
    v = judge("k", line(json.dumps(VALID)), PageExtraction)
    assert v.valid and json.loads(v.output or b"") == VALID
    assert (v.prompt_tokens, v.output_tokens, v.total_tokens) == (300, 45, 345)


@pytest.mark.parametrize(
    ("given", "error_type", "fragment"),
    [
        (None, "missing_line", "no result line"),
        (
            {"key": "k", "error": {"code": 500, "message": "boom", "status": "INTERNAL"}},
            "error_line",
            "500 INTERNAL: boom",
        ),
        (line("Sure! {"), "invalid_json", "not JSON"),
        (line(json.dumps({**VALID, "text": 7})), "schema_violation", "text: Input should be"),
        (line(json.dumps({"surprise": 1})), "schema_violation", "(+"),
        (line(None, "SAFETY"), "finish_safety", "SAFETY"),
        (line(None, "RECITATION"), "finish_recitation", "RECITATION"),
        (line('{"text": "cut', "MAX_TOKENS"), "finish_max_tokens", "MAX_TOKENS"),
        (line("   "), "empty_text", "no text"),
        (
            {
                "key": "k",
                "response": {"candidates": [], "promptFeedback": {"blockReason": "OTHER"}},
            },
            "no_candidates",
            "OTHER",
        ),
    ],
)
def test_every_failure_has_a_type_a_message_and_an_excerpt(
    given: dict[str, Any] | None, error_type: str, fragment: str
) -> None:
    v = judge("k", given, PageExtraction)
    assert v.error_type == error_type and fragment in v.message + v.excerpt
    assert v.output is None and len(v.excerpt) <= 200


def test_thought_parts_are_not_the_answer() -> None:
    given = line(json.dumps(VALID))
    given["response"]["candidates"][0]["content"]["parts"].insert(
        0, {"text": "thinking...", "thought": True}
    )
    assert judge("k", given, PageExtraction).valid


def test_decide_counts_failures_and_dead_letters_at_max_retries() -> None:
    verdicts = [
        Verdict("a", None, output=b"{}"),
        Verdict("b", "invalid_json", "m", "x"),
        Verdict("c", "missing_line", "m"),
    ]
    counts = {"b": 2, "c": 0}
    events = decide("batches/1", verdicts, {"a": ("out/a.json", "sha")}, counts, max_retries=3)
    assert [type(e) for e in events] == [
        RecordValidated,
        RecordFailed,
        RecordDeadLettered,
        RecordFailed,
    ]
    assert events[2] == RecordDeadLettered(record_key="b", failures=3, max_retries=3)
    assert cast(RecordValidated, events[0]).output_sha256 == "sha"
