"""Table tests of the pure transport decisions (commands.rules.transport)."""

from __future__ import annotations

import pytest

from commands.rules.transport import (
    Mode,
    Route,
    Transport,
    batch_transport,
    line_too_big,
    route_image,
    starts_new_file,
)

INLINE_MAX, FILE_MAX, REQUEST_MAX = 100, 1000, 120


@pytest.mark.parametrize(
    ("mode", "size", "expected"),
    [
        ("auto", 1, Route("inline")),
        ("auto", 90, Route("inline")),
        ("auto", INLINE_MAX + 1, Route("file_api")),
        ("auto", FILE_MAX, Route("file_api")),
        (
            "auto",
            FILE_MAX + 1,
            Route(None, "larger than the File API limit (1001 > 1000 bytes)"),
        ),
        ("inline", 90, Route("inline")),
        (
            "inline",
            INLINE_MAX + 1,
            Route(
                None,
                "too big to send inline (101 > 100 bytes, [uploads] inline_image_max_bytes; "
                "image_transport is inline)",
            ),
        ),
        ("auto", 90, Route("inline")),  # 120 bytes of base64: exactly a request file
        ("auto", 91, Route("file_api")),  # 124 bytes of base64: no request file holds it
        (
            "inline",
            91,
            Route(
                None,
                "too big to send inline (91 bytes, 124 as base64 > 120, max_request_file_bytes; "
                "image_transport is inline)",
            ),
        ),
        ("file_api", 1, Route("file_api")),
        ("file_api", FILE_MAX, Route("file_api")),
        (
            "file_api",
            FILE_MAX + 1,
            Route(None, "larger than the File API limit (1001 > 1000 bytes)"),
        ),
    ],
)
def test_route_image(mode: Mode, size: int, expected: Route) -> None:
    route = route_image(
        mode, size, inline_max=INLINE_MAX, file_max=FILE_MAX, request_max=REQUEST_MAX
    )
    assert route == expected


@pytest.mark.parametrize(
    ("transports", "expected"),
    [
        ([], "file_api"),
        (["inline"], "inline"),
        (["inline", "inline"], "inline"),
        (["file_api"], "file_api"),
        (["inline", "file_api", "inline"], "mixed"),
    ],
)
def test_batch_transport(transports: list[Transport], expected: str) -> None:
    assert batch_transport(transports) == expected


@pytest.mark.parametrize(
    ("used", "line", "max_bytes", "expected"),
    [
        (0, 50, 100, False),  # an empty file takes any line
        (0, 150, 100, False),
        (50, 50, 100, False),  # exactly full
        (51, 50, 100, True),
        (99, 1, 100, False),
        (100, 1, 100, True),
    ],
)
def test_starts_new_file(used: int, line: int, max_bytes: int, expected: bool) -> None:
    assert starts_new_file(used, line, max_bytes) is expected


@pytest.mark.parametrize(
    ("line", "max_bytes", "expected"),
    [
        (100, 100, None),
        (
            101,
            100,
            "its request line is 101 bytes, more than a request file may hold "
            "(100 bytes, [uploads] max_request_file_bytes)",
        ),
    ],
)
def test_line_too_big(line: int, max_bytes: int, expected: str | None) -> None:
    assert line_too_big(line, max_bytes) == expected
