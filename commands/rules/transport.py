"""How each page image reaches the model, and where a request file is cut (pure).

``inline``: the image is base64 inside its JSONL request line (no upload, nothing to delete);
``file_api``: it is uploaded and its line names the file's URI. A batch is ``inline``,
``file_api`` or ``mixed`` by the images it carries.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import msgspec

Mode = Literal["auto", "inline", "file_api"]
Transport = Literal["inline", "file_api"]


class Route(msgspec.Struct, frozen=True):
    """Where one image goes: ``transport``, or None with ``reason`` when it cannot go at all."""

    transport: Transport | None
    reason: str = ""


def base64_bytes(size: int) -> int:
    """How many bytes ``size`` bytes take as base64."""
    return 4 * ((size + 2) // 3)


def route_image(
    mode: Mode, size: int, *, inline_max: int, file_max: int, request_max: int
) -> Route:
    """The transport of an image of ``size`` bytes under ``mode``: ``auto`` sends it inline up to
    ``inline_max`` (and while its base64 fits a request file of ``request_max``), through the
    File API above; an image too big for the transports the mode allows is refused, its size in
    the reason."""
    encoded = base64_bytes(size)
    if mode != "file_api" and size <= inline_max and encoded <= request_max:
        return Route("inline")
    if mode == "inline":
        if size > inline_max:
            why = f"{size} > {inline_max} bytes, [uploads] inline_image_max_bytes"
        else:
            why = f"{size} bytes, {encoded} as base64 > {request_max}, max_request_file_bytes"
        return Route(None, f"too big to send inline ({why}; image_transport is inline)")
    if size > file_max:
        return Route(None, f"larger than the File API limit ({size} > {file_max} bytes)")
    return Route("file_api")


def batch_transport(transports: Iterable[Transport]) -> str:
    """``inline``, ``file_api`` or ``mixed``: what a batch's images used (``file_api`` if none)."""
    seen = set(transports)
    if len(seen) > 1:
        return "mixed"
    return seen.pop() if seen else "file_api"


def starts_new_file(used_bytes: int, line_bytes: int, max_bytes: int) -> bool:
    """Whether a line of ``line_bytes`` goes into a new request file: the current one holds
    ``used_bytes`` (0: empty, and a line always fits an empty file) and may not pass
    ``max_bytes``."""
    return used_bytes > 0 and used_bytes + line_bytes > max_bytes


def line_too_big(line_bytes: int, max_bytes: int) -> str | None:
    """Why a request line cannot go into any request file (None if it can)."""
    if line_bytes > max_bytes:
        return (
            f"its request line is {line_bytes} bytes, more than a request file may hold "
            f"({max_bytes} bytes, [uploads] max_request_file_bytes)"
        )
    return None
