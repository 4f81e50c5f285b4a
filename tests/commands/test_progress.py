"""The job's progress from the log: the rates from hourly buckets, the expected finish (pure), the
scan's page counts (``PagesCounted``) and the hourly activity folded at append time, read by
``status`` without a walk of the tree."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from commands.config import load_config
from commands.rules.progress import expected_finish, rate_per_hour
from commands.rules.scan import ScanState
from commands.views.status import status
from commands.worker.scan import scan
from commands.worker.session import run
from eventlog.events import PagesCounted
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config

NOW = datetime(2026, 12, 6, 10, 15, tzinfo=UTC)  # a quarter into the hour


def test_the_rate_over_the_last_hour_prorates_the_hour_before() -> None:
    written = {"2026-12-06T10": 30, "2026-12-06T09": 80, "2026-12-06T08": 1000}
    # the current hour's 30, and 3/4 of the previous hour's 80 (its last 45 minutes)
    assert rate_per_hour(written, NOW, 1) == pytest.approx(30 + 80 * 0.75)


def test_the_rate_over_the_last_day_spans_24_hours() -> None:
    written = {f"2026-12-05T{h:02d}": 24 for h in range(24)} | {"2026-12-06T10": 6}
    # 2026-12-05T10 is the bucket 24 h back: 3/4 of it counts; T11..T23 fully; today T00..T10
    expected = (24 * 0.75 + 24 * 13 + 6) / 24
    assert rate_per_hour(written, NOW, 24) == pytest.approx(expected)
    assert rate_per_hour({}, NOW, 24) == 0


def test_the_expected_finish_is_the_pages_to_go_at_the_rate() -> None:
    assert expected_finish(50, 20.0, NOW) == ("2026-12-06T12:45:00Z", 2.5)
    assert expected_finish(50, 0.0, NOW) == (None, None)  # nothing moves: no finish told
    assert expected_finish(0, 0.0, NOW) == (None, 0.0)  # nothing left
    # ten million pages at a page a day: past the year 9999, no date (status must not crash)
    assert expected_finish(10_000_000, 1 / 24, NOW) == (None, 240_000_000.0)
    assert expected_finish(10**300, 1e-300, NOW)[0] is None


def test_status_says_a_finish_past_the_year_9999_as_such() -> None:
    from commands.cli.render import progress_text
    from commands.rules.progress import Progress

    finish, hours = expected_finish(10_000_000, 1 / 24, NOW)
    p = Progress(
        known=10_000_001,
        counted_at="2026-12-06T10:00:00.000000Z",
        written=1,
        in_flight=0,
        retrying=0,
        dead_letters=0,
        rejected_inputs=0,
        to_go=10_000_000,
        percent_done=0.0,
        pages_per_hour_last_hour=0.0,
        pages_per_hour_last_day=0.0,
        expected_finish=finish,
        hours_to_go=hours,
        currency="USD",
        spend=None,
        wasted=None,
        cost_to_go=None,
        cost_basis="",
    )
    assert "expected finish after the year 9999 (in 240,000,000 h" in progress_text(p)[1]


def test_the_scan_counts_pages_per_school_and_says_only_changes(tmp_path: Path) -> None:
    make_dataset(tmp_path / "in", keys_for(1, 2, 2, 3))  # 2 schools x 2 years x 3 pages

    def counted(state: ScanState) -> list[PagesCounted]:
        decision = scan(
            tmp_path / "in", tmp_path / "out", state, max_retries=3, context_previous_page=False
        )
        return [e for e in decision.events if isinstance(e, PagesCounted)]

    first = counted(ScanState(set(), {}, set(), {}))
    assert sorted((e.state, e.school, e.pages) for e in first) == [
        ("State0", "School0", 6),
        ("State0", "School1", 6),
    ]
    assert first[0].path == str(tmp_path / "in" / "State0" / first[0].school)
    known = {(e.state, e.school): (e.path, e.pages) for e in first}
    assert counted(ScanState(set(), {}, set(), {}, counted=known)) == []
    shutil.rmtree(tmp_path / "in" / "State0" / "School1")
    (tmp_path / "in" / "State0" / "School0" / "2020" / "3.png").unlink()
    changed = counted(ScanState(set(), {}, set(), {}, counted=known))
    assert sorted((e.school, e.pages) for e in changed) == [("School0", 5), ("School1", 0)]


def test_status_shows_progress_from_the_log_without_a_walk(
    tmp_path: Path, emulator: Emulator
) -> None:
    keys = keys_for(2, 1, 1, 5)  # 10 pages in two states
    make_dataset(tmp_path / "input", keys)
    emulator.policy = {
        "timing": {"pending_seconds": 0.0, "running_seconds": 0.05},
        "records": [{"match": keys[0], "outcome": "schema_violation"}],  # a dead letter
    }
    config = load_config(write_config(tmp_path, emulator.url))
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok" and result.report_path is not None
    outcome = check_final_state(config, emulator, keys)  # projections verified
    assert outcome == {"written": 9, "dead_lettered": 1}
    shutil.rmtree(tmp_path / "input")  # status reads the log: no tree to walk
    store = open_store(config.log_location)
    try:
        p = status(store, config, scan=False).progress
        hourly = store.query_one(
            "SELECT sum(written), sum(failed), sum(dead_lettered) FROM hourly_activity"
        )
    finally:
        store.close()
    assert p is not None
    assert (p.known, p.written, p.dead_letters, p.to_go, p.percent_done) == (10, 9, 1, 0, 90.0)
    assert hourly == (9, 3, 1)  # three failed attempts, then the dead letter
    assert p.pages_per_hour_last_hour >= 9  # all written within the last hour
    assert p.spend is not None and p.wasted is not None and 0 < p.wasted < p.spend
    assert p.cost_to_go == 0
    report = result.report_path.read_text()  # the report says the same of the whole job
    assert "## The whole job" in report
    assert "- progress: 9 of 10 pages written (90.0%), 0 to go (counted at " in report


def test_before_any_result_a_page_to_go_is_priced_by_the_model_table_at_its_resolution(
    tmp_path: Path,
) -> None:
    from commands.config import Config
    from commands.models import row_for
    from commands.rules.cost import token_cost
    from commands.rules.tokens import media_tokens, text_tokens
    from commands.views.progress import progress_of
    from eventlog.events import PagesCounted
    from projections import queries

    config = Config.model_validate(
        {"gemini": {"model": "gemini-3-flash-preview", "media_resolution": "high"}}
    )
    store = open_store(tmp_path / "log.db", create=True)
    try:
        store.append([PagesCounted(path="/in/S/X", state="S", school="X", pages=10)], actor="t")
        counts = queries.status_counts(store)
        p = progress_of(store, config, NOW, counts, 0, [])
    finally:
        store.close()
    image = media_tokens(row_for(config.gemini.model), "high", "image", None)
    assert image == 1120  # Gemini 3's figure at high, not one Gemini 2.x tile
    per_page = token_cost(
        image + text_tokens(len(config.gemini.prompt)), 600, config.gemini.model, config.pricing
    )
    assert per_page is not None and p.cost_to_go == round(per_page * 10, 4)
