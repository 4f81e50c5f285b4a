"""Helpers of the dashboard tests: the demo's database, Datasette's own test client, a served
dashboard in a subprocess, and a PNG decoder (stdlib zlib) to tell a blank screenshot."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from commands.config import Config
from commands.integrations import dashboard
from tests.conftest import ROOT


def get_all(config: Config, paths: list[str]) -> list[tuple[int, str]]:
    """(status, body) of each path, through Datasette's own test client (one event loop)."""

    async def main() -> list[tuple[int, str]]:
        ds = dashboard.make_datasette(config)
        await ds.invoke_startup()
        out = []
        for path in paths:
            r = await ds.client.get(path)
            out.append((r.status_code, r.text))
        return out

    return asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def served(config_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m commands dashboard`` in a subprocess; yields its base URL once it answers."""
    port = free_port()
    log = config_path.parent / f"dashboard-{port}.err"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "commands",
            "--config",
            str(config_path),
            "dashboard",
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                fetch_json(f"{base}/-/versions.json")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not start: {log.read_text()}") from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """(width, height, bytes per pixel, raw unfiltered rows) of an 8-bit RGB/RGBA/gray PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (0, 2, 6), (depth, color)
    bpp = {0: 1, 2: 3, 6: 4}[color]
    raw, stride = zlib.decompress(idat), width * bpp
    out, prev = bytearray(), bytearray(stride)
    for y in range(height):
        kind, line = (
            raw[y * (stride + 1)],
            bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        out += line
        prev = line
    return width, height, bpp, bytes(out)


def colour_variance(data: bytes) -> tuple[float, int]:
    """(variance of the grey level, distinct colours) over a PNG's pixels."""
    _, _, bpp, pixels = png_pixels(data)
    greys = [
        sum(pixels[i : i + 3]) / 3 if bpp >= 3 else pixels[i] for i in range(0, len(pixels), bpp)
    ]
    mean = sum(greys) / len(greys)
    colours = {pixels[i : i + 3] for i in range(0, len(pixels), bpp * 7)}
    return sum((g - mean) ** 2 for g in greys) / len(greys), len(colours)
