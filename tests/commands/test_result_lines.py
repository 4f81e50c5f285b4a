"""Judging raw result lines (pure): every line the service could send gets a verdict of its own
type, never an exception; token counts are validated and clamped."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from commands.errors import GatewayError
from commands.rules.collect import judge_download_error
from commands.rules.results import (
    MAX_TOKEN_COUNT,
    Verdict,
    judge,
    judge_inline,
    judge_line,
)
from commands.schema import PageExtraction
from tests.strategies import json_values

VALID = {"page_number": 1, "document_type": "d", "title": None, "text": "t", "fields": []}


def response(text: str = json.dumps(VALID), **usage: Any) -> dict[str, Any]:
    return {
        "candidates": [
            {"finishReason": "STOP", "content": {"role": "model", "parts": [{"text": text}]}}
        ],
        "usageMetadata": usage or {"promptTokenCount": 10, "totalTokenCount": 12},
    }


def raw(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_valid_raw_line_validates() -> None:
    v = judge_line(raw({"key": "k", "response": response()}), PageExtraction)
    assert v.valid and v.key == "k" and v.prompt_tokens == 10 and v.total_tokens == 12


DEEP = b'{"key": "k", "response": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_TEXT = json.dumps({"key": "k", "response": response("[" * 100_000 + "]" * 100_000)})


@pytest.mark.parametrize(
    ("line", "error_type", "fragment"),
    [
        (b'{"key": "k", "response": "\xff\xfe"}', "result_not_utf8", "not UTF-8"),
        (b'\xff{"key": "k"}', "result_not_utf8", "not UTF-8"),
        (DEEP, "result_too_deep", "nested too deeply"),
        (DEEP_TEXT.encode(), "result_too_deep", "nested too deeply"),
        (b'{"key": "k", "response": {"candidates": [', "unparseable_line", "not valid JSON"),
        (raw({"key": "k", "response": "a string"}), "malformed_result_line", "a string"),
        (raw({"key": "k", "response": 42}), "malformed_result_line", "a number"),
        (raw({"key": "k", "response": [1]}), "malformed_result_line", "a list"),
        (raw({"key": "k", "error": "boom"}), "malformed_result_line", "error is a string"),
        (raw({"key": "k", "error": 500}), "malformed_result_line", "error is a number"),
        (raw({"key": "k", "response": {"candidates": "x"}}), "malformed_result_line", "list"),
        (raw({"key": "k", "response": {"candidates": [7]}}), "malformed_result_line", "cand"),
        (
            raw({"key": "k", "response": {"candidates": [{"content": "x"}]}}),
            "malformed_result_line",
            "content",
        ),
        (
            raw({"key": "k", "response": {"candidates": [{"content": {"parts": ["x"]}}]}}),
            "malformed_result_line",
            "part 0",
        ),
        (
            raw({"key": "k", "response": {"candidates": [{"content": {"parts": [{"text": 5}]}}]}}),
            "malformed_result_line",
            "text",
        ),
        (
            raw({"key": "k", "response": {"candidates": [{"finishReason": 3}]}}),
            "malformed_result_line",
            "finishReason",
        ),
    ],
)
def test_a_line_not_in_the_wire_format_fails_with_its_own_type(
    line: bytes, error_type: str, fragment: str
) -> None:
    v = judge_line(line, PageExtraction)
    assert (v.key, v.error_type) == ("k", error_type)
    assert fragment in v.message and v.output is None and len(v.excerpt) <= 200


@pytest.mark.parametrize(
    ("usage", "fragment", "clamped"),
    [
        ({"promptTokenCount": "12"}, "promptTokenCount is a string", 0),
        ({"promptTokenCount": -5}, "negative", 0),
        ({"promptTokenCount": 1.5}, "a number, not an integer", 0),
        ({"promptTokenCount": True}, "a boolean", 0),
        ({"promptTokenCount": 10**30}, "above 10,000,000", MAX_TOKEN_COUNT),
        ({"totalTokenCount": 2**63}, "totalTokenCount is above", 0),
        ({"candidatesTokenCount": [1]}, "a list", 0),
    ],
)
def test_bad_token_counts_fail_the_line_and_are_clamped(
    usage: dict[str, Any], fragment: str, clamped: int
) -> None:
    v = judge_line(raw({"key": "k", "response": response(**usage)}), PageExtraction)
    assert v.error_type == "bad_usage_metadata" and fragment in v.message
    assert v.prompt_tokens == clamped
    for n in (v.prompt_tokens, v.output_tokens, v.total_tokens):
        assert 0 <= n <= MAX_TOKEN_COUNT


def test_usage_metadata_that_is_not_an_object_fails_the_line() -> None:
    line = {"key": "k", "response": {**response(), "usageMetadata": "lots"}}
    v = judge_line(raw(line), PageExtraction)
    assert v.error_type == "bad_usage_metadata" and v.total_tokens == 0


def test_a_line_over_the_cap_fails_naming_its_size_and_keeps_its_key() -> None:
    line = raw({"key": "k", "response": response("x" * 5000)})
    v = judge_line(line, PageExtraction, max_line_bytes=1024)
    assert (v.key, v.error_type) == ("k", "result_line_too_large")
    assert f"{len(line):,} bytes" in v.message and "1,024" in v.message
    head = judge_line(line[:1025], PageExtraction, max_line_bytes=1024, size=10**9)
    assert head.error_type == "result_line_too_large" and "1,000,000,000 bytes" in head.message


def test_an_output_over_the_cap_fails_naming_its_size() -> None:
    big = json.dumps({**VALID, "text": "y" * 4000})
    v = judge_line(
        raw({"key": "k", "response": response(big)}), PageExtraction, max_output_bytes=1024
    )
    assert v.error_type == "output_too_large" and "max_output_bytes 1,024" in v.message


@pytest.mark.parametrize(
    "line",
    [
        b"[1, 2]",
        b'"just a string"',
        b"7",
        b"null",
        b'{"no": "key"}',
        b'{"key": null}',
        b'{"key": ["k"]}',
        b"\xff\xfe",
        b"{{{{",
    ],
)
def test_a_line_naming_no_key_is_counted_unreadable(line: bytes) -> None:
    assert judge_line(line, PageExtraction).key == ""


@pytest.mark.parametrize(
    ("code", "transient", "hours", "verdict"),
    [
        (404, False, 0.0, "unavailable"),
        (403, False, 0.0, "unavailable"),
        (410, False, 0.0, "unavailable"),
        (None, False, 0.0, "unavailable"),  # no result file named
        (503, True, 0.0, "retry"),
        (None, True, 5.9, "retry"),  # a timeout
        (500, True, 6.0, "unavailable"),
        (429, True, 30.0, "unavailable"),
    ],
)
def test_a_failed_download_is_retried_only_while_transient_and_young(
    code: int | None, transient: bool, hours: float, verdict: str
) -> None:
    error = GatewayError("download", code=code, transient=transient)
    assert judge_download_error(error, hours, 6.0) == verdict


def _holds(v: Verdict) -> None:
    assert isinstance(v, Verdict)
    assert v.valid == (v.output is not None)
    assert v.error_type is None or v.error_type
    for n in (v.prompt_tokens, v.output_tokens, v.total_tokens):
        assert isinstance(n, int) and 0 <= n <= MAX_TOKEN_COUNT
    assert len(v.excerpt) <= 200


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_get_a_verdict(line: bytes) -> None:
    _holds(judge_line(line, PageExtraction))


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_gets_a_verdict_as_a_line_and_decoded(value: Any) -> None:
    _holds(judge_line(msgspec.json.encode(value), PageExtraction))
    _holds(judge("k", value, PageExtraction))


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["promptTokenCount", "candidatesTokenCount", "totalTokenCount"]),
        json_values,
    ),
    json_values,
)
def test_any_usage_and_candidate_shapes_get_a_verdict(usage: Any, candidate: Any) -> None:
    line = {"key": "k", "response": {"candidates": [candidate], "usageMetadata": usage}}
    _holds(judge_line(msgspec.json.encode(line), PageExtraction))


# --- inline responses (dest.inlined_responses): the same cap and the same judge ----------------


def test_a_valid_inline_response_validates() -> None:
    v = judge_inline({"key": "k", "response": response()}, PageExtraction)
    assert v.valid and v.key == "k" and v.prompt_tokens == 10


def test_an_inline_response_over_the_line_cap_fails_naming_its_re_encoded_size() -> None:
    line = {"key": "k", "response": {"pad": "x" * 5000}}
    size = len(msgspec.json.encode(line))
    v = judge_inline(line, PageExtraction, max_line_bytes=4096)
    assert (v.key, v.error_type) == ("k", "result_line_too_large")
    assert f"{size:,} bytes (max_result_line_bytes 4,096)" in v.message
    assert judge_inline(line, PageExtraction, max_line_bytes=size).error_type != (
        "result_line_too_large"
    )


@pytest.mark.parametrize(
    ("line", "key", "error_type"),
    [
        ({"key": "k", "response": "a string"}, "k", "malformed_result_line"),
        ({"key": "k", "response": {"candidates": [7]}}, "k", "malformed_result_line"),
        ({"key": "k", "error": "boom"}, "k", "malformed_result_line"),
        (
            {"key": "k", "response": {"candidates": [], "usageMetadata": {"promptTokenCount": -1}}},
            "k",
            "bad_usage_metadata",
        ),
        ({"key": "k", "response": {"x": object()}}, "k", "malformed_result_line"),  # not JSON
        ("not an object", "", "malformed_result_line"),
        ({"response": response()}, "", "malformed_result_line"),  # no key
    ],
    ids=[
        "response-string",
        "candidate-number",
        "error-string",
        "bad-tokens",
        "a-set",
        "str",
        "no-key",
    ],
)
def test_an_odd_inline_response_fails_with_its_own_type(
    line: Any, key: str, error_type: str
) -> None:
    v = judge_inline(line, PageExtraction)
    assert (v.key, v.error_type) == (key, error_type)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_any_inline_value_gets_a_verdict(value: Any) -> None:
    _holds(judge_inline(value, PageExtraction, max_line_bytes=200))
    _holds(judge_inline({"key": "k", "response": value}, PageExtraction, max_line_bytes=200))
