"""Token estimates before submission, and the token-aware admission of batches (pure, no I/O).

Media tokens come from the model table (:mod:`commands.models`, ``commands/models.toml`` with
its sources): :func:`media_tokens` takes the row of ``[gemini] model``, the ``media_resolution``,
the kind of page (an image or a PDF page) and the image's size. A figure is either a count a page
(Gemini 3: 280 / 560 / 1120 at low / medium / high) or Gemini 2.x's tile rule, :func:`image_tokens`:
"With Gemini 2.0, image inputs with both dimensions <=384 pixels are counted as 258 tokens. Images
larger in one or both dimensions are cropped and scaled as needed into tiles of 768x768 pixels,
each counted as 258 tokens" (https://ai.google.dev/gemini-api/docs/tokens, the multimodal
section; the same rule with its code at https://geminibyexample.com/027-calculate-input-tokens/),
its figures read from the table's ``[tile_rule]``. The dimensions come from the PNG, JPEG or WebP
header, read without decoding the image (:func:`image_size`); a header that is truncated or not
understood gives None and one tile (:data:`DEFAULT_IMAGE_TOKENS`), never an exception.

Text is estimated at 4 characters a token (the same page: "a token is equivalent to about 4
characters"). Output tokens are the running mean of the output billed so far for the model, or
:data:`DEFAULT_OUTPUT_TOKENS` (a constant) before any result was billed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from commands.models import TABLE, ModelRow, TileRule

#: The model table's tile rule (Gemini 2.x): tokens of one tile, and of a whole image whose both
#: sides are at most SMALL_IMAGE_MAX_SIDE.
TILE_RULE = TABLE.tile_rule
TILE_TOKENS = TILE_RULE.tokens
SMALL_IMAGE_MAX_SIDE = TILE_RULE.small_side
TILE_SIDE = TILE_RULE.side
#: An image whose header cannot be read: one tile (the cheapest published figure).
DEFAULT_IMAGE_TOKENS = TILE_TOKENS
#: What a page is, for its media tokens: an image, or a one-page PDF.
MediaKind = Literal["image", "pdf"]
#: Output tokens per page before any result of the model was billed.
DEFAULT_OUTPUT_TOKENS = 600
CHARS_PER_TOKEN = 4
#: How much of an image file the header reader is given (a JPEG's size can sit after its EXIF).
HEADER_BYTES = 64 * 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG), CC (DAC) are not frames.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})


def image_size(head: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from the first bytes of a PNG, JPEG or WebP file; None when the
    header is truncated, malformed, of another format, or says a side is 0."""
    if head.startswith(_PNG_SIGNATURE):
        size = _png(head)
    elif head.startswith(b"\xff\xd8"):
        size = _jpeg(head)
    elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        size = _webp(head)
    else:
        size = None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size


def _png(b: bytes) -> tuple[int, int] | None:
    if len(b) < 24 or b[12:16] != b"IHDR":
        return None
    return int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")


def _jpeg(b: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 1 < len(b):
        if b[i] != 0xFF:
            return None
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _JPEG_STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before it
            return None
        if i + 4 > len(b):
            return None
        length = int.from_bytes(b[i + 2 : i + 4], "big")
        if length < 2:
            return None
        if marker in _JPEG_SOF:
            if i + 9 > len(b):
                return None
            height = int.from_bytes(b[i + 5 : i + 7], "big")
            width = int.from_bytes(b[i + 7 : i + 9], "big")
            return width, height
        i += 2 + length
    return None


def _webp(b: bytes) -> tuple[int, int] | None:
    kind = b[12:16]
    if kind == b"VP8 ":  # lossy: a key frame's start code, then 14-bit sides
        if len(b) < 30 or b[23:26] != b"\x9d\x01\x2a":
            return None
        width = int.from_bytes(b[26:28], "little") & 0x3FFF
        height = int.from_bytes(b[28:30], "little") & 0x3FFF
        return width, height
    if kind == b"VP8L":  # lossless: a signature byte, then 14 bits each of side - 1
        if len(b) < 25 or b[20] != 0x2F:
            return None
        bits = int.from_bytes(b[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: 24 bits each of canvas side - 1
        if len(b) < 30:
            return None
        return int.from_bytes(b[24:27], "little") + 1, int.from_bytes(b[27:30], "little") + 1
    return None


def image_tokens(size: tuple[int, int] | None, rule: TileRule = TILE_RULE) -> int:
    """Input tokens of one image of ``size`` by the tile ``rule`` (module docstring); one tile
    when the size is unknown."""
    if size is None:
        return rule.tokens
    width, height = size
    if width <= rule.small_side and height <= rule.small_side:
        return rule.tokens
    return math.ceil(width / rule.side) * math.ceil(height / rule.side) * rule.tokens


def media_tokens(
    row: ModelRow, resolution: str, kind: MediaKind, size: tuple[int, int] | None
) -> int:
    """Input tokens of one page's media (an image of ``size``, or a PDF page) for the model of
    ``row`` at ``resolution`` (``unspecified``: the model's default), by the table's figure."""
    value = (row.pdf if kind == "pdf" else row.image).at(resolution)
    if isinstance(value, int):
        return value
    return image_tokens(size, row.tiles or TILE_RULE)  # "tiles"


def text_tokens(chars: int) -> int:
    """Tokens of ``chars`` characters of text, at :data:`CHARS_PER_TOKEN` (rounded up)."""
    return math.ceil(max(chars, 0) / CHARS_PER_TOKEN)


def output_tokens_per_page(results: int, output_tokens: int) -> int:
    """The running mean of billed output tokens per result, rounded up; the default before any."""
    if results <= 0:
        return DEFAULT_OUTPUT_TOKENS
    return math.ceil(output_tokens / results)


def admitted_pages(costs: Sequence[int], in_flight: int, limit: int) -> int:
    """How many pages from the head of a batch (their estimated tokens ``costs``, in order) may
    go now, with ``in_flight`` tokens estimated for the active batches and open intents and a
    ``limit`` of ``max_enqueued_tokens`` (0: no limit, all of them).

    The in-flight estimate plus the pages admitted stays at or under the limit: a batch bigger
    than the room left is cut down to fit. When nothing is in flight at least one page goes, so
    a single page bigger than the limit still gets through (alone). 0: hold the batch back.
    """
    if limit <= 0:
        return len(costs)
    room, total, n = limit - in_flight, 0, 0
    for cost in costs:
        if total + cost > room:
            break
        total, n = total + cost, n + 1
    if n == 0 and in_flight <= 0 and costs:
        return 1
    return n


def default_page_tokens(row: ModelRow, resolution: str, prompt_chars: int) -> tuple[int, int]:
    """A page's (input, output) tokens before any result is billed: one image of unknown size
    by ``row``'s figure at ``resolution``, the prompt's text, and the default output."""
    media = media_tokens(row, resolution, "image", None)
    return media + text_tokens(prompt_chars), DEFAULT_OUTPUT_TOKENS
