"""Judging result lines: pure functions from one JSONL line to a verdict, and from verdicts plus
failure counts to events. No I/O here.

Error types (the ``error_type`` of ``RecordFailed``):

``missing_line``   the job succeeded but had no line for the record
``error_line``     the line is an error (``{"key", "error": {...}}``)
``unparseable_line`` the line itself is not JSON (a truncated result file)
``no_candidates``  a response without candidates
``finish_<reason>`` a non-STOP finish (``finish_safety``, ``finish_recitation``,
                   ``finish_max_tokens``)
``empty_text``     a STOP finish with no text
``invalid_json``   the text is not JSON
``schema_violation`` JSON that does not validate against the output schema
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ValidationError

from eventlog.events import Event, RecordDeadLettered, RecordFailed, RecordValidated

EXCERPT_CHARS = 200


class Verdict(msgspec.Struct, frozen=True):
    """What one record's result came to. ``output`` is the JSON to write when it is valid."""

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


def _usage(response: dict[str, Any]) -> tuple[int, int, int]:
    usage = response.get("usageMetadata") or response.get("usage_metadata") or {}

    def get(*names: str) -> int:
        for n in names:
            if usage.get(n) is not None:
                return int(usage[n])
        return 0

    prompt = get("promptTokenCount", "prompt_token_count")
    output = get("candidatesTokenCount", "candidates_token_count") + get(
        "thoughtsTokenCount", "thoughts_token_count"
    )
    total = get("totalTokenCount", "total_token_count") or prompt + output
    return prompt, output, total


def judge(key: str, line: dict[str, Any] | None, schema: type[BaseModel]) -> Verdict:
    """The verdict on one result line (``None``: the job had no line for this key)."""
    if line is None:
        return Verdict(key, "missing_line", "the succeeded job has no result line for this record")
    if line.get("error"):
        err = line["error"]
        text = f"{err.get('code', '?')} {err.get('status', '')}: {err.get('message', '')}"
        return Verdict(key, "error_line", text.replace("  ", " ").strip())
    response = line.get("response") or {}
    prompt, output, total = _usage(response)

    def verdict(
        error_type: str | None, message: str = "", excerpt: str = "", out: bytes | None = None
    ) -> Verdict:
        return Verdict(key, error_type, message, excerpt, out, prompt, output, total)

    candidates = response.get("candidates") or []
    if not candidates:
        feedback = response.get("promptFeedback") or response.get("prompt_feedback") or {}
        reason = feedback.get("blockReason") or feedback.get("block_reason") or ""
        return verdict("no_candidates", f"the response has no candidates {reason}".strip())
    first = candidates[0]
    finish = str(first.get("finishReason") or first.get("finish_reason") or "STOP").upper()
    parts = (first.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if not p.get("thought"))
    if finish != "STOP":
        return verdict(f"finish_{finish.lower()}", f"finish reason {finish}", text[:EXCERPT_CHARS])
    if not text.strip():
        return verdict("empty_text", "finish reason STOP but no text")
    excerpt = text[:EXCERPT_CHARS]
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError as e:
        return verdict("invalid_json", f"not JSON: {e}", excerpt)
    try:
        model = schema.model_validate(data)
    except ValidationError as e:
        first_error = e.errors()[0]
        where = ".".join(str(p) for p in first_error["loc"]) or "(root)"
        more = e.error_count() - 1
        message = f"{where}: {first_error['msg']}" + (f" (+{more} more)" if more else "")
        return verdict("schema_violation", message, excerpt)
    return verdict(None, out=model.model_dump_json(indent=2).encode() + b"\n")


def decide(
    batch_id: str,
    verdicts: list[Verdict],
    written: dict[str, tuple[str, str]],
    failure_counts: dict[str, int],
    max_retries: int,
    model: str = "",
) -> list[Event]:
    """The events for a chunk of verdicts (pure).

    ``written`` maps each valid key to (output path, sha256) after its file was written;
    ``failure_counts`` holds the counts before this chunk. A failure that brings a record to
    ``max_retries`` also dead-letters it.
    """
    events: list[Event] = []
    for v in verdicts:
        if v.valid:
            path, digest = written[v.key]
            events.append(
                RecordValidated(
                    record_key=v.key,
                    batch_id=batch_id,
                    output_path=path,
                    output_sha256=digest,
                    prompt_tokens=v.prompt_tokens,
                    output_tokens=v.output_tokens,
                    total_tokens=v.total_tokens,
                    model=model,
                )
            )
            continue
        events.append(
            RecordFailed(
                record_key=v.key,
                batch_id=batch_id,
                error_type=v.error_type or "unknown",
                message=v.message,
                excerpt=v.excerpt,
                prompt_tokens=v.prompt_tokens,
                output_tokens=v.output_tokens,
                total_tokens=v.total_tokens,
                model=model,
            )
        )
        count = failure_counts.get(v.key, 0) + 1
        failure_counts[v.key] = count
        if count >= max_retries:
            events.append(
                RecordDeadLettered(record_key=v.key, failures=count, max_retries=max_retries)
            )
    return events
