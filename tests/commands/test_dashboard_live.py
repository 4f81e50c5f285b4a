"""The dashboard during a real run and after it, in headless Chromium, against ``status --json``.

The demo's dataset (its faults: a failed job, two pages that fail once, a poison page that is
dead-lettered) runs through ``run --loop`` against the emulator, each job held RUNNING long
enough that the log is quiet while the test looks. At a moment in the middle of the run and
again after it, the test reads ``status --json --stuck-after 0``, the rendered page (Chromium's
``--dump-dom``), the panels' canned queries and ``analyze-failures --export-csv``, then
``status --json`` again: when the log did not move in between, every panel must say what the
commands say. Screenshots of both moments go to ``docs/`` when ``DASHBOARD_SCREENSHOT`` asks
(the README shows them).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from commands.integrations import dashboard, demo
from commands.rules.cost import money
from gemini_emulator import Emulator
from projections import open_store
from tests.commands import browser
from tests.commands.dashboard_helpers import fetch_json, served
from tests.conftest import ROOT, run_cli

DB = "gemini_batches"
#: The demo's faults, each job RUNNING for RUNNING seconds: the log is quiet meanwhile.
RUNNING = 8.0
POLICY = {**demo.POLICY, "timing": {"pending_seconds": 0.2, "running_seconds": RUNNING}}
#: The canned queries the panels read.
PANELS = ("progress", "stuck", "latest_failures", "dead_letters", "spend_per_day")
#: Wide enough for the tiles, long enough for every card.
WINDOW = "1280,2900"


@dataclass
class Moment:
    """What the commands and the page said while the log stood still."""

    status: dict[str, Any]
    seconds: float
    dom: str
    canned: dict[str, list[dict[str, Any]]]
    failures: list[dict[str, str]]


def _status(config: Path) -> dict[str, Any]:
    r = run_cli("--config", str(config), "status", "--json", "--stuck-after", "0")
    assert r.code == 0, r.err
    return json.loads(r.out)


def _failure_log(config: Path, folder: Path) -> list[dict[str, str]]:
    out = folder / "failures.csv"
    r = run_cli("--config", str(config), "analyze-failures", "--export-csv", str(out))
    assert r.code == 0, r.err
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def _moment(base: str, config: Path, chromium: str, folder: Path) -> Moment | None:
    """One look, or None when the log moved during it."""
    started = time.monotonic()
    before = _status(config)
    page = f"{base}/-/dashboards/{dashboard.SLUG}?stuck_after=0"
    dom = browser.headless(chromium, folder / "profile", "--dump-dom", page, size=WINDOW)
    assert dom.returncode == 0, dom.stderr[-2000:]
    canned = {
        name: fetch_json(f"{base}/{DB}/{name}.json?_shape=objects&stuck_after=0")["rows"]
        for name in PANELS
    }
    failures = _failure_log(config, folder)
    after = _status(config)
    if not before["events"] == after["events"] == canned["progress"][0]["events"]:
        return None
    return Moment(before, time.monotonic() - started, dom.stdout, canned, failures)


def _look(base: str, config: Path, chromium: str, folder: Path, wanted: Any) -> Moment:
    """The first still moment whose status satisfies ``wanted``."""
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if wanted(_status(config)):
            seen = _moment(base, config, chromium, folder)
            if seen is not None and wanted(seen.status):
                return seen
        time.sleep(0.2)
    raise AssertionError(f"no still moment as wanted: {_status(config)['progress']}")


def _wait(config: Path, wanted: Any) -> None:
    deadline = time.monotonic() + 120
    while not wanted(_status(config)):
        assert time.monotonic() < deadline, _status(config)["progress"]
        time.sleep(0.1)


def _screenshot(base: str, chromium: str, folder: Path, name: str) -> None:
    shot = folder / name
    page = f"{base}/-/dashboards/{dashboard.SLUG}"
    taken = browser.headless(
        chromium, folder / "profile", f"--screenshot={shot}", page, size=WINDOW
    )
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    asked = os.environ.get(browser.SCREENSHOT_ENV)
    if asked:
        target = Path(asked)
        if name != "dashboard.png":
            target = target.with_name(target.stem + "-running" + target.suffix)
        shutil.copyfile(shot, target)


def _mid_run(s: dict[str, Any]) -> bool:
    p = s["progress"]
    return bool(
        p["written"] and p["in_flight"] and p["to_go"] and (p["retrying"] or p["dead_letters"])
    )


def _finished(s: dict[str, Any]) -> bool:
    p = s["progress"]
    return bool(p["known"] and p["to_go"] == 0 and not s["active_batches"])


def test_the_dashboard_during_a_run_and_after_it_says_what_status_says(
    chromium: str, tmp_path: Path
) -> None:
    folder = tmp_path / "demo"
    demo.prepare(folder)
    key = demo.demo_key()
    with Emulator(POLICY, api_key=key) as emulator:
        config = demo.write_config(folder, emulator.url)
        (folder / "data").mkdir()
        open_store(folder / "data" / "gemini_batches.db", create=True).close()
        loop = subprocess.Popen(
            [sys.executable, "-m", "commands", "--config", str(config), "run", "--loop"],
            cwd=folder,
            env={**os.environ, "PYTHONPATH": str(ROOT), "GEMINI_DEMO_API_KEY": key},
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "loop.err").open("w"),
        )
        try:
            with served(config) as base:
                _wait(config, _mid_run)
                _screenshot(base, chromium, tmp_path, "dashboard-running.png")
                running = _look(base, config, chromium, tmp_path, _mid_run)
                done = _look(base, config, chromium, tmp_path, _finished)
                loop.terminate()
                loop.wait(timeout=30)
                ended = _look(base, config, chromium, tmp_path, _finished)
                _screenshot(base, chromium, tmp_path, "dashboard.png")
        finally:
            if loop.poll() is None:
                loop.kill()
    for seen in (running, done, ended):
        _panels_say_what_status_says(seen)
    assert running.status["active_batches"] and running.status["progress"]["expected_finish"]
    assert ended.status["dead_letters"] == 1 and ended.status["progress"]["to_go"] == 0


def _panels_say_what_status_says(m: Moment) -> None:
    cards = browser.cards(m.dom)
    _every_panel_has_data(cards)
    _progress(m, cards)
    _stuck(m, cards)
    _failing(m, cards)


def _every_panel_has_data(cards: dict[str, str]) -> None:
    for name, card in cards.items():
        if "<table" in card:
            assert browser.table(card), name
        else:
            assert "<svg" in card and "role-mark" in card, f"{name}: nothing drawn"


def _progress(m: Moment, cards: dict[str, str]) -> None:
    p = m.status["progress"]
    [row] = m.canned["progress"]
    exact = ["known", "written", "in_flight", "retrying", "dead_letters", "rejected_inputs"]
    exact += ["to_go", "counted_at", "cost_basis"]
    assert {k: row[k] for k in exact} == {k: p[k] for k in exact}
    tiles = browser.tiles(cards["progress"])
    figures = {
        "Pages known": "known",
        "Written": "written",
        "In flight": "in_flight",
        "To go": "to_go",
        "Retrying": "retrying",
        "Dead-lettered": "dead_letters",
        "Rejected inputs": "rejected_inputs",
    }
    for label, field in figures.items():
        assert tiles[label].split(" (")[0] == f"{p[field]:,}", (label, tiles[label], p[field])
    assert float(tiles["Done"].split("%")[0]) == pytest.approx(p["percent_done"], abs=0.0100001)
    for label, field in (("last hour", "last_hour"), ("last day", "last_day")):
        shown = float(tiles[f"Pages/h, {label}"])
        assert shown == pytest.approx(p[f"pages_per_hour_{field}"], abs=0.2), label
    _finish(m, tiles["Expected finish"], row["expected_finish"])
    currency = p["currency"]
    for label, field in (("Spend", "spend"), ("Wasted", "wasted"), ("Cost to go", "cost_to_go")):
        assert tiles[label].split(" (")[0] == money(p[field], currency), (label, tiles[label])
        assert row[field] == pytest.approx(p[field], abs=1.5e-4), field
    per_day = sum(r["cost"] for r in m.canned["spend_per_day"])
    assert per_day == pytest.approx(m.status["spend"]["cost"], abs=1e-4)


def _finish(m: Moment, tile: str, canned: str | None) -> None:
    """The expected finish moves with now: the page's and the query's are within the look."""
    expected = m.status["progress"]["expected_finish"]
    if expected is None:
        assert canned is None
        assert tile.startswith("done" if m.status["progress"]["to_go"] == 0 else "unknown")
        return
    assert canned is not None
    at = datetime.strptime(expected, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    queried = datetime.strptime(canned, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((queried - at).total_seconds()) <= m.seconds + 2, (expected, canned)
    day, note = tile.split(" (", 1)
    shown = datetime.strptime(f"{day} {note[:5]}", "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
    assert abs((shown - at).total_seconds()) <= m.seconds + 62, (expected, tile)


def _stuck(m: Moment, cards: dict[str, str]) -> None:
    """At --stuck-after 0 a run's quiet log is marked; what is marked is what status marks."""
    marks = [(s["kind"], s["name"], s["since"], s["why"]) for s in m.status["stuck"]]
    for rows in (m.canned["stuck"], browser.table(cards["stuck"])):
        assert [(r["kind"], r["name"], r["since"], r["stuck"]) for r in rows if r["stuck"]] == marks
        batches = {r["name"]: r["detail"] for r in rows if r["kind"] == "batch"}
        assert set(batches) == {b["batch_id"] for b in m.status["active_batches"]}
        for b in m.status["active_batches"]:
            assert batches[b["batch_id"]].startswith(
                f"{b['state']}: {b['done']} done, {b['failed']} failed, {b['pending']} pending"
            )
        [last] = [r for r in rows if r["kind"] == "log"]
        assert last["since"] == m.status["last_event_at"]


