"""The Gemini request-line format: one line of a batch's JSONL request file (pure, no I/O).

A line is ``{"key": <record key>, "request": <GenerateContentRequest>}``: the prompt, the previous
page's extraction when it is sent as context, then the image, inline as base64 ``inlineData`` or
by its File API URI (``fileData``), and a ``generationConfig`` asking for JSON that follows the
output schema's ``responseJsonSchema`` (../shared/GEMINI_WIRE.md, "Structured output and images").
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

__all__ = ["context_part", "file_part", "inline_part", "request_line"]

Part = dict[str, Any]


def inline_part(mime_type: str, data: bytes) -> Part:
    """An image carried in the line itself, base64."""
    return {"inlineData": {"mimeType": mime_type, "data": base64.b64encode(data).decode()}}


def file_part(uri: str, mime_type: str) -> Part:
    """An image uploaded to the File API, named by its URI."""
    return {"fileData": {"fileUri": uri, "mimeType": mime_type}}


def context_part(previous_key: str, extraction: str) -> Part:
    """The previous page's extraction, sent before the image (``context_previous_page``)."""
    return {
        "text": f"For context, the extraction of the previous page ({previous_key}):\n{extraction}"
    }


def request_line(
    key: str,
    prompt: str,
    parts: list[Part],
    response_json_schema: dict[str, Any],
    *,
    max_output_tokens: int | None = None,
    temperature: float | None = None,
    media_resolution: str = "unspecified",
) -> bytes:
    """The JSONL line (newline included) asking for record ``key``: the ``prompt``, then
    ``parts`` (context, image), answered as JSON following ``response_json_schema``, in at
    most ``max_output_tokens`` tokens, at ``temperature``, seeing images at
    ``media_resolution`` (each left out when None or ``unspecified``: the model's own)."""
    generation: dict[str, Any] = {
        "responseMimeType": "application/json",
        "responseJsonSchema": response_json_schema,
    }
    if max_output_tokens is not None:
        generation["maxOutputTokens"] = max_output_tokens
    if temperature is not None:
        generation["temperature"] = temperature
    if media_resolution != "unspecified":
        generation["mediaResolution"] = f"MEDIA_RESOLUTION_{media_resolution.upper()}"
    request = {
        "contents": [{"role": "user", "parts": [{"text": prompt}, *parts]}],
        "generationConfig": generation,
    }
    return msgspec.json.encode({"key": key, "request": request}) + b"\n"
