"""The scanner's decisions (pure)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from commands.integrations.demo import png
from commands.pages import Page, Problem
from commands.rules.scan import ScanState
from commands.worker.scan import decide
from eventlog.events import InputRejected, InputRejectionCleared, RecordDeadLettered


def page(key: str, root: Path | None = None) -> Page:
    state, school, year, n = key.split(":")
    path = str(root / f"{n}.png") if root else f"/in/{state}/{school}/{year}/{n}.png"
    return Page(key, state, school, year, n, path, "image/png")


def state(**kw: object) -> ScanState:
    base: dict[str, object] = {
        "outputs": set(),
        "inflight": set(),
        "failures": {},
        "dead": set(),
        "rejected": {},
    }
    base.update(kw)
    return ScanState(**base)  # type: ignore[arg-type]


PAGES = [page(f"S:X:2020:{n}") for n in (3, 1, 2, 10)] + [page("S:Y:2020:1")]


def test_candidates_are_the_pages_with_nothing_in_the_way_in_order() -> None:
    d = decide(
        PAGES,
        [],
        state(outputs={"S:X:2020:1"}, inflight={"S:X:2020:2"}, failures={"S:X:2020:3": 1}),
        max_retries=3,
        context_previous_page=False,
    )
    assert [p.key for p in d.candidates] == ["S:X:2020:3", "S:X:2020:10", "S:Y:2020:1"]
    assert d.counts["written"] == 1 and d.counts["in_flight"] == 1
    assert d.events == []


def test_reaching_max_retries_dead_letters_once() -> None:
    s = state(failures={"S:X:2020:1": 3, "S:X:2020:2": 5})
    d = decide(PAGES, [], s, max_retries=3, context_previous_page=False)
    assert "S:X:2020:1" not in [p.key for p in d.candidates]
    assert d.events == [
        RecordDeadLettered(record_key="S:X:2020:1", failures=3, max_retries=3),
        RecordDeadLettered(record_key="S:X:2020:2", failures=5, max_retries=3),
    ]
    s.dead = {"S:X:2020:1", "S:X:2020:2"}
    assert decide(PAGES, [], s, max_retries=3, context_previous_page=False).events == []
    # Raising max_retries brings them back.
    d = decide(PAGES, [], s, max_retries=6, context_previous_page=False)
    assert {"S:X:2020:1", "S:X:2020:2"} <= {p.key for p in d.candidates}


def test_with_context_page_n_waits_for_page_n_minus_1(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, "commands.scan"):
        d = decide(
            PAGES, [], state(outputs={"S:X:2020:1"}), max_retries=3, context_previous_page=True
        )
    assert [p.key for p in d.candidates] == ["S:X:2020:2", "S:Y:2020:1"]
    assert d.counts["waiting_for_previous_page"] == 2
    assert "Skipping S:X:2020:3 (dependency missing: S:X:2020:2 has no output yet)" in (caplog.text)
    assert "Skipping S:X:2020:10 (dependency missing: S:X:2020:3" in caplog.text


def test_problems_are_reported_once_and_cleared_when_fixed(tmp_path: Path) -> None:
    problem = Problem("/in/S/X/2020/x.txt", "not an image extension")
    d = decide(PAGES, [problem], state(), max_retries=3, context_previous_page=False)
    assert d.events == [InputRejected(path=problem.path, reason=problem.reason)]
    again = decide(
        PAGES,
        [problem],
        state(rejected={problem.path: problem.reason}),
        max_retries=3,
        context_previous_page=False,
    )
    assert again.events == []
    fixed = decide(
        PAGES,
        [],
        state(rejected={problem.path: problem.reason}),
        max_retries=3,
        context_previous_page=False,
    )
    assert fixed.events == [InputRejectionCleared(path=problem.path)]


def test_a_page_rejected_for_its_bytes_stays_out_until_its_bytes_are_fixed(
    tmp_path: Path,
) -> None:
    p = page("S:X:2020:1", tmp_path)
    Path(p.path).write_bytes(b"not a png")
    rejected = {p.path: "not a PNG image (its bytes do not match)"}
    d = decide([p], [], state(rejected=rejected), max_retries=3, context_previous_page=False)
    assert d.candidates == [] and d.events == []
    Path(p.path).write_bytes(png(4, 4, 1))
    d = decide([p], [], state(rejected=rejected), max_retries=3, context_previous_page=False)
    assert d.candidates == [p] and d.events == [InputRejectionCleared(path=p.path)]


def test_an_output_folder_that_leaves_the_output_root_is_rejected_before_submission(
    tmp_path: Path,
) -> None:
    from commands.worker.scan import scan

    inp, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    for rel in ("S/X/2020/1.png", "S/X/2021/1.png", "S/Y/2020/1.png", "T/X/2020/1.png"):
        (inp / rel).parent.mkdir(parents=True, exist_ok=True)
        (inp / rel).write_bytes(png(4, 4, 1))
    (out / "S/X").mkdir(parents=True)
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "S/X/2020")  # a year folder
    os.symlink(elsewhere, out / "T")  # a state folder
    (out / "S/Y").mkdir()
    os.symlink(out / "S/Y", out / "S/Z")  # inside the root: fine (and unused)

    def run(
        rejected: dict[str, str], x_pages: int
    ) -> tuple[list[str], list[object]]:  # the page counts as recorded: no PagesCounted
        counted = {("S", "X"): (str(inp / "S/X"), x_pages), ("S", "Y"): (str(inp / "S/Y"), 1)}
        d = scan(
            inp,
            out,
            state(rejected=rejected, counted=counted),
            max_retries=3,
            context_previous_page=False,
            check_page=lambda p: None,
        )
        return [p.key for p in d.candidates], list(d.events)

    keys, found = run({}, 1)
    assert keys == ["S:X:2021:1", "S:Y:2020:1"]
    real = os.path.realpath(elsewhere)
    why = (
        f"output folder is a symlink out of the output root (to {real}); "
        "its pages are not submitted"
    )
    assert found == [
        InputRejected(path=str(out / "S/X/2020"), reason=why),
        InputRejected(path=str(out / "T"), reason=why),
    ]
    # Fixed: the rejection is cleared and the pages become candidates.
    os.unlink(out / "S/X/2020")
    keys, found = run({str(out / "S/X/2020"): why, str(out / "T"): why}, 2)
    assert keys == ["S:X:2020:1", "S:X:2021:1", "S:Y:2020:1"]
    assert found == [InputRejectionCleared(path=str(out / "S/X/2020"))]
