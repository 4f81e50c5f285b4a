"""What the emulated "model" bills a request's prompt: its text at 4 characters a token (each
text part's length // 4, as before the model table), plus each image or PDF part's media tokens
by the pipeline's own model table (:mod:`commands.models`) for the job's model at the line's
``generationConfig.mediaResolution`` (a part's own ``mediaResolution.level``, Gemini 3's per-part
setting, wins over it). A model the table does not know is billed by the table's default rule.

The table is the one the estimator reads, so an estimate and the emulator's bill for a page's
media agree by construction; what they can differ by is text: the estimator counts the prompt
and the response schema at 4 characters a token (rounded up), the emulator bills the text parts
only (rounded down, each).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from commands.models import TABLE
from commands.rules.tokens import HEADER_BYTES, MediaKind, image_size, media_tokens

#: A file's bytes by its id (None: no such file), for ``fileData`` parts.
FileBytes = Callable[[str], bytes | None]

PDF = "application/pdf"


def resolution_of(value: Any) -> str:
    """``MEDIA_RESOLUTION_LOW`` (or a part's ``{"level": ...}``) as the table's ``low``;
    anything else (unset, ``MEDIA_RESOLUTION_UNSPECIFIED``, unknown) as ``unspecified``."""
    if isinstance(value, dict):
        value = value.get("level")
    name = str(value or "").upper().removeprefix("MEDIA_RESOLUTION_").lower()
    return name if name in ("low", "medium", "high") else "unspecified"


def prompt_tokens(request: dict[str, Any], model: str, file_bytes: FileBytes) -> int:
    """``request``'s (keys camelCase) prompt tokens as the model bills them for ``model``."""
    row = TABLE.row(model) or TABLE.default
    generation = request.get("generationConfig") or {}
    default = resolution_of(generation.get("mediaResolution"))
    total = 0
    for content in request.get("contents", []):
        for part in content.get("parts", []):
            total += len(part.get("text", "")) // 4
            media = _media(part, file_bytes)
            if media is not None:
                kind, data = media
                level = part.get("mediaResolution")
                resolution = resolution_of(level) if level else default
                size = image_size(data[:HEADER_BYTES]) if kind == "image" else None
                total += media_tokens(row, resolution, kind, size)
    return total


def _media(part: dict[str, Any], file_bytes: FileBytes) -> tuple[MediaKind, bytes] | None:
    """The part's kind and bytes (empty when they cannot be had), or None for a text part."""
    if "inlineData" in part:
        blob = part["inlineData"] or {}
        try:
            data = base64.b64decode(str(blob.get("data", "")))
        except (ValueError, binascii.Error):
            data = b""
        return _kind(str(blob.get("mimeType", ""))), data
    if "fileData" in part:
        ref = part["fileData"] or {}
        uri = str(ref.get("fileUri", ""))
        file_id = uri.rsplit("/files/", 1)[-1] if "/files/" in uri else uri.removeprefix("files/")
        return _kind(str(ref.get("mimeType", ""))), file_bytes(file_id) or b""
    return None


def _kind(mime_type: str) -> MediaKind:
    return "pdf" if mime_type == PDF else "image"
