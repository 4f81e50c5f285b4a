"""Media files for the tests of media tokens: a PNG of any size (quick to make: its header is
what the estimator reads) and a one-page PDF."""

from __future__ import annotations

import io
import struct
import zlib

from pypdf import PdfWriter


def png(width: int, height: int) -> bytes:
    """A white grayscale PNG of ``width`` x ``height`` pixels."""
    raw = zlib.compress(b"".join(b"\x00" + b"\xff" * width for _ in range(height)))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def one_page_pdf() -> bytes:
    """A PDF of one blank Letter page (pypdf)."""
    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
