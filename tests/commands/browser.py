"""Headless Chromium for the dashboard tests, and readers of the page it renders (``--dump-dom``):
the progress tiles, the table cards, and each chart's axis labels, bars, legends and texts."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
#: Where the README's screenshots are written when asked (DASHBOARD_SCREENSHOT=docs/dashboard.png:
#: the finished run there, the run in progress beside it as dashboard-running.png).
SCREENSHOT_ENV = "DASHBOARD_SCREENSHOT"


def find_chromium() -> str:
    """Chromium's path; skips the test without it (fails under ``CI``)."""
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if found:
        return found
    message = (
        "headless Chromium is not installed (Debian's `chromium` package: "
        "apt-get install -y chromium, as root; .ci/run installs it when missing)"
    )
    if os.environ.get("CI"):
        pytest.fail(message + ": CI must run the browser test")
    pytest.skip(message)


def headless(
    chromium: str, profile: Path, *args: str, size: str = "1000,1060"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={size}",
            "--virtual-time-budget=8000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )


def cards(dom: str) -> dict[str, str]:
    """Each card's rendered HTML, by chart name."""
    return {part.split('"', 1)[0]: part for part in dom.split('<div id="chart-')[1:]}


def tiles(card: str) -> dict[str, str]:
    """The progress card's tiles: label -> "value (note)", from each value's aria-label."""
    out = {}
    for label in re.findall(r'<text[^>]*aria-label="([^"]*)"', card):
        name, _, rest = html.unescape(label).partition(": ")
        out[name] = rest
    return out


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append("".join(self.cell))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def table(card: str) -> list[dict[str, str]]:
    """A table card's rows, as the browser shows them (text, entities decoded)."""
    parser = _Tables()
    parser.feed(card)
    header, *rows = parser.rows
    return [dict(zip(header, row, strict=True)) for row in rows]


def axis_labels(card: str) -> list[list[str]]:
    """Each axis's visible labels (Vega hides those that would overlap: opacity 0)."""
    out = []
    for group in re.findall(r'role-axis-label"[^>]*>(.*?)</g>', card):
        texts = re.findall(r"<text([^>]*)>(.*?)</text>", group)
        out.append([html.unescape(t) for attrs, t in texts if 'opacity="0"' not in attrs])
    return out


def bar_widths(card: str) -> list[float]:
    """The widths of the bars drawn (Vega's ``M x,y h w v h h -w Z`` paths)."""
    groups = re.findall(r'class="mark-rect role-mark[^"]*"[^>]*>(.*?)</g>', card)
    return [float(w) for g in groups for w in re.findall(r'd="M[-\d.]+,[-\d.]+h([\d.]+)v', g)]


def svg_width(card: str) -> float:
    found = re.search(r'<svg[^>]*\swidth="([\d.]+)"', card)
    assert found, "no chart drawn"
    return float(found.group(1))


def mark_texts(card: str) -> list[str]:
    """The texts a chart writes beside its marks (not its axes' nor its legend's)."""
    groups = re.findall(r'class="mark-text role-mark[^"]*"[^>]*>(.*?)</g>', card)
    return [html.unescape(t) for g in groups for t in re.findall(r"<text[^>]*>(.*?)</text>", g)]
