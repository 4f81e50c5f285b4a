"""The emulator's prompt-token bill (:mod:`gemini_emulator.billing`): text at 4 characters a
token, each image or PDF part by the model table's row for the job's model at the line's media
resolution (a part's own level first), files' bytes by their id."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from commands.models import TABLE
from gemini_emulator.billing import prompt_tokens, resolution_of
from tests.media import one_page_pdf, png

PROMPT = "Extract the page as JSON, please."  # 33 characters: 8 tokens billed
IMAGE = png(1000, 700)  # 2 x 1 tiles under the Gemini 2.x rule


def inline(data: bytes, mime: str, level: str = "") -> dict[str, Any]:
    part: dict[str, Any] = {
        "inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}
    }
    if level:
        part["mediaResolution"] = {"level": level}
    return part


def request(*parts: dict[str, Any], resolution: str = "") -> dict[str, Any]:
    generation = {"mediaResolution": resolution} if resolution else {}
    return {
        "contents": [{"role": "user", "parts": [{"text": PROMPT}, *parts]}],
        "generationConfig": generation,
    }


def no_files(file_id: str) -> bytes | None:
    return None


@pytest.mark.parametrize(
    ("value", "resolution"),
    [
        ("MEDIA_RESOLUTION_LOW", "low"),
        ("MEDIA_RESOLUTION_MEDIUM", "medium"),
        ("MEDIA_RESOLUTION_HIGH", "high"),
        ("MEDIA_RESOLUTION_UNSPECIFIED", "unspecified"),
        ("MEDIA_RESOLUTION_ULTRA_HIGH", "unspecified"),  # not a generationConfig level
        ({"level": "MEDIA_RESOLUTION_LOW"}, "low"),
        (None, "unspecified"),
        ("", "unspecified"),
    ],
)
def test_the_wire_names_of_media_resolution(value: object, resolution: str) -> None:
    assert resolution_of(value) == resolution


@pytest.mark.parametrize("wire", ["", "LOW", "MEDIUM", "HIGH"])
@pytest.mark.parametrize("model", ["models/gemini-3-flash-preview", "models/gemini-2.5-flash"])
def test_a_page_is_billed_the_table_figure_plus_its_text(model: str, wire: str) -> None:
    row = TABLE.row(model)
    assert row is not None
    resolution = wire.lower() or "unspecified"
    sent = f"MEDIA_RESOLUTION_{wire}" if wire else ""
    text = len(PROMPT) // 4
    image, page = row.image.at(resolution), row.pdf.at(resolution)
    want_image = image if isinstance(image, int) else 2 * TABLE.tile_rule.tokens  # 2 x 1 tiles
    assert isinstance(page, int)
    assert prompt_tokens(request(inline(IMAGE, "image/png"), resolution=sent), model, no_files) == (
        text + want_image
    )
    pdf = request(inline(one_page_pdf(), "application/pdf"), resolution=sent)
    assert prompt_tokens(pdf, model, no_files) == text + page


def test_a_parts_own_level_wins_and_files_are_read_by_id() -> None:
    model = "models/gemini-3-pro-preview"
    low_part = inline(IMAGE, "image/png", level="MEDIA_RESOLUTION_LOW")
    both = request(low_part, inline(IMAGE, "image/png"), resolution="MEDIA_RESOLUTION_HIGH")
    assert prompt_tokens(both, model, no_files) == len(PROMPT) // 4 + 280 + 1120
    by_uri = {"fileData": {"fileUri": "https://x/v1beta/files/abc", "mimeType": "image/png"}}
    seen: list[str] = []

    def files(file_id: str) -> bytes | None:
        seen.append(file_id)
        return IMAGE

    assert prompt_tokens(request(by_uri), "models/gemini-2.5-flash", files) == 8 + 2 * 258
    assert seen == ["abc"]


def test_text_alone_and_an_unknown_model() -> None:
    assert prompt_tokens(request(), "models/gemini-3-flash-preview", no_files) == 8
    # A model the table does not know: its default rule (the 2.x tiles at any resolution).
    unknown = request(inline(IMAGE, "image/png"), resolution="MEDIA_RESOLUTION_LOW")
    assert prompt_tokens(unknown, "models/some-future-model", no_files) == 8 + 2 * 258
