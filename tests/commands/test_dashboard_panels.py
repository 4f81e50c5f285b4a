"""The dashboard's panels say what ``status`` says: the progress (counts through the same texts,
the rates, the expected finish and the cost to go computed in SQL as ``status`` computes them
in Python), what may be stuck, the spend per day; and the failing panels count pages, escape
what a model wrote, and give a reset command that resets.

The SQL runs here through the store (SQLite, apsw) at a chosen ``now`` (the dashboard's is
SQLite's clock); Datasette runs the same texts in ``test_dashboard.py``.
"""

from __future__ import annotations

import shlex
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.config import Config, load_config
from commands.integrations import dashboard
from commands.views.status import status
from eventlog.events import (
    BatchStateObserved,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    LeaseAcquired,
    LeaseRenewed,
    PagesCounted,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
)
from eventlog.store import EventStore
from eventlog.timestamps import format_ts
from projections import open_store, panels
from projections.dashboard_sql import canned_queries
from projections.progress import progress_sql
from projections.spend_sql import spend_per_day_sql
from projections.sql_text import literal, table_sql
from tests.conftest import run_cli
from tests.pipeline import write_config

BASE = datetime(2026, 12, 6, 10, tzinfo=UTC)


class Log:
    """A log whose events are stamped at the times the test chooses, read as Datasette reads
    it (Python's ``sqlite3``, read-only: its SQLite, not apsw's)."""

    def __init__(self, store: EventStore, clock: list[datetime]) -> None:
        self.store, self.clock = store, clock

    def at(self, when: datetime, *events: Event, actor: str = "run:r1") -> None:
        self.clock[0] = when
        self.store.append(list(events), actor=actor)

    def rows(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        db = sqlite3.connect(f"file:{self.store.path}?mode=ro", uri=True)
        try:
            cursor = db.execute(sql, params or {})
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            db.close()


@contextmanager
def log_for(model: str = "gemini-2.5-flash", **sections: Any) -> Iterator[tuple[Log, Config]]:
    with tempfile.TemporaryDirectory() as d:
        config = load_config(
            write_config(Path(d), "http://127.0.0.1:9", gemini={"model": model}, **sections)
        )
        config.paths.database.parent.mkdir(parents=True)
        clock = [BASE - timedelta(days=3)]
        store = open_store(config.paths.database, create=True, clock=lambda: clock[0])
        try:
            yield Log(store, clock), config
        finally:
            store.close()


def written(key: str, model: str, prompt: int = 300, output: int = 120) -> RecordValidated:
    return RecordValidated(
        record_key=key,
        batch_id="batches/b",
        output_path=f"/out/{key}.json",
        output_sha256="ab" * 32,
        prompt_tokens=prompt,
        output_tokens=output,
        total_tokens=prompt + output,
        model=model,
    )


def failed(key: str, model: str, message: str = "text: Field required") -> RecordFailed:
    return RecordFailed(
        record_key=key,
        batch_id="batches/b",
        error_type="schema_violation",
        message=message,
        excerpt='{"title": "x"}',
        prompt_tokens=250,
        output_tokens=90,
        total_tokens=340,
        model=model,
    )


def _panel(log: Log, config: Config, now: datetime) -> dict[str, Any]:
    p = dashboard.panels_of(config)
    sql = progress_sql(literal(format_ts(now)), dashboard.pricing_of(config), p.page_cost, "USD")
    [row] = log.rows(sql)
    return row


#: Models: priced by its own entry, by a family prefix, with ``models/``, and with no price.
MODELS = ["gemini-2.5-flash", "gemini-3-flash-preview", "models/gemini-2.5-pro", "unpriced-x"]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(
        st.tuples(st.integers(0, 27 * 60), st.integers(1, 30), st.integers(0, 900)), max_size=6
    ),
    into_ms=st.integers(0, 3_599_999),
    extra=st.integers(0, 400),
    dead=st.integers(0, 2),
    retrying=st.integers(0, 2),
    in_flight=st.integers(0, 3),
    model=st.sampled_from(MODELS),
)
def test_the_progress_panel_is_status_progress(
    writes: list[tuple[int, int, int]],
    into_ms: int,
    extra: int,
    dead: int,
    retrying: int,
    in_flight: int,
    model: str,
) -> None:
    """Any pages written over the last 27 hours, any moment in the hour: the panel's figures
    are ``status``'s (counts exactly; the rates, the finish and the money at their rounding)."""
    now = BASE + timedelta(milliseconds=into_ms)
    with log_for(model) as (log, config):
        n = 0
        for back, count, prompt in sorted(writes, reverse=True):
            keys = [f"S:A:2020:{n + i}" for i in range(count)]
            n += count
            log.at(now - timedelta(minutes=back), *(written(k, model, prompt) for k in keys))
        early = now - timedelta(days=2)
        for i in range(dead):
            k = f"S:B:2020:{i}"
            log.at(
                early, failed(k, model), RecordDeadLettered(record_key=k, failures=1, max_retries=1)
            )
        log.at(early, *(failed(f"S:C:2020:{i}", model) for i in range(retrying)))
        keys = [f"S:D:2020:{i}" for i in range(in_flight)]
        log.at(
            early,
            BatchSubmitted(batch_id="batches/x", display_name="x", model=model, record_keys=keys),
        )
        known = n + dead + retrying + in_flight + extra
        log.at(early, PagesCounted(path="/in/S/A", state="S", school="A", pages=known))
        log.clock[0] = now
        expected = status(log.store, config, scan=False).progress
        row = _panel(log, config, now)
        events = log.store.last_seq()
    assert expected is not None
    exact = ["known", "counted_at", "written", "in_flight", "retrying", "dead_letters"]
    exact += ["rejected_inputs", "to_go", "currency", "cost_basis"]
    assert {k: row[k] for k in exact} == {k: getattr(expected, k) for k in exact}
    assert row["percent_done"] == pytest.approx(expected.percent_done, abs=0.0100001)
    for rate in ("pages_per_hour_last_hour", "pages_per_hour_last_day"):
        assert row[rate] == pytest.approx(getattr(expected, rate), abs=0.1000001), rate
    if expected.hours_to_go is None:
        assert row["hours_to_go"] is None and row["expected_finish"] is None
    else:
        assert row["hours_to_go"] == pytest.approx(expected.hours_to_go, rel=1e-6, abs=0.0100001)
    if expected.expected_finish is None:
        assert row["expected_finish"] is None
    else:
        seconds = abs((_at(row["expected_finish"]) - _at(expected.expected_finish)).total_seconds())
        assert seconds <= 1 + (expected.hours_to_go or 0) * 3600 * 1e-6, (row, expected)
    for money in ("spend", "wasted", "cost_to_go"):
        if getattr(expected, money) is None:
            assert row[money] is None, money
        else:
            # cost_to_go is rounded to 4 places (SQLite rounds a tie up, Python to the float)
            assert row[money] == pytest.approx(getattr(expected, money), rel=1e-9, abs=1.5e-4)
    assert row["events"] == events


