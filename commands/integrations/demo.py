"""``demo``: a small synthetic dataset through the built-in Gemini emulator, end to end.

Writes real PNG pages (standard library only) and a config into a folder, starts the emulator with
a mixed fault policy, and runs cycles until every page is written or dead-lettered:

* two pages answer badly once (invalid JSON, then a schema violation) and succeed on retry;
* one poison page always breaks the schema and is dead-lettered after ``max_retries``;
* the first batch job ends FAILED (its records are resubmitted, no failure counted);
* one upload would fail twice with a 503 before going through, were the pages sent through
  the File API (``[uploads] image_transport``): the default (``auto``: inline, for pages this
  small) uploads nothing, so the run shows no upload retry;
* a stray text file in the dataset is reported and skipped;
* one year is a PDF document (``Texas/Alamo/2023.pdf``, written here by hand as the PNGs
  are): each of its pages goes as a one-page PDF cut from it and is written as any page.
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from commands.errors import ConfigError
from commands.installation import command_prefix

if TYPE_CHECKING:
    from commands.config import Config
    from commands.views.status import Status
    from commands.worker.cycle import CycleSummary

MARKER = ".gemini-batches-demo"
#: The demo's folder when ``--dir`` is not given, and the config it writes there.
DEFAULT_DIR = Path("demo")
CONFIG_NAME = "gemini_batches.toml"
SCHOOLS = {
    "California": {"LincolnHigh": ["2023"], "RooseveltHigh": ["2022", "2023"]},
    "Texas": {"Alamo": ["2021", "2022"]},
}
PAGES = 4
#: A year given as one PDF document of DOCUMENT_PAGES pages instead of a folder of images.
DOCUMENT = ("Texas", "Alamo", "2023")
DOCUMENT_PAGES = 3
POISON = "California:LincolnHigh:2023:4"
FLAKY_UPLOAD = "Texas:Alamo:2022:1"

POLICY: dict[str, Any] = {
    "seed": 11,
    "timing": {"pending_seconds": 0.2, "running_seconds": 0.3},
    "records": [
        {"match": POISON, "outcome": "schema_violation"},
        {"match": "Texas:Alamo:2021:2", "outcome": "invalid_json", "times": 1},
        {"match": "California:RooseveltHigh:2022:3", "outcome": "schema_violation", "times": 1},
    ],
    "jobs": [{"nth": 1, "outcome": "FAILED"}],
    "faults": [{"endpoint": "files.upload", "match": FLAKY_UPLOAD, "times": 2, "status": 503}],
}


def png(width: int, height: int, seed: int) -> bytes:
    """A grayscale PNG that looks like a page of text (rows of dark dashes)."""
    rows = []
    for y in range(height):
        line_y = (y - 20) % 14
        row = bytearray(b"\xff" * width)
        if 20 <= y < height - 20 and line_y < 6:
            for x in range(16, width - 16):
                if (x * 7 + y * 3 + seed * 13) % 23 > 4:
                    row[x] = 40
        rows.append(b"\x00" + bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + chunk(b"IEND", b"")
    )


def text_pdf(pages: int) -> bytes:
    """A PDF of ``pages`` pages of text lines (one Helvetica font shared by all), written by
    hand as :func:`png` is: a catalog, a page tree, the font, then each page and its content."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {pages} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i in range(1, pages + 1):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (3 + 2 * i)
        )
        lines = " T* ".join(f"(Record {i}, line {n}: enrolment {1000 + n}) Tj" for n in range(60))
        stream = f"BT /F1 9 Tf 11 TL 36 756 Td {lines} ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (n, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def prepare(folder: Path) -> Path:
    """(Re)create ``folder`` with the dataset; returns the input root. Refuses to touch a
    non-empty folder the demo did not create."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise ConfigError(
                f"refusing to overwrite {folder}: it is not empty and was not "
                "made by the demo (choose another --dir)"
            )
        shutil.rmtree(folder)
    input_root = folder / "input"
    n = 0
    for state, schools in SCHOOLS.items():
        for school, years in schools.items():
            for year in years:
                for page in range(1, PAGES + 1):
                    n += 1
                    path = input_root / state / school / year / f"{page}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(png(160, 220, n))
    state, school, year = DOCUMENT
    (input_root / state / school / f"{year}.pdf").write_bytes(text_pdf(DOCUMENT_PAGES))
    (input_root / "Texas" / "Alamo" / "2021" / "notes.txt").write_text("scanner notes\n")
    (folder / MARKER).write_text("made by `python -m commands demo`; safe to delete\n")
    return input_root


def write_config(folder: Path, base_url: str) -> Path:
    config = folder / CONFIG_NAME
    config.write_text(f"""# Written by `python -m commands demo`. The emulator it pointed at is gone
# now, but every read-only command works: {_with_config(config)} status
[paths]
input_root = "input"
output_root = "output"
database = "data/gemini_batches.db"
reports_dir = "data/reports"

[gemini]
model = "gemini-2.5-flash"
api_key_env = "GEMINI_DEMO_API_KEY"
base_url = "{base_url}"

[batching]
batch_size = 8
max_active_batches = 3
max_retries = 3
poll_interval_seconds = 0.25

[uploads]
upload_retry_attempts = 3
upload_retry_backoff_seconds = 0.05
upload_concurrency = 8

[network]
api_retry_attempts = 3
api_retry_backoff_seconds = 0.05
request_timeout_seconds = 30
""")
    return config


def page_count() -> int:
    folders = sum(len(years) for schools in SCHOOLS.values() for years in schools.values())
    return folders * PAGES + DOCUMENT_PAGES


def demo_key() -> str:
    """A throwaway key for the local emulator (never a real one)."""
    return "demo-" + secrets.token_hex(8)


def _with_config(config_path: Path) -> str:
    return f"{command_prefix()} --config {shlex.quote(str(config_path))}"


def explore_command(config_path: Path) -> str:
    """What the demo suggests first: its failures, by the operator commands. Typed the way
    this installation needs (:func:`commands.installation.command_prefix`), as the next one."""
    return f"{_with_config(config_path)} analyze-failures --summary"


def dashboard_command(config_path: Path) -> str:
    """What the demo prints last: the dashboard over its database (the ``dashboard`` extra)."""
    return f"{_with_config(config_path)} dashboard --open"


@dataclass(frozen=True)
class DemoResult:
    """What a demo run left behind: its config, final status, report and wall time."""

    config: Config
    config_path: Path
    status: Status
    report_path: Path | None
    seconds: float


def run_demo(
    folder: Path,
    *,
    on_start: Callable[[Config, str], None] | None = None,
    on_cycle: Callable[[int, CycleSummary], None] | None = None,
) -> DemoResult:
    """Prepare ``folder`` (dataset + config), start the emulator with :data:`POLICY`, run cycles
    until every page is written or dead-lettered (at most 200), and read the final status."""
    from commands.config import load_config
    from commands.views.status import status
    from commands.worker.session import run
    from gemini_emulator import Emulator
    from projections import open_store

    started = time.monotonic()
    prepare(folder)
    key = demo_key()
    with Emulator(POLICY, api_key=key) as emulator:
        config_path = write_config(folder, emulator.url)
        config = load_config(config_path)
        if on_start is not None:
            on_start(config, emulator.url)
        result = run(config, until_idle=True, max_cycles=200, api_key=key, on_cycle=on_cycle)
    with open_store(config.paths.database) as store:
        final = status(store, config)
    return DemoResult(config, config_path, final, result.report_path, time.monotonic() - started)
