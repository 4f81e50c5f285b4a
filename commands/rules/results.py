"""Judging result lines: pure functions from one JSONL line to a verdict (the events a chunk of
verdicts makes are :mod:`commands.rules.collect`'s). No I/O here.

:func:`judge_line` takes the raw bytes of one line of a result file and :func:`judge` a line
already decoded (an inline response); both never raise, whatever they are given (a test feeds
them arbitrary bytes and JSON values), and always return a :class:`Verdict`.

Error types (the ``error_type`` of ``RecordFailed``):

``missing_line``   the job succeeded but had no line for the record
``error_line``     the line is an error (``{"key", "error": {...}}``)
``unparseable_line`` the line itself is not JSON (a truncated result file)
``result_not_utf8`` the line's bytes are not UTF-8
``result_too_deep`` the line (or the JSON text the model wrote) is nested too deeply to read
``result_line_too_large`` the line is longer than ``[results] max_result_line_bytes``
``malformed_result_line`` JSON, but not the wire format's shape (a ``response``, ``error``,
                   candidate, content or part that is not an object, a text that is not a string)
``bad_usage_metadata`` a ``usageMetadata`` token count that is not an integer in
                   ``0..MAX_TOKEN_COUNT`` (a string, a float, a bool, negative, astronomical)
``no_candidates``  a response without candidates
``finish_<reason>`` a non-STOP finish (``finish_safety``, ``finish_recitation``,
                   ``finish_max_tokens``)
``empty_text``     a STOP finish with no text
``invalid_json``   the text is not JSON
``schema_violation`` JSON that does not validate against the output schema
``output_too_large`` the output to write is longer than ``[results] max_output_bytes``

Token counts are only ever taken as they are when they are integers in ``0..MAX_TOKEN_COUNT``;
anything else fails the line (``bad_usage_metadata``) and is recorded clamped into that range
(not an integer: 0), so no count from the service reaches the cost or the estimator unbounded.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

EXCERPT_CHARS = 200
#: The largest token count believed of one response (Gemini's context is ~2M tokens).
MAX_TOKEN_COUNT = 10_000_000
#: Defaults of ``[results] max_result_line_bytes`` and ``max_output_bytes``.
MAX_RESULT_LINE_BYTES = 8 * 1024 * 1024
MAX_OUTPUT_BYTES = 8 * 1024 * 1024
_KEY_IN_LINE = re.compile(rb'"key"\s*:\s*"((?:[^"\\]|\\.){1,1000})"')


class Verdict(msgspec.Struct, frozen=True):
    """What one record's result came to. ``output`` is the JSON to write when it is valid.
    ``key`` is "" for a line from which no key could be read (it is counted, not recorded)."""

    key: str
    error_type: str | None
    message: str = ""
    excerpt: str = ""
    output: bytes | None = None
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    @property
    def valid(self) -> bool:
        return self.error_type is None


class _Malformed(Exception):
    """Raised inside :func:`_judge` for a line that is not the wire format's shape."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def _excerpt(raw: bytes | str) -> str:
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    return text[:EXCERPT_CHARS]


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Malformed("malformed_result_line", f"{what} is {_kind(value)}, not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Malformed("malformed_result_line", f"{what} is {_kind(value)}, not a list")
    return value


def _kind(value: Any) -> str:
    return {
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "an object",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _count(usage: dict[str, Any], *names: str) -> tuple[int, str]:
    """A token count clamped into ``0..MAX_TOKEN_COUNT``, and what was wrong with it ("" if
    nothing)."""
    for n in names:
        value = usage.get(n)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            return 0, f"usageMetadata.{n} is {_kind(value)}, not an integer"
        if value < 0:
            return 0, f"usageMetadata.{n} is negative ({value})"
        if value > MAX_TOKEN_COUNT:
            return MAX_TOKEN_COUNT, f"usageMetadata.{n} is above {MAX_TOKEN_COUNT:,}"
        return value, ""
    return 0, ""


def usage_of(response: dict[str, Any]) -> tuple[tuple[int, int, int], str]:
    """(prompt, output, total) tokens, each clamped into ``0..MAX_TOKEN_COUNT``, and what was
    wrong with the counts ("" if nothing)."""
    usage = response.get("usageMetadata")
    if usage is None:
        usage = response.get("usage_metadata")
    if usage is None:
        return (0, 0, 0), ""
    if not isinstance(usage, dict):
        return (0, 0, 0), f"usageMetadata is {_kind(usage)}, not an object"
    prompt, p_err = _count(usage, "promptTokenCount", "prompt_token_count")
    cands, c_err = _count(usage, "candidatesTokenCount", "candidates_token_count")
    thoughts, t_err = _count(usage, "thoughtsTokenCount", "thoughts_token_count")
    total, s_err = _count(usage, "totalTokenCount", "total_token_count")
    output = min(cands + thoughts, MAX_TOKEN_COUNT)
    total = total or min(prompt + output, MAX_TOKEN_COUNT)
    return (prompt, output, total), p_err or c_err or t_err or s_err


def key_of(raw: bytes) -> str:
    """The record key a raw line names, read without decoding it ("" if none is found)."""
    m = _KEY_IN_LINE.search(raw[: 64 * 1024])
    if m is None:
        return ""
    try:
        key = msgspec.json.decode(b'"' + m.group(1) + b'"')
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return m.group(1).decode("utf-8", errors="replace")
    return key if isinstance(key, str) else ""


#: What each non-STOP finish reason the SDK knows means, in one line (others: "not documented").
FINISH_MEANINGS = {
    "MAX_TOKENS": "the answer was cut at the output limit (maxOutputTokens)",
    "SAFETY": "the answer was stopped by the safety filters",
    "RECITATION": "the answer was stopped as a possible recitation of a source",
    "LANGUAGE": "the answer was flagged for an unsupported language",
    "OTHER": "the model stopped for a reason it does not say",
    "BLOCKLIST": "the answer contained a term from a configured blocklist",
    "PROHIBITED_CONTENT": "the answer may hold prohibited content",
    "SPII": "the answer may hold sensitive personal information",
    "MALFORMED_FUNCTION_CALL": "the model wrote a function call that cannot be parsed",
    "MALFORMED_RESPONSE": "the model's response was malformed",
    "UNEXPECTED_TOOL_CALL": "the model called a tool it was not given",
    "TOO_MANY_TOOL_CALLS": "the model made too many tool calls",
    "IMAGE_SAFETY": "a generated image was stopped by the safety filters",
    "FINISH_REASON_UNSPECIFIED": "the service gave no finish reason",
}
#: The hint a cut answer's failure carries: what the retry does, and the key to raise.
MAX_TOKENS_HINT = (
    "; its retry asks for twice the output limit (up to [gemini] max_output_tokens_ceiling): "
    "if many pages are cut, raise [gemini] max_output_tokens"
)


def finish_message(finish: str) -> str:
    """The failure message of a non-STOP finish: the reason, what it means, and for a cut
    answer what is done about it."""
    reason = finish[:100]
    meaning = FINISH_MEANINGS.get(reason, "a finish reason this tool does not know")
    return f"finish reason {reason}: {meaning}" + (
        MAX_TOKENS_HINT if reason == "MAX_TOKENS" else ""
    )


def judge_line(
    raw: bytes,
    schema: type[BaseModel],
    *,
    max_line_bytes: int = MAX_RESULT_LINE_BYTES,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
    size: int | None = None,
) -> Verdict:
    """The verdict on one raw line of a result file (never raises). ``size`` is the line's
    length when ``raw`` holds only its head (a line too long to read whole)."""
    length = len(raw) if size is None else size
    if length > max_line_bytes:
        return Verdict(
            key_of(raw),
            "result_line_too_large",
            f"the result line is {length:,} bytes (max_result_line_bytes {max_line_bytes:,})",
            _excerpt(raw),
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Verdict(
            key_of(raw),
            "result_not_utf8",
            f"not UTF-8: {e.reason} at byte {e.start}",
            _excerpt(raw),
        )
    try:
        line = msgspec.json.decode(raw)
    except RecursionError:
        return Verdict(
            key_of(raw), "result_too_deep", "the result line is nested too deeply", _excerpt(raw)
        )
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        return Verdict(
            key_of(raw),
            "unparseable_line",
            f"the result line is not valid JSON: {e}",
            _excerpt(raw),
        )
    if not isinstance(line, dict):
        return Verdict(
            key_of(raw),
            "malformed_result_line",
            f"the result line is {_kind(line)}, not an object",
            _excerpt(raw),
        )
    key = line.get("key")
    if isinstance(key, bool) or not isinstance(key, str | int):
        return Verdict(
            key_of(raw), "malformed_result_line", "the result line has no string key", _excerpt(raw)
        )
    return judge(str(key), line, schema, max_output_bytes=max_output_bytes)


def judge_inline(
    line: Any,
    schema: type[BaseModel],
    *,
    max_line_bytes: int = MAX_RESULT_LINE_BYTES,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> Verdict:
    """The verdict on one inline response (a line the SDK already decoded, from
    ``dest.inlined_responses``): re-encoded and judged by :func:`judge_line`, so it meets the
    same size cap (its re-encoded size) and the same judge as a line of a result file. Never
    raises."""
    try:
        raw = msgspec.json.encode(line)
    except (TypeError, ValueError, RecursionError, OverflowError) as e:
        key = line.get("key") if isinstance(line, dict) else None
        return Verdict(
            key if isinstance(key, str) else "",
            "malformed_result_line",
            f"the inline response cannot be encoded as JSON: {type(e).__name__}",
        )
    return judge_line(raw, schema, max_line_bytes=max_line_bytes, max_output_bytes=max_output_bytes)


def judge(
    key: str,
    line: Any,
    schema: type[BaseModel],
    *,
    max_output_bytes: int = MAX_OUTPUT_BYTES,
) -> Verdict:
    """The verdict on one decoded result line (``None``: the job had no line for this key).
    Never raises: a line of any shape gets a verdict."""
    if line is None:
        return Verdict(key, "missing_line", "the succeeded job has no result line for this record")
    try:
        return _judge(key, line, schema, max_output_bytes)
    except _Malformed as e:
        return Verdict(key, e.error_type, e.message, _excerpt(_encoded(line)))
    except RecursionError:
        return Verdict(key, "result_too_deep", "the result is nested too deeply to read")


def _encoded(line: Any) -> bytes:
    try:
        return msgspec.json.encode(line)
    except (TypeError, ValueError, RecursionError, OverflowError):
        return b""


def _judge(key: str, line: Any, schema: type[BaseModel], max_output_bytes: int) -> Verdict:
    line = _object(line, "the result line")
    if line.get("error"):
        err = _object(line["error"], "error")
        text = f"{err.get('code', '?')} {err.get('status', '')}: {err.get('message', '')}"
        return Verdict(key, "error_line", text.replace("  ", " ").strip()[:1000])
    response = _object(line.get("response") or {}, "response")
    (prompt, output, total), bad_usage = usage_of(response)

    def verdict(
        error_type: str | None, message: str = "", excerpt: str = "", out: bytes | None = None
    ) -> Verdict:
        return Verdict(key, error_type, message, excerpt, out, prompt, output, total)

    if bad_usage:
        return verdict("bad_usage_metadata", bad_usage, _excerpt(_encoded(response)))
    candidates = _list(response.get("candidates") or [], "candidates")
    if not candidates:
        feedback = response.get("promptFeedback") or response.get("prompt_feedback") or {}
        reason: Any = ""
        if isinstance(feedback, dict):
            reason = feedback.get("blockReason") or feedback.get("block_reason") or ""
        reason = reason[:100] if isinstance(reason, str) else ""
        return verdict("no_candidates", f"the response has no candidates {reason}".strip())
    first = _object(candidates[0], "candidate 0")
    raw_finish = first.get("finishReason") or first.get("finish_reason") or "STOP"
    if not isinstance(raw_finish, str):
        raise _Malformed("malformed_result_line", f"finishReason is {_kind(raw_finish)}")
    finish = raw_finish.upper()
    content = _object(first.get("content") or {}, "candidate 0's content")
    parts = _list(content.get("parts") or [], "parts")
    texts: list[str] = []
    for i, p in enumerate(parts):
        part = _object(p, f"part {i}")
        if part.get("thought"):
            continue
        t = part.get("text", "")
        if not isinstance(t, str):
            raise _Malformed("malformed_result_line", f"part {i}'s text is {_kind(t)}")
        texts.append(t)
    text = "".join(texts)
    if finish != "STOP":
        label = re.sub(r"[^a-z0-9_]", "_", finish.lower())[:40]
        return verdict(f"finish_{label}", finish_message(finish), text[:EXCERPT_CHARS])
    if not text.strip():
        return verdict("empty_text", "finish reason STOP but no text")
    excerpt = text[:EXCERPT_CHARS]
    try:
        data = msgspec.json.decode(text)
    except RecursionError:
        return verdict("result_too_deep", "the JSON text is nested too deeply", excerpt)
    except (msgspec.DecodeError, UnicodeEncodeError) as e:
        return verdict("invalid_json", f"not JSON: {e}", excerpt)
    try:
        model = schema.model_validate(data)
    except ValidationError as e:
        first_error = e.errors()[0]
        where = ".".join(str(p) for p in first_error["loc"]) or "(root)"
        more = e.error_count() - 1
        message = f"{where}: {first_error['msg']}" + (f" (+{more} more)" if more else "")
        return verdict("schema_violation", message, excerpt)
    out = model.model_dump_json(indent=2).encode() + b"\n"
    if len(out) > max_output_bytes:
        return verdict(
            "output_too_large",
            f"the output is {len(out):,} bytes (max_output_bytes {max_output_bytes:,})",
            excerpt,
        )
    return verdict(None, out=out)