def _at(iso: str) -> datetime:
    return datetime.strptime(iso, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("prompts", [(100, 101), (101, 102), (100, 102)])
def test_the_cost_to_go_rounds_the_mean_tokens_as_status_does(prompts: tuple[int, int]) -> None:
    """A mean of x.5 tokens a page is rounded half to even, as Python's round(): over ten
    million pages to go, one token a page is dollars, not a rounding."""
    with log_for() as (log, config):
        m = config.gemini.model
        log.at(BASE, *(written(f"S:A:2020:{i}", m, p) for i, p in enumerate(prompts)))
        log.at(BASE, PagesCounted(path="/in/S/A", state="S", school="A", pages=10_000_002))
        expected = status(log.store, config, scan=False).progress
        row = _panel(log, config, BASE)
    assert expected is not None and expected.to_go == 10_000_000
    assert row["cost_to_go"] == pytest.approx(expected.cost_to_go, rel=1e-12)


def test_the_progress_panel_knows_nothing_of_an_empty_log() -> None:
    with log_for() as (log, config):
        row = _panel(log, config, BASE)
        expected = status(log.store, config, scan=False).progress
    assert expected is not None
    assert (row["known"], row["written"], row["percent_done"]) == (0, 0, None)
    assert (
        (row["expected_finish"], row["hours_to_go"])
        == (None, 0.0)
        == (
            expected.expected_finish,
            expected.hours_to_go,
        )
    )
    assert row["cost_basis"] == expected.cost_basis and row["events"] == 0


# --- what may be stuck -------------------------------------------------------------------------


def _stuck_log(log: Log) -> None:
    """Two batches (27 h and 2 h old), two intents (3 h and 5 min), a hold of the configured
    project (90 min) and one of a project the config does not name, a live worker, a lapsed one
    holding a partition and a lapsed one holding none."""
    now = BASE
    live, lapsed = format_ts(now + timedelta(minutes=5)), format_ts(now - timedelta(minutes=30))
    log.at(
        now - timedelta(hours=27),
        BatchSubmitted(
            batch_id="batches/old", display_name="o", model="m", record_keys=["S:A:1:1"]
        ),
    )
    log.at(
        now - timedelta(hours=26),
        BatchStateObserved(batch_id="batches/old", state="JOB_STATE_RUNNING"),
    )
    log.at(
        now - timedelta(hours=3),
        BatchSubmissionIntended(display_name="gb-3h", model="m", record_keys=["S:A:1:2"]),
    )
    log.at(
        now - timedelta(hours=2),
        BatchSubmitted(
            batch_id="batches/new", display_name="n", model="m", record_keys=["S:A:1:3"]
        ),
    )
    log.at(
        now - timedelta(minutes=90),
        BatchSubmissionDeferred(
            display_name="gb-held", reason="quota", message="429", retry_after=live
        ),
        BatchSubmissionDeferred(
            display_name="gb-other", reason="quota", message="429", project="elsewhere"
        ),
    )
    log.at(
        now - timedelta(minutes=70),
        LeaseRenewed(worker="alive", partitions=["0"], expires_at=live, run_id="r-a"),
        LeaseAcquired(partition="0", worker="alive", expires_at=live),
        LeaseRenewed(worker="gone", partitions=["1"], expires_at=lapsed, run_id="r-g"),
        LeaseAcquired(partition="1", worker="gone", expires_at=lapsed),
        LeaseRenewed(worker="idle", partitions=[], expires_at=lapsed, run_id="r-i"),
    )
    log.at(
        now - timedelta(minutes=5),
        BatchSubmissionIntended(display_name="gb-5m", model="m", record_keys=["S:A:1:4"]),
    )


@pytest.mark.parametrize("after", [0.0, 4.0, 60.0, 100.0, 1e6])
def test_the_stuck_panel_marks_what_status_marks(after: float) -> None:
    with log_for() as (log, config):
        _stuck_log(log)
        log.clock[0] = BASE
        expected = status(log.store, config, scan=False, stuck_after=after).stuck
        sql = panels.stuck_sql(literal(format_ts(BASE)), ["default"], 60.0, 24.0)
        rows = log.rows(sql, {"stuck_after": str(after)})
        bounds = log.store.bounds()
    marked = [r for r in rows if r["stuck"]]
    assert [(r["kind"], r["name"], r["since"], r["stuck"]) for r in marked] == [
        (m.kind, m.name, m.since, m.why) for m in expected
    ]
    assert [r["age_hours"] for r in marked] == pytest.approx([m.age_hours for m in expected])
    assert rows[: len(marked)] == marked  # marked first, oldest first
    kinds = {(r["kind"], r["name"]) for r in rows}
    assert kinds == {
        ("batch", "batches/old"),
        ("batch", "batches/new"),
        ("intent", "gb-3h"),
        ("intent", "gb-5m"),
        ("quota hold", "default"),
        ("worker", "alive"),
        ("worker", "gone"),
        ("worker", "idle"),
        ("log", "last event"),
    }
    [old] = [r for r in rows if r["name"] == "batches/old"]
    assert old["detail"].startswith("JOB_STATE_RUNNING: 0 done, 0 failed, 0 pending of 1 pages")
    [last] = [r for r in rows if r["kind"] == "log"]
    assert bounds is not None and last["since"] == bounds[1][1]


def test_a_quiet_log_is_marked_only_while_work_is_outstanding() -> None:
    with log_for() as (log, config):
        m = config.gemini.model
        log.at(BASE - timedelta(hours=3), written("S:A:2020:1", m))
        sql = panels.stuck_sql(literal(format_ts(BASE)), ["default"], 60.0, 24.0)
        log.clock[0] = BASE
        zero = {"stuck_after": "0"}
        idle = (status(log.store, config, scan=False, stuck_after=0).stuck, log.rows(sql, zero))
        log.at(
            BASE - timedelta(hours=2),
            BatchSubmitted(
                batch_id="batches/b", display_name="b", model=m, record_keys=["S:A:2020:2"]
            ),
        )
        log.clock[0] = BASE
        busy = (status(log.store, config, scan=False, stuck_after=0).stuck, log.rows(sql, zero))
    assert idle[0] == [] and [r["stuck"] for r in idle[1]] == [""]
    assert [m.kind for m in busy[0]] == ["log"]
    assert [(r["kind"], bool(r["stuck"])) for r in busy[1]] == [("log", True), ("batch", False)]


def test_the_stuck_threshold_defaults_to_status_s_when_left_empty() -> None:
    with log_for() as (log, config):
        _stuck_log(log)
        log.clock[0] = BASE
        expected = status(log.store, config, scan=False).stuck
        sql = panels.stuck_sql(literal(format_ts(BASE)), ["default"], 60.0, 24.0)
        rows = log.rows(sql, {"stuck_after": ""})
    assert [(r["kind"], r["name"]) for r in rows if r["stuck"]] == [
        (m.kind, m.name) for m in expected
    ]
    assert {m.kind for m in expected} == {"batch", "intent", "quota hold", "worker"}


# --- what is failing ---------------------------------------------------------------------------


def test_failures_are_counted_in_pages_with_the_attempts_beside() -> None:
    """The issue's example: California's 4 failed attempts are 2 pages."""
    with log_for() as (log, _):
        m = "gemini-2.5-flash"
        log.at(BASE, *(failed("California:A:2020:1", m) for _ in range(3)))
        log.at(BASE, failed("California:B:2020:2", m), failed("Texas:C:2021:1", m))
        states = log.rows(panels.failures_in_pages_sql("state"))
        schools = log.rows(panels.failures_in_pages_sql("school"))
    assert states == [
        {"state": "California", "pages": 2, "attempts": 4},
        {"state": "Texas", "pages": 1, "attempts": 1},
    ]
    assert schools[0] == {"state": "California", "school": "A", "pages": 1, "attempts": 3}


def test_the_dead_letters_reset_command_resets_the_dead_letter(tmp_path: Path) -> None:
    """Names a shell would split or quote are quoted: the command, pasted, resets the page."""
    with log_for() as (log, config):
        key = "New York:St. John's:2021:3"
        m = config.gemini.model
        log.at(BASE, failed(key, m), RecordDeadLettered(record_key=key, failures=1, max_retries=1))
        log.at(BASE, failed("Texas:Alamo:2021:1", m))
        [row] = log.rows(panels.dead_letters_sql(dashboard.panels_of(config).command))
        log.store.close()
        words = shlex.split(row["reset_command"])
        assert words[:3] == ["python", "-m", "commands"] and "reset-failures" in words
        r = run_cli(*words[3:], cwd=tmp_path)
        assert r.code == 0, r.err
        log.store = open_store(config.paths.database)
        after = status(log.store, config, scan=False)
    assert row["record_key"] == key and row["last_error"] == "text: Field required"
    assert words[words.index("--states") + 1] == "New York"
    assert words[words.index("--schools") + 1] == "St. John's"
    assert after.dead_letters == 0 and after.failing_by_count == {"1": 1}  # Texas untouched


def test_a_table_card_escapes_what_a_model_wrote_and_says_none_when_empty() -> None:
    hostile = "<img src=x onerror=alert(1)> & \"'"
    columns = ("failed_at", "record_key", "error_type", "attempt", "message", "excerpt")
    card = table_sql(
        panels.latest_failures_sql(5), columns, ("message", "excerpt"), "none", rows=5, clip=20
    )
    with log_for() as (log, config):
        assert [r["failed_at"] for r in log.rows(card)] == ["none"]
        log.at(BASE, failed("S:A:2020:1", config.gemini.model, message=hostile))
        [row] = log.rows(card)
    assert row["message"] == "&lt;img src=x onerror=…"
    assert "<" not in row["message"] and row["excerpt"] == "{&quot;title&quot;: &quot;x&quot;}"


# --- the charts' time series -------------------------------------------------------------------


def test_the_hourly_and_daily_series_are_zero_filled_newest_first_and_sum_to_status() -> None:
    now = BASE + timedelta(minutes=20)
    with log_for() as (log, config):
        m = config.gemini.model
        log.at(now - timedelta(days=2, hours=1), *(written(f"S:A:1:{i}", m) for i in range(4)))
        log.at(now - timedelta(minutes=10), *(written(f"S:B:1:{i}", m) for i in range(3)))
        log.at(now - timedelta(minutes=5), failed("S:C:1:1", m))
        log.clock[0] = now
        at = literal(format_ts(now))
        hours = log.rows(panels.written_per_hour_sql(at))
        days = log.rows(panels.written_per_day_sql(at))
        fails = log.rows(panels.failures_per_hour_sql(at))
        spend = log.rows(spend_per_day_sql(dashboard.pricing_of(config), at))
        st = status(log.store, config, scan=False)
    assert len(hours) == panels.HOURS_SHOWN and hours[0] == {
        "hour": "2026-12-06T10:00:00Z",
        "pages": 3,
    }
    assert [h["hour"] for h in hours] == sorted((h["hour"] for h in hours), reverse=True)
    assert sum(h["pages"] for h in hours) == 3  # two days ago is out of the last 48 h
    assert len(days) == 14 and days[0]["day"] == "2026-12-06T00:00:00Z"
    assert [d["pages"] for d in days[:3]] == [3, 0, 4] and sum(
        d["pages"] for d in days
    ) == st.written
    assert {(f["kind"], f["pages"]) for f in fails[:2]} == {
        ("failed attempts", 1),
        ("dead-lettered", 0),
    }
    assert len(spend) == 2 * 14
    assert sum(s["cost"] for s in spend) == pytest.approx(st.spend.cost, abs=1e-5)
    wasted = sum(s["cost"] for s in spend if s["kind"] == "wasted on failed answers")
    assert wasted == pytest.approx(st.spend.wasted_cost, abs=1e-5)


def test_every_canned_query_of_the_panels_runs_on_an_empty_log() -> None:
    with log_for() as (log, config):
        for q in canned_queries(
            dashboard.pricing_of(config),
            3,
            dashboard.project_limits(config),
            dashboard.panels_of(config),
        ):
            params = {"record_key": "x", "stuck_after": ""}
            log.rows(q.sql, {k: v for k, v in params.items() if f":{k}" in q.sql})
