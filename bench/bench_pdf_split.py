"""Cutting a 1,000-page PDF into one-page PDFs: the pipeline's own cut
(:func:`commands.worker.documents.cut`, as the worker calls it for each page: the document's
version checked, its parsed form from the cache, a lock, a new writer per page) against
pypdf's bare split loop on the same document, each in a fresh process (pages/s and peak memory).

    uv run --group bench python bench/bench_pdf_split.py

The document has text on every page (a shared font, a content stream of its own per page), as a
scanned-and-OCRed or born-digital record book has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, line

from commands.integrations.demo import text_pdf

PAGES = int(os.environ.get("BENCH_PDF_PAGES", "1000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))

BARE = """
import io, json, sys, time
sys.path.insert(0, {bench!r})
from common import peak_rss_mib
from pypdf import PdfReader, PdfWriter
start = time.perf_counter()
reader = PdfReader({path!r})
total = 0
for page in reader.pages:
    writer = PdfWriter()
    writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    total += len(out.getvalue())
print(json.dumps([time.perf_counter() - start, total, peak_rss_mib()]))
"""

OURS = """
import json, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from common import peak_rss_mib
from commands.worker.dataset import file_stamp
from commands.worker.documents import cut, facts
import pypdf  # imported before the clock, as the bare loop's is (the worker imports it lazily)
start = time.perf_counter()
path = {path!r}
stamp = file_stamp(path)
pages = facts(path, stamp).pages
total = sum(len(cut(path, stamp, i)) for i in range(1, pages + 1))
print(json.dumps([time.perf_counter() - start, total, peak_rss_mib()]))
"""


def make_document(path: Path, pages: int) -> None:
    """``pages`` pages of text, one font shared by all (the demo's document)."""
    path.write_bytes(text_pdf(pages))


def probe(code: str, path: Path) -> tuple[float, int, float]:
    script = code.format(root=str(ROOT), bench=str(ROOT / "bench"), path=str(path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    seconds, total, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, total, rss


def main() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
        path = Path(tmp) / "2020.pdf"
        make_document(path, PAGES)
        print(f"(a {PAGES:,}-page document of {path.stat().st_size / 2**20:.1f} MiB)", flush=True)
        bare, ours = [], []
        for _ in range(REPEATS):  # interleaved, so both see the same machine
            bare.append(probe(BARE, path))
            ours.append(probe(OURS, path))
        b = sorted(bare)[len(bare) // 2]
        o = sorted(ours)[len(ours) // 2]
        assert b[1] == o[1], (b, o)  # the same bytes cut
        return [
            line("cut", PAGES / o[0], "pages/s", PAGES / b[0], "pypdf bare loop", ">= 0.8x"),
            line(
                "peak memory",
                o[2],
                "MiB",
                b[2],
                "pypdf bare loop",
                higher_is_better=False,
            ),
        ]


if __name__ == "__main__":
    main()
