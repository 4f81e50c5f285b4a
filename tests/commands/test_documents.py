"""PDF documents (``<Year>.pdf``) in the walk and the scan: each page a record of its own named by
a locator, cut as a one-page PDF; a page given twice, and a document that cannot go, each one
problem naming the files; a document's SHA-256 recorded, its change under written pages said."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from commands.integrations.demo import png
from commands.pages import Page, Problem, YearDir
from commands.rules.scan import ScanState
from commands.worker import documents
from commands.worker.dataset import PDF, file_stamp, inspect_image, read_once
from commands.worker.scan import scan
from commands.worker.walk import walk_years
from eventlog.events import DocumentSeen

#: Page i of a test document is 600 + i points wide: its cut says which page it is.
WIDTH = 600


def document(pages: int, *, password: str = "", first: int = 1) -> bytes:
    writer = PdfWriter()
    for i in range(first, first + pages):
        writer.add_blank_page(width=WIDTH + i, height=792)
    if password:
        writer.encrypt(password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def walk(root: Path) -> tuple[list[YearDir], list[Problem]]:
    problems: list[Problem] = []
    return list(walk_years(root, problems)), problems


def school(tmp_path: Path) -> Path:
    folder = tmp_path / "in" / "S" / "Sc"
    folder.mkdir(parents=True)
    return folder


def test_a_documents_pages_are_records_named_by_locators_in_page_order(tmp_path: Path) -> None:
    folder = school(tmp_path)
    (folder / "2020.pdf").write_bytes(document(3))
    (folder / "2021").mkdir()
    (folder / "2021" / "7.png").write_bytes(png(8, 8, 1))
    (folder / "2021.PDF").write_bytes(document(3))  # an upper-case extension is a document too
    years, problems = walk(tmp_path / "in")
    assert problems == []
    pages = {y.year: y.pages for y in years}
    doc = str(folder / "2020.pdf")
    assert pages["2020"] == [
        Page(f"S:Sc:2020:{i}", "S", "Sc", "2020", str(i), f"{doc}#{i}", PDF) for i in (1, 2, 3)
    ]
    # a year with both: the document's pages and the folder's, in page order
    upper = str(folder / "2021.PDF")
    assert [(p.key, p.path) for p in pages["2021"]] == [
        *((f"S:Sc:2021:{i}", f"{upper}#{i}") for i in (1, 2, 3)),
        ("S:Sc:2021:7", str(folder / "2021" / "7.png")),
    ]
    by_year = {y.year: y for y in years}
    assert by_year["2020"].documents[0][0] == doc
    assert by_year["2020"].documents[0][2] == 3


def test_a_page_given_twice_is_one_problem_naming_both_files_and_the_rest_go_on(
    tmp_path: Path,
) -> None:
    folder = school(tmp_path)
    (folder / "2021.pdf").write_bytes(document(4))
    (folder / "2021").mkdir()
    (folder / "2021" / "3.png").write_bytes(png(8, 8, 1))
    (folder / "2021" / "9.png").write_bytes(png(8, 8, 1))
    years, problems = walk(tmp_path / "in")
    png_path, doc = str(folder / "2021" / "3.png"), str(folder / "2021.pdf")
    assert [p.path for p in problems] == [png_path]
    assert png_path in problems[0].reason and f"page 3 of {doc}" in problems[0].reason
    assert [p.key for p in years[0].pages] == [f"S:Sc:2021:{i}" for i in (1, 2, 4, 9)]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"%PDF-1.7\nnot really\n", "a damaged PDF"),
        (b"GIF89a not a pdf", "not a PDF document"),
        (document(2, password="secret"), "an encrypted PDF"),
    ],
)
def test_a_document_that_cannot_go_is_one_problem_and_the_other_years_go_on(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    folder = school(tmp_path)
    (folder / "2020.pdf").write_bytes(content)
    (folder / "2021.pdf").write_bytes(document(2))
    (folder / "twenty.pdf").write_bytes(document(1))  # not a year's name
    years, problems = walk(tmp_path / "in")
    by_path = {p.path: p.reason for p in problems}
    assert set(by_path) == {str(folder / "2020.pdf"), str(folder / "twenty.pdf")}
    assert by_path[str(folder / "2020.pdf")].startswith(reason), by_path
    assert [p.key for y in years for p in y.pages] == ["S:Sc:2021:1", "S:Sc:2021:2"]


def test_a_page_is_cut_as_a_one_page_pdf_of_that_page(tmp_path: Path) -> None:
    folder = school(tmp_path)
    (folder / "2020.pdf").write_bytes(document(5))
    years, _ = walk(tmp_path / "in")
    for page in years[0].pages:
        data, stamp, why = read_once(page, file_stamp(page.path))
        assert data is not None and why == "", why
        reader = PdfReader(io.BytesIO(data))
        assert len(reader.pages) == 1
        assert float(reader.pages[0].mediabox.width) == WIDTH + int(page.page)
        assert inspect_image(page, 10**9) == (len(data), None)
        assert stamp == file_stamp(str(folder / "2020.pdf"))
    with pytest.raises(ValueError, match="has 5 pages, not 6"):
        documents.cut(str(folder / "2020.pdf"), file_stamp(str(folder / "2020.pdf")) or (0, 0), 6)


def test_a_page_over_the_limit_is_said_and_a_changed_document_is_not_read_as_before(
    tmp_path: Path,
) -> None:
    folder = school(tmp_path)
    path = folder / "2020.pdf"
    path.write_bytes(document(2))
    years, _ = walk(tmp_path / "in")
    page = years[0].pages[1]
    size, reason = inspect_image(page, 10)
    assert reason == f"larger than the File API limit ({size} > 10 bytes)"
    seen = file_stamp(page.path)
    path.write_bytes(document(3))
    data, _, why = read_once(page, seen)
    assert data is None and why.startswith("the document changed since it was checked")


def scan_of(tmp_path: Path, state: ScanState, *, context: bool = False) -> list[DocumentSeen]:
    decision = scan(
        tmp_path / "in",
        tmp_path / "out",
        state,
        max_retries=3,
        context_previous_page=context,
    )
    return [e for e in decision.events if isinstance(e, DocumentSeen)]


def empty_state(**documents: str) -> ScanState:
    return ScanState(set(), {}, set(), {}, documents=documents)


def test_a_document_is_recorded_once_and_a_change_under_written_pages_is_counted(
    tmp_path: Path,
) -> None:
    folder = school(tmp_path)
    path = folder / "2020.pdf"
    path.write_bytes(document(3))
    first = scan_of(tmp_path, empty_state())
    assert [(e.path, e.pages, e.previous_sha256, e.pages_written) for e in first] == [
        (str(path), 3, "", 0)
    ]
    old = first[0].sha256
    assert scan_of(tmp_path, empty_state(**{str(path): old})) == []  # unchanged: nothing said
    out = tmp_path / "out" / "S" / "Sc" / "2020"
    out.mkdir(parents=True)
    for page in (1, 3):
        (out / f"{page}.json").write_text("{}")
    path.write_bytes(document(4, first=2))
    changed = scan_of(tmp_path, empty_state(**{str(path): old}))
    assert [(e.pages, e.previous_sha256, e.pages_written) for e in changed] == [(4, old, 2)]
    assert changed[0].sha256 != old


def test_a_documents_pages_follow_each_other_for_the_previous_page_context(
    tmp_path: Path,
) -> None:
    folder = school(tmp_path)
    (folder / "2020.pdf").write_bytes(document(3))
    decision = scan(
        tmp_path / "in",
        tmp_path / "out",
        empty_state(),
        max_retries=3,
        context_previous_page=True,
    )
    assert [p.key for p in decision.candidates] == ["S:Sc:2020:1"]
    assert decision.counts["waiting_for_previous_page"] == 2


def test_a_document_over_the_size_limit_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = school(tmp_path)
    (folder / "2020.pdf").write_bytes(document(2))
    size = (folder / "2020.pdf").stat().st_size
    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", size - 1)
    years, problems = walk(tmp_path / "in")
    assert [p.key for y in years for p in y.pages] == []
    assert problems == [
        Problem(
            str(folder / "2020.pdf"),
            f"a PDF document over {size - 1} bytes ({size}): split it into documents",
        )
    ]


def test_a_read_that_failed_is_not_remembered_for_the_same_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = school(tmp_path)
    path = str(folder / "2020.pdf")
    (folder / "2020.pdf").write_bytes(document(2))
    stamp = file_stamp(path)
    assert stamp is not None

    def failing_open(*args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(documents, "open", failing_open, raising=False)
    assert documents.facts(path, stamp) == "cannot read: Input/output error"
    monkeypatch.undo()  # the disk answers again: the same version is read now
    found = documents.facts(path, stamp)
    assert isinstance(found, documents.Facts) and found.pages == 2
