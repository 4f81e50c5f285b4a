"""Paths the scanner must refuse, through the real SDK and the emulator: odd digits in a year or a
page, symlinks out of the input root, an output folder that is a symlink out of the output root.
Each is an ``InputRejected`` naming the path; the rest of the work is done; nothing refused is
billed."""

from __future__ import annotations

import os
from pathlib import Path

from commands.config import load_config
from commands.worker.session import run
from eventlog.events import InputRejected
from gemini_emulator import Emulator
from tests.pipeline import API_KEY, IMAGE, check_final_state, events, make_dataset, write_config

GOOD = ["S:X:2020:1", "S:X:2020:2", "S:Y:2021:1"]


def test_bad_paths_are_rejected_and_the_rest_is_written(tmp_path: Path, emulator: Emulator) -> None:
    inp, out, elsewhere = tmp_path / "input", tmp_path / "output", tmp_path / "elsewhere"
    make_dataset(inp, [*GOOD, "S:Z:2020:1"])
    odd = [inp / "S/X/2020/².png", inp / "S/X/2020/٣.png", inp / "S/X/\uff12\uff10\uff12\uff10"]
    odd[0].write_bytes(IMAGE)
    odd[1].write_bytes(IMAGE)
    odd[2].mkdir()
    (odd[2] / "1.png").write_bytes(IMAGE)
    elsewhere.mkdir()
    (elsewhere / "p.png").write_bytes(IMAGE)
    os.symlink(elsewhere / "p.png", inp / "S/X/2020/3.png")  # a page out of the input tree
    os.symlink(elsewhere, inp / "S/Far")  # a school out of the input tree
    (out / "S").mkdir(parents=True)
    os.symlink(elsewhere, out / "S/Z")  # S:Z's outputs would land in elsewhere
    config = load_config(write_config(tmp_path, emulator.url))
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    rejected = {e.path: e.reason for e in events(config) if isinstance(e, InputRejected)}
    real = os.path.realpath(elsewhere)
    assert rejected == {
        str(odd[0]): "page is not a number",
        str(odd[1]): "page is not a number",
        str(odd[2]): "year is not a number (ASCII digits 0-9)",
        str(inp / "S/X/2020/3.png"): f"symlink leaves the input root (to {real}/p.png)",
        str(inp / "S/Far"): f"symlink leaves the input root (to {real})",
        str(out / "S/Z"): (
            f"output folder is a symlink out of the output root (to {real}); "
            "its pages are not submitted"
        ),
    }
    assert check_final_state(config, emulator, GOOD) == {"written": len(GOOD)}
    assert sorted(os.listdir(elsewhere)) == ["p.png"]  # nothing written out there
    billed = {b.key for b in emulator.service.ledger()}
    assert billed == set(GOOD)


def test_numbers_past_64_bits_are_rejected_and_the_rest_is_written(
    tmp_path: Path, emulator: Emulator
) -> None:
    """A year folder, a year document and a page named with 20 digits are each one
    InputRejected; the page at the edge (2**63 - 1) and every other page are written."""
    inp = tmp_path / "input"
    edge = f"S:X:2020:{2**63 - 1}"
    make_dataset(inp, [*GOOD, edge])
    twenty = "9" * 20
    year_folder = inp / "S/X" / twenty
    year_folder.mkdir()
    (year_folder / "1.png").write_bytes(IMAGE)
    year_document = inp / "S/Y" / f"{twenty}.pdf"
    year_document.write_bytes(b"%PDF-1.4 not read: its name is refused first")
    page = inp / "S/X/2020" / f"{twenty}.png"
    page.write_bytes(IMAGE)
    config = load_config(write_config(tmp_path, emulator.url))
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    rejected = {e.path: e.reason for e in events(config) if isinstance(e, InputRejected)}
    too_large = "is larger than 9223372036854775807 (the log stores 64-bit numbers)"
    assert rejected == {
        str(year_folder): f"year {too_large}",
        str(year_document): f"year {too_large}",
        str(page): f"page {too_large}",
    }
    assert check_final_state(config, emulator, [*GOOD, edge]) == {"written": len(GOOD) + 1}
    assert {b.key for b in emulator.service.ledger()} == {*GOOD, edge}
