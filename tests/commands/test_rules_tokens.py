"""Table tests of the token rules: the image header reader on real bytes, Gemini's image token
rule, text and output estimates, and token-aware admission."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from commands.gemini.port import RemoteBatch
from commands.integrations.demo import png
from commands.rules.reconcile import reconcile
from commands.rules.submit import OpenIntent
from commands.rules.tokens import (
    DEFAULT_IMAGE_TOKENS,
    DEFAULT_OUTPUT_TOKENS,
    HEADER_BYTES,
    admitted_pages,
    image_size,
    image_tokens,
    output_tokens_per_page,
    text_tokens,
)
from commands.worker.dataset import probe_file
from eventlog.events import BatchSubmitted


def jpeg(width: int, height: int, *, exif: int = 0, marker: int = 0xC0) -> bytes:
    """A minimal JPEG header: SOI, an APP0 (JFIF), an optional APP1 of ``exif`` bytes, a DQT,
    then the frame header (``marker``) with the size; no scan data."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    app1 = b"\xff\xe1" + struct.pack(">H", exif + 2) + b"\x00" * exif if exif else b""
    dqt = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + bytes(range(64))
    sof = (
        bytes([0xFF, marker])
        + struct.pack(">HBHHB", 17, 8, height, width, 3)
        + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    )
    return b"\xff\xd8" + app0 + app1 + dqt + sof + b"\xff\xda\x00\x0c"


def riff(kind: bytes, payload: bytes) -> bytes:
    chunk = kind + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def webp_lossy(width: int, height: int) -> bytes:
    frame = b"\x10\x02\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height)
    return riff(b"VP8 ", frame + b"\x00" * 8)


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return riff(b"VP8L", b"\x2f" + struct.pack("<I", bits) + b"\x00" * 4)


def webp_extended(width: int, height: int) -> bytes:
    w, h = (width - 1).to_bytes(3, "little"), (height - 1).to_bytes(3, "little")
    return riff(b"VP8X", b"\x00\x00\x00\x00" + w + h)


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(8, 8, 1), (8, 8)),
        (png(600, 40, 2), (600, 40)),
        (png(17, 1000, 3), (17, 1000)),
        (jpeg(1700, 2200), (1700, 2200)),
        (jpeg(300, 200, marker=0xC2), (300, 200)),  # progressive
        (jpeg(2480, 3508, exif=20_000), (2480, 3508)),  # the size after a large EXIF
        (b"\xff\xd8\xff\xff" + jpeg(40, 50)[2:], (40, 50)),  # a fill byte before a marker
        (webp_lossy(1024, 768), (1024, 768)),
        (webp_lossless(16383, 1), (16383, 1)),
        (webp_extended(5000, 7000), (5000, 7000)),
    ],
)
def test_the_header_reader_finds_the_size(data: bytes, size: tuple[int, int]) -> None:
    assert image_size(data) == size


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n",  # signature only
        png(8, 8, 1)[:20],  # truncated IHDR
        png(8, 8, 1)[:12] + b"IDAT" + png(8, 8, 1)[16:],  # no IHDR first
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 0, 9),
        jpeg(1700, 2200)[:30],  # cut before the frame header
        jpeg(1700, 2200)[:-15],  # cut inside the frame header
        b"\xff\xd8\xff\xda\x00\x0c",  # a scan before any frame
        b"\xff\xd8\x00\x00\x00",  # garbage after SOI
        b"\xff\xd8\xff\xe0\x00\x01",  # a segment length below 2
        jpeg(0, 100),
        webp_lossy(100, 100)[:26],
        riff(b"VP8 ", b"\x10\x02\x00\x00\x00\x00" + b"\x00" * 12),  # no start code
        riff(b"VP8L", b"\x00" * 9),  # no signature byte
        riff(b"VP8X", b"\x00" * 4),  # truncated
        riff(b"ALPH", b"\x00" * 16),  # an unknown first chunk
        b"GIF89a\x10\x00\x10\x00",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
    ],
)
def test_an_odd_or_truncated_header_gives_none(data: bytes) -> None:
    assert image_size(data) is None


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        (None, DEFAULT_IMAGE_TOKENS),
        ((1, 1), 258),
        ((384, 384), 258),
        ((385, 384), 258),  # one tile of 768
        ((768, 768), 258),
        ((769, 768), 516),
        ((1024, 768), 516),
        ((1700, 2200), 3 * 3 * 258),
        ((2480, 3508), 4 * 5 * 258),
        ((100, 4000), 6 * 258),
    ],
)
def test_the_image_token_rule(size: tuple[int, int] | None, tokens: int) -> None:
    assert image_tokens(size) == tokens


@pytest.mark.parametrize(("chars", "tokens"), [(0, 0), (1, 1), (4, 1), (5, 2), (400, 100)])
def test_text_is_four_characters_a_token(chars: int, tokens: int) -> None:
    assert text_tokens(chars) == tokens


@pytest.mark.parametrize(
    ("results", "output", "tokens"),
    [(0, 0, DEFAULT_OUTPUT_TOKENS), (0, 999, DEFAULT_OUTPUT_TOKENS), (4, 400, 100), (3, 100, 34)],
)
def test_output_is_the_running_mean_or_the_default(results: int, output: int, tokens: int) -> None:
    assert output_tokens_per_page(results, output) == tokens


@pytest.mark.parametrize(
    ("costs", "in_flight", "limit", "admitted"),
    [
        ([100] * 5, 0, 0, 5),  # 0: off
        ([100] * 5, 10_000, 0, 5),
        ([100] * 5, 0, 1_000, 5),  # all fit
        ([100] * 5, 0, 500, 5),  # exactly at the limit
        ([100] * 5, 0, 499, 4),  # cut down to fit
        ([100] * 5, 250, 500, 2),
        ([100] * 5, 400, 500, 1),
        ([100] * 5, 401, 500, 0),  # no room: held back
        ([100] * 5, 600, 500, 0),  # over already (a bigger limit earlier): held back
        ([5_000, 10], 0, 500, 1),  # a single huge page goes alone when nothing is in flight
        ([5_000, 10], 1, 500, 0),  # ... but not beside anything
        ([10, 5_000, 10], 0, 500, 1),  # stops at the first page that does not fit
        ([], 0, 500, 0),
    ],
)
def test_admission(costs: list[int], in_flight: int, limit: int, admitted: int) -> None:
    assert admitted_pages(costs, in_flight, limit) == admitted


def test_read_head_of_a_missing_file_is_empty(tmp_path: Path) -> None:
    assert probe_file(str(tmp_path / "gone.png"), HEADER_BYTES).head == b""
    assert image_size(probe_file(str(tmp_path / "gone.png"), HEADER_BYTES).head) is None


def test_an_adopted_intent_carries_its_estimate_onto_the_batch() -> None:
    intent = OpenIntent("gb-r-001", "m", "files/req", ["k1", "k2"], estimated_tokens=2_120)
    job = RemoteBatch(name="batches/1", display_name="gb-r-001", state="JOB_STATE_RUNNING")
    (submitted,) = reconcile(intent, [job]).events
    assert isinstance(submitted, BatchSubmitted) and submitted.estimated_tokens == 2_120