def _failing(m: Moment, cards: dict[str, str]) -> None:
    """The latest failures are the failure log's newest rows; failures by state and school are
    its pages (distinct records) with its attempts; the dead letters are status's."""
    newest = list(reversed(m.failures))[:10]
    shown = browser.table(cards["latest_failures"])
    assert [
        (r["failed_at"], r["record_key"], r["error_type"], r["attempt"], r["message"])
        for r in shown
    ] == [
        (f["failed_at"], f["record_key"], f["error_type"], f["attempt"], f["message"])
        for f in newest
    ]
    assert all(r["excerpt"][:200] == f["excerpt"][:200] for r, f in zip(shown, newest, strict=True))
    for column, card in (
        ("state", "failures_in_pages_by_state"),
        ("school", "failures_in_pages_by_school"),
    ):
        pages = Counter(f[column] for f in {f["record_key"]: f for f in m.failures}.values())
        attempts = Counter(f[column] for f in m.failures)
        if column == "state":
            texts = browser.mark_texts(cards[card])
            expected = [f"{pages[k]:,} pages, {attempts[k]:,} attempts" for k in pages]
            assert sorted(texts) == sorted(expected), (texts, expected)
        else:
            rows = browser.table(cards[card])
            assert {r["school"]: (int(r["pages"]), int(r["attempts"])) for r in rows} == {
                k: (pages[k], attempts[k]) for k in pages
            }
    dead = browser.table(cards["dead_letters"])
    if m.status["dead_letters"] == 0:
        assert [r["record_key"] for r in dead] == ["none"]
        return
    assert len(dead) == len(m.canned["dead_letters"]) == m.status["dead_letters"]
    last = {f["record_key"]: f["message"] for f in m.failures}
    for r in dead:
        assert r["last_error"] == last[r["record_key"]]
        state, school, year, _ = r["record_key"].split(":")
        assert r["reset_command"].endswith(
            f"reset-failures --states {state} --schools {school} --year-start {year} "
            f"--year-end {year}"
        )


@pytest.fixture
def chromium() -> str:
    return browser.find_chromium()
