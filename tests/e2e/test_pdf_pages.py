"""PDF page files (``<Year>/<Page>.pdf``: one page, exactly like an image page) through the real
SDK and the emulator, inline and through the File API: a one-page PDF is sent as
``application/pdf`` and written; a PDF of two pages, a damaged one and an encrypted one are each
an ``InputRejected`` with its reason, and the other pages of their folder go on."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from pypdf import PdfWriter

from commands.config import load_config
from commands.worker.session import run
from eventlog.events import InputRejected
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config

KEYS = keys_for(1, 1, 1, 4)  # 4 image pages: State0:School0:2020:1..4


def pdf(pages: int, password: str = "") -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=612, height=792)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("transport", ["inline", "file_api"])
def test_a_one_page_pdf_is_a_page_and_bad_pdfs_are_rejected_with_their_reason(
    tmp_path: Path, emulator: Emulator, transport: str
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}
    make_dataset(tmp_path / "input", KEYS)
    year = tmp_path / "input" / "State0" / "School0" / "2020"
    (year / "5.pdf").write_bytes(pdf(1))
    (year / "6.pdf").write_bytes(pdf(2))
    (year / "7.pdf").write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    (year / "8.pdf").write_bytes(pdf(1, password="secret"))
    config = load_config(
        write_config(tmp_path, emulator.url, uploads={"image_transport": transport})
    )
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok"
    written = [*KEYS, "State0:School0:2020:5"]
    assert check_final_state(config, emulator, written) == {"written": len(written)}
    sent = {b.key: (b.transport, b.image_sha256) for b in emulator.service.billed}
    pdf_sha = hashlib.sha256((year / "5.pdf").read_bytes()).hexdigest()
    assert sent["State0:School0:2020:5"] == (transport, pdf_sha)  # the PDF's own bytes went
    store = open_store(config.log_location)
    try:
        rejected = {
            Path(r.event.path).name: r.event.reason
            for r in store.read()
            if isinstance(r.event, InputRejected)
        }
    finally:
        store.close()
    assert set(rejected) == {"6.pdf", "7.pdf", "8.pdf"}, rejected
    assert "exactly one page (it has 2)" in rejected["6.pdf"]
    assert rejected["7.pdf"].startswith("a damaged PDF")
    assert "encrypted" in rejected["8.pdf"]
