"""The dataset walk: every kind of bad input is reported once, with its path and reason, and
never crashes a scan."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from commands.integrations.demo import png
from commands.pages import Page, Problem, YearDir
from commands.worker.dataset import (
    check_image,
    output_names,
    output_path,
)
from commands.worker.walk import walk_years

PNG = png(8, 8, 1)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 20
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 8


def walk_inputs(root: Path) -> tuple[list[Page], list[Problem]]:
    """Every page under ``root`` and every problem, in memory (the worker streams walk_years)."""
    problems: list[Problem] = []
    pages = [p for year in walk_years(root, problems) for p in year.pages]
    return pages, problems


def put(root: Path, rel: str, data: bytes = PNG) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_a_well_formed_tree_yields_every_page(tmp_path: Path) -> None:
    put(tmp_path, "California/LincolnHigh/2023/1.png")
    put(tmp_path, "California/LincolnHigh/2023/2.JPG", JPEG)
    put(tmp_path, "Texas/Alamo/2021/10.webp", WEBP)
    put(tmp_path, "Texas/Alamo/2021/.DS_Store", b"junk")
    pages, problems = walk_inputs(tmp_path)
    assert problems == []
    assert [(p.key, p.mime_type) for p in pages] == [
        ("California:LincolnHigh:2023:1", "image/png"),
        ("California:LincolnHigh:2023:2", "image/jpeg"),
        ("Texas:Alamo:2021:10", "image/webp"),
    ]
    assert all(check_image(p) is None for p in pages)


def test_bad_names_and_layouts_are_each_reported_once(tmp_path: Path) -> None:
    bad = {
        "Cal:ifornia/X/2023/1.png": "contains ':'",
        "Texas/Ala\\mo/2023/1.png": "path separator",
        "Texas/Alamo/twenty/1.png": "year is not a number",
        "Texas/Alamo/2023/one.png": "page is not a number",
        "Texas/Alamo/2023/notes.txt": "not an image extension",
        "Texas/Alamo/2023/deeper/1.png": "unexpected directory",
        "Texas/Alamo/README": "not a directory",
        "Texas/Al\x01amo/2023/1.png": "control character",
    }
    for rel in bad:
        put(tmp_path, rel)
    put(tmp_path, "Texas/Alamo/2023/2.png")
    pages, problems = walk_inputs(tmp_path)
    assert [p.key for p in pages] == ["Texas:Alamo:2023:2"]
    reasons = {str(Path(p.path).relative_to(tmp_path)): p.reason for p in problems}
    expected_paths = {
        "Cal:ifornia",
        "Texas/Ala\\mo",
        "Texas/Alamo/twenty",
        "Texas/Alamo/2023/one.png",
        "Texas/Alamo/2023/notes.txt",
        "Texas/Alamo/2023/deeper",
        "Texas/Alamo/README",
        "Texas/Al\x01amo",
    }
    assert set(reasons) == expected_paths
    for rel, fragment in bad.items():
        owner = next(p for p in expected_paths if rel.startswith(p))
        assert fragment in reasons[owner], (rel, reasons[owner])


def test_two_images_for_one_page_are_both_skipped(tmp_path: Path) -> None:
    put(tmp_path, "S/X/2020/4.png")
    put(tmp_path, "S/X/2020/4.jpg", JPEG)
    pages, problems = walk_inputs(tmp_path)
    assert pages == []
    assert len(problems) == 2 and all(
        "several images for page S:X:2020:4" in p.reason for p in problems
    )


def test_symlink_loops_and_broken_links_are_reported(tmp_path: Path) -> None:
    year = tmp_path / "S/X/2020"
    year.mkdir(parents=True)
    os.symlink(year / "b.png", year / "1.png")
    os.symlink(year / "1.png", year / "b.png")
    os.symlink(tmp_path / "nowhere", tmp_path / "S" / "Gone")
    os.symlink(tmp_path, year / "loop")  # a directory loop back to the root
    pages, problems = walk_inputs(tmp_path)
    reasons = {Path(p.path).name: p.reason for p in problems}
    assert reasons["1.png"] == "broken or looping symlink"
    assert reasons["Gone"] == "broken or looping symlink"
    assert "unexpected directory" in reasons["loop"]
    assert pages == []


@pytest.mark.parametrize(
    ("data", "size", "reason"),
    [
        (b"", None, "empty file (0 bytes)"),
        (b"GIF89a......", None, "not a PNG image"),
        (PNG, 3 * 1024**3, "larger than the File API limit"),
    ],
)
def test_file_contents_are_checked_before_upload(
    tmp_path: Path, data: bytes, size: int | None, reason: str
) -> None:
    path = put(tmp_path, "S/X/2020/1.png", data)
    if size is not None:
        os.truncate(path, size)  # sparse: no disk used
    [page], problems = walk_inputs(tmp_path)
    assert problems == []
    found = check_image(page)
    assert found is not None and reason in found


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = put(tmp_path, "S/X/2020/1.png")
    path.chmod(0)
    [page], _ = walk_inputs(tmp_path)
    assert "cannot read" in (check_image(page) or "")


def test_missing_and_empty_roots(tmp_path: Path) -> None:
    assert walk_inputs(tmp_path / "nope")[1][0].reason == "input root does not exist"
    assert walk_inputs(tmp_path)[1][0].reason == "input root is empty"
    put(tmp_path, "file.png")
    _, problems = walk_inputs(tmp_path / "file.png")
    assert problems[0].reason == "input root is not a directory"


def test_outputs_are_found_per_year_folder(tmp_path: Path) -> None:
    put(tmp_path, "out/S/X/2020/1.json", b"{}")
    put(tmp_path, "out/S/X/2020/.1.json.123.tmp", b"{")
    year = YearDir("S", "X", "2020", "", [])
    assert output_names(tmp_path / "out", year) == {"1"}
    assert output_names(tmp_path / "none", year) == set()


@pytest.mark.parametrize(
    "key",
    [
        "../../etc:x:2020:1",
        "S:..:2020:1",
        "S:X:2020:../../x",
        "S:X/Y:2020:1",
        "S:X:2020",
        "S:X:2020:1:extra",
        ":X:2020:1",
    ],
)
def test_no_record_key_can_name_a_path_outside_the_output_root(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="record key"):
        output_path(tmp_path / "out", key)


def test_a_normal_key_maps_inside_the_root(tmp_path: Path) -> None:
    assert output_path(tmp_path, "S:X:2020:1") == tmp_path / "S" / "X" / "2020" / "1.json"


def test_a_file_that_vanishes_between_scan_and_upload_is_reported(tmp_path: Path) -> None:
    path = put(tmp_path, "S/X/2020/1.png")
    [page], _ = walk_inputs(tmp_path)
    path.unlink()
    assert "cannot read: No such file" in (check_image(page) or "")


@pytest.mark.parametrize("odd", ["²", "¹²", "①", "٣", "\uff12\uff10\uff12\uff13", "\U0001d7d1"])
def test_digits_int_cannot_read_or_reads_differently_are_rejected(tmp_path: Path, odd: str) -> None:
    """``str.isdigit()`` says yes to each; a year or page must be ASCII digits."""
    put(tmp_path, f"S/X/{odd}/1.png")  # a year
    put(tmp_path, f"S/X/2020/{odd}.png")  # a page
    put(tmp_path, "S/X/2020/3.png")
    pages, problems = walk_inputs(tmp_path)
    assert [p.key for p in pages] == ["S:X:2020:3"]
    reasons = {str(Path(p.path).relative_to(tmp_path)): p.reason for p in problems}
    assert reasons == {
        f"S/X/{odd}": "year is not a number (ASCII digits 0-9)",
        f"S/X/2020/{odd}.png": "page is not a number",
    }


def test_symlinks_that_leave_the_input_root_are_rejected(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    put(elsewhere, "S/X/2020/1.png")
    put(elsewhere, "loose.png")
    put(root, "Own/X/2020/1.png")
    os.symlink(elsewhere / "S", root / "State")  # a state folder
    os.symlink(elsewhere / "S/X", root / "Own/Sch", target_is_directory=True)  # a school
    os.symlink(elsewhere / "S/X/2020", root / "Own/X/2021")  # a year
    os.symlink(elsewhere / "loose.png", root / "Own/X/2020/2.png")  # a page file
    os.symlink(elsewhere / "loose.png", root / "Own/X/2020/3.PNG")  # the slow path
    # Symlinks that stay inside the root are followed as before.
    os.symlink(root / "Own/X/2020/1.png", root / "Own/X/2020/4.png")
    os.symlink(root / "Own/X", root / "Own/Y")
    pages, problems = walk_inputs(root)
    assert sorted(p.key for p in pages) == [
        "Own:X:2020:1",
        "Own:X:2020:4",
        "Own:Y:2020:1",
        "Own:Y:2020:4",
    ]
    reasons = {str(Path(p.path).relative_to(root)): p.reason for p in problems}
    real = os.path.realpath(elsewhere)
    assert reasons == {
        "State": f"symlink leaves the input root (to {real}/S)",
        "Own/Sch": f"symlink leaves the input root (to {real}/S/X)",
        "Own/X/2021": f"symlink leaves the input root (to {real}/S/X/2020)",
        "Own/X/2020/2.png": f"symlink leaves the input root (to {real}/loose.png)",
        "Own/X/2020/3.PNG": f"symlink leaves the input root (to {real}/loose.png)",
        "Own/Y/2021": f"symlink leaves the input root (to {real}/S/X/2020)",
        "Own/Y/2020/2.png": f"symlink leaves the input root (to {real}/loose.png)",
        "Own/Y/2020/3.PNG": f"symlink leaves the input root (to {real}/loose.png)",
    }
