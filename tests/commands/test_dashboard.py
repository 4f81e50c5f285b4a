"""``dashboard``: Datasette over the log, read-only, with canned queries and a dashboard page.

The database is the demo's: a real run through the emulator (faults, retries, a dead letter).
Every canned query answers through Datasette's own test client with the columns it promises and
the numbers ``analyze-failures`` and ``status`` give on the same database; the dashboard page
references only local assets; a live ``run --loop`` is followed with counts that only go up; and
headless Chromium renders the charts (marks drawn, screenshot not blank).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from commands.config import load_config
from commands.integrations import dashboard
from commands.integrations.demo import POISON, DemoResult, run_demo
from commands.rules.progress import Progress
from commands.views import analyze_failures as af
from commands.views.status import status
from eventlog.events import LeaseAcquired, LeaseRenewed
from gemini_emulator import Emulator
from projections import open_store, queries
from tests.commands import browser
from tests.commands.browser import find_chromium, headless
from tests.commands.dashboard_helpers import (
    colour_variance,
    fetch_json,
    get_all,
    served,
)
from tests.conftest import file_digest, run_cli
from tests.pipeline import API_KEY, keys_for, make_dataset, write_config

DB = "gemini_batches"

#: The columns each canned query promises.
COLUMNS = {
    "failure_summary": [
        "failures_logged",
        "records_with_failures",
        "records_failing_now",
        "dead_letters",
    ],
    "failures_by_error_type": ["error_type", "failures", "records"],
    "failures_by_state": ["state", "failures", "records"],
    "failures_by_school": ["state", "school", "failures", "records"],
    "record_failures": [
        "seq",
        "record_key",
        "state",
        "school",
        "year",
        "page",
        "batch_id",
        "error_type",
        "message",
        "excerpt",
        "attempt",
        "failed_at",
    ],
    "record_history": ["seq", "ts", "type", "actor", "payload"],
    "dead_letters": [
        "record_key",
        "failures",
        "max_retries",
        "dead_lettered_at",
        "last_error_type",
        "last_error",
        "last_failed_at",
        "reset_command",
    ],
    "retrying": ["record_key", "failures", "max_retries", "retry", "status", "last_error_type"],
    "retrying_by_count": ["failures", "records"],
    "active_batches": [
        "batch_id",
        "display_name",
        "model",
        "state",
        "record_count",
        "submitted_at",
        "age_hours",
        "succeeded",
        "failed",
        "pending",
        "transport",
        "project",
    ],
    "quota_hold": [
        "project",
        "held_since",
        "retry_after",
        "halvings",
        "successes_since",
        "message",
    ],
    "project_capacity": [
        "project",
        "batches",
        "max_batches",
        "enqueued_tokens",
        "max_enqueued_tokens",
        "held_since",
        "retry_after",
    ],
    "deferred_submissions": ["display_name", "model", "reason", "deferred_at", "checked", "pages"],
    "spend_by_run_and_model": [
        "run_id",
        "model",
        "results",
        "prompt_tokens",
        "output_tokens",
        "failed_results",
        "cost",
        "wasted_cost",
    ],
    "spend_by_model": [
        "model",
        "results",
        "prompt_tokens",
        "output_tokens",
        "failed_results",
        "cost",
        "wasted_cost",
    ],
    "status_counts": [
        "active_batches",
        "open_intents",
        "in_flight",
        "written",
        "dead_letters",
        "rejected_inputs",
    ],
}
COLUMNS["failure_log"] = COLUMNS["record_failures"]
#: The panels': progress is status --json's 'progress' (its fields, by name), and the moment.
COLUMNS["progress"] = [
    *Progress.__struct_fields__,
    "events",
    "last_event_at",
    "as_of",
]
COLUMNS["stuck"] = ["kind", "name", "detail", "since", "age_hours", "stuck"]
COLUMNS["latest_failures"] = [
    "failed_at",
    "record_key",
    "error_type",
    "attempt",
    "message",
    "excerpt",
]
COLUMNS["pages_written_per_hour"] = ["hour", "pages"]
COLUMNS["pages_written_per_day"] = ["day", "pages"]
COLUMNS["failures_per_hour"] = ["hour", "kind", "pages"]
COLUMNS["spend_per_day"] = ["day", "kind", "cost"]
COLUMNS["failures_in_pages_by_state"] = ["state", "pages", "attempts"]
COLUMNS["failures_in_pages_by_school"] = ["state", "school", "pages", "attempts"]
COLUMNS["failures_in_pages_by_error_type"] = ["error_type", "pages", "attempts"]
COLUMNS["workers"] = [
    "worker",
    "run_id",
    "first_seen_at",
    "renewed_at",
    "expires_at",
    "expired",
    "leases",
    "partitions",
]
COLUMNS["leases"] = ["partition", "worker", "acquired_at", "renewed_at", "expires_at", "expired"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    return run_demo(tmp_path_factory.mktemp("dashboard") / "demo")


def _rows(body: str) -> tuple[list[str], list[dict[str, Any]]]:
    data = json.loads(body)
    return data["columns"], data["rows"]


def test_every_canned_query_answers_with_its_columns_and_the_commands_numbers(
    demo: DemoResult,
) -> None:
    config = demo.config
    meta = dashboard.metadata(config, DB)["databases"][DB]["queries"]
    assert sorted(meta) == sorted(COLUMNS)
    assert not any(q["write"] for q in meta.values())
    key = urllib.parse.quote(POISON)
    paths = [f"/{DB}/{name}.json?_shape=objects&record_key={key}" for name in meta]
    paths.append(f"/{DB}/failure_log.csv")
    answers = get_all(config, paths)
    rows: dict[str, list[dict[str, Any]]] = {}
    for name, (code, body) in zip(meta, answers, strict=False):
        assert code == 200, (name, body[:500])
        columns, rows[name] = _rows(body)
        assert columns == COLUMNS[name], name

    with open_store(config.paths.database) as store, store.snapshot():
        s = af.summary(store)
        by_type, by_state, by_school = (
            af.by_error_type(store),
            af.by_state(store),
            af.by_school(store),
        )
        record = af.record(store, POISON)
        dead = queries.dead_letter_keys(store)
        n_events = queries.count_events(store)
    with open_store(config.paths.database) as store:
        st = status(store, config, scan=False)
        active = queries.active_batches(store)

    assert rows["failure_summary"] == [
        {
            "failures_logged": s.failures_logged,
            "records_with_failures": s.records_with_failures,
            "records_failing_now": s.records_failing_now,
            "dead_letters": s.dead_letters,
        }
    ]
    assert s.failures_logged >= 4 and s.dead_letters == 1  # the demo's faults, for real
    assert [tuple(r.values()) for r in rows["failures_by_error_type"]] == by_type
    assert [tuple(r.values()) for r in rows["failures_by_state"]] == by_state
    assert [tuple(r.values()) for r in rows["failures_by_school"]] == by_school
    assert rows["record_failures"] == record.failures
    assert len(rows["failure_log"]) == s.failures_logged
    history = rows["record_history"]
    assert [r["type"] for r in history].count("RecordFailed") == record.failure_count
    assert history[-1]["type"] == "RecordDeadLettered" and len(history) < n_events
    assert {r["record_key"] for r in rows["dead_letters"]} == dead == {POISON}
    assert rows["dead_letters"][0]["last_error_type"] == record.failures[-1]["error_type"]
    assert {str(r["failures"]): r["records"] for r in rows["retrying_by_count"]} == (
        st.failing_by_count
    )
    assert rows["status_counts"] == [
        {
            "active_batches": len(st.active_batches),
            "open_intents": len(st.open_intents),
            "in_flight": st.in_flight,
            "written": st.written,
            "dead_letters": st.dead_letters,
            "rejected_inputs": st.rejected_inputs,
        }
    ]
    assert rows["project_capacity"] == [
        {
            "project": p.name,
            "batches": p.batches,
            "max_batches": p.max_batches,
            "enqueued_tokens": p.tokens,
            "max_enqueued_tokens": p.max_tokens or None,
            "held_since": p.hold.since if p.hold else None,
            "retry_after": p.hold.next_try_after if p.hold else None,
        }
        for p in st.projects
    ]
    assert [r["project"] for r in rows["active_batches"]] == [b.project for b in active]
    spend = rows["spend_by_model"]
    assert sum(r["prompt_tokens"] for r in spend) == st.spend.prompt_tokens > 0
    assert sum(r["cost"] for r in spend) == pytest.approx(st.spend.cost)
    assert sum(r["wasted_cost"] for r in spend) == pytest.approx(st.spend.wasted_cost)
    assert st.last_run is not None
    [this_run] = [r for r in rows["spend_by_run_and_model"] if r["run_id"] == st.last_run.run_id]
    assert this_run["cost"] == pytest.approx(st.last_run.spend.cost)
    # Datasette's own CSV link exports the failure log, header first.
    csv_code, csv_body = answers[-1]
    assert csv_code == 200 and csv_body.splitlines()[0].split(",") == COLUMNS["failure_log"]
    assert len(csv_body.strip().splitlines()) == s.failures_logged + 1


def test_the_dashboard_page_answers_with_local_assets_and_every_chart_query_reads(
    demo: DemoResult,
) -> None:
    config = demo.config
    before = file_digest(config.paths.database)
    charts = dashboard.metadata(config, DB)["plugins"]["datasette-dashboards"]["pipeline"]["charts"]
    [(code, page)] = get_all(config, ["/-/dashboards/pipeline"])
    assert code == 200 and "Pages written per hour" in page
    # What the browser loads (scripts, styles, images, frames) comes from this server; plain
    # links (the "Powered by Datasette" footer) are not loaded.
    assets = re.findall(r'<(?:script|link|img|iframe|source)\b[^>]*?(?:src|href)="([^"]*)"', page)
    assert len(assets) >= 5, assets
    assert all(u.startswith("/") and not u.startswith("//") for u in assets), assets
    assert not re.search(r"url\((['\"]?)(https?:)?//", page), "a style loads from elsewhere"
    chart_sql = [
        f"/{DB}.json?_shape=objects&sql={urllib.parse.quote(c['query'])}" for c in charts.values()
    ]
    # No write path: a write through the SQL box is refused, and so is a canned query's POST.
    refused = [f"/{DB}.json?sql={urllib.parse.quote('DELETE FROM events')}"]
    answers = get_all(config, [*assets, *chart_sql, *refused])
    assert all(code == 200 for code, _ in answers[: len(assets)]), "an asset is missing"
    for (name, _), (code, body) in zip(charts.items(), answers[len(assets) :], strict=False):
        assert code == 200 and json.loads(body)["rows"], name
    assert answers[-1][0] == 400
    assert file_digest(config.paths.database) == before


def test_the_home_page_links_the_dashboard_and_hides_the_internal_tables(
    demo: DemoResult,
) -> None:
    (home_code, home), (db_code, db) = get_all(demo.config, ["/", f"/{DB}.json"])
    assert home_code == 200 and db_code == 200
    assert f'<a href="/-/dashboards/{dashboard.SLUG}">' in home
    hidden = {t["name"] for t in json.loads(db)["tables"] if t["hidden"]}
    assert hidden == set(dashboard.INTERNAL_TABLES)
    listed = set(re.findall(rf'<a href="/{DB}/(\w+)"', home))
    assert listed and not listed & hidden, listed
    assert f"{len(hidden)} hidden tables" in home


def test_the_dashboard_follows_a_live_run_loop_with_counts_that_only_go_up(
    tmp_path: Path,
) -> None:
    keys = keys_for(2, 2, 1, 5)
    make_dataset(tmp_path / "input", keys)
    timing = {"timing": {"pending_seconds": 0.2, "running_seconds": 0.2}}
    with Emulator(timing, api_key=API_KEY) as emulator:
        path = write_config(
            tmp_path, emulator.url, batching={"batch_size": 4, "max_active_batches": 2}
        )
        config = load_config(path)
        open_store(config.paths.database, create=True).close()  # served before the first event
        env = {"E2E_GEMINI_KEY": API_KEY}
        loop = subprocess.Popen(
            [sys.executable, "-m", "commands", "--config", str(path), "run", "--loop"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **env},
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "loop.err").open("w"),
        )
        try:
            with served(path) as base:
                sql = urllib.parse.quote(queries.STATUS_COUNTS_SQL)
                seen: list[tuple[int, int]] = []
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    [row] = fetch_json(f"{base}/{DB}.json?_shape=objects&sql={sql}")["rows"]
                    events = fetch_json(
                        f"{base}/{DB}/failure_summary.json?_shape=objects"
                    )  # a canned query keeps answering too
                    assert events["rows"]
                    seen.append((row["written"], row["dead_letters"]))
                    if row["written"] == len(keys):
                        break
                    time.sleep(0.1)
        finally:
            loop.terminate()
            loop.wait(timeout=20)
    assert seen[-1][0] == len(keys), (seen[-5:], (tmp_path / "loop.err").read_text()[-2000:])
    assert len({w for w, _ in seen}) >= 3, seen  # it was watched while it grew
    assert seen == sorted(seen), "a count went down"
    assert config.paths.database.exists()


# --- bad input ---------------------------------------------------------------------------------


def _one_error_line(r: Any, *words: str) -> None:
    assert r.code == 1, (r.code, r.err)
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.err
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    _one_error_line(run_cli("--db", str(missing), "dashboard", cwd=tmp_path), str(missing))
    assert not missing.exists()


def test_a_corrupt_database_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database at all\n" * 200)
    _one_error_line(run_cli("--db", str(bad), "dashboard", cwd=tmp_path), str(bad))


def test_a_postgresql_log_is_refused_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "pg.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    _one_error_line(
        run_cli("--config", str(config), "dashboard", cwd=tmp_path), "SQLite", "[database] url"
    )


def test_db_points_the_dashboard_of_a_postgresql_config_at_a_sqlite_copy(
    populated: Path, tmp_path: Path
) -> None:
    """``--db FILE`` serves that SQLite file though the config names PostgreSQL: the refusal
    is passed and the file opened (the busy port is the next thing it meets)."""
    config = tmp_path / "pg.toml"
    config.write_text('[database]\nurl = "postgresql://nobody@127.0.0.1:1/none"\n')
    before = file_digest(populated)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(
            "--config",
            str(config),
            "--db",
            str(populated),
            "dashboard",
            "--port",
            str(port),
            cwd=tmp_path,
        )
    _one_error_line(r, f"port {port}", "in use")
    assert file_digest(populated) == before


def test_a_port_in_use_is_one_line(demo: DemoResult, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run_cli(
            "--config", str(demo.config_path), "dashboard", "--port", str(port), cwd=tmp_path
        )
    _one_error_line(r, f"port {port}", "in use")


def test_another_host_needs_public_and_public_warns(demo: DemoResult, tmp_path: Path) -> None:
    r = run_cli("--config", str(demo.config_path), "dashboard", "--host", "0.0.0.0", cwd=tmp_path)
    _one_error_line(r, "--host 0.0.0.0", "--public")
    assert dashboard.check_host("127.0.0.1", public=False) is None
    assert dashboard.check_host("::1", public=False) is None
    warning = dashboard.check_host("0.0.0.0", public=True)
    assert warning and "readable by anyone" in warning


def test_the_demo_ends_by_printing_the_dashboard_command(demo: DemoResult) -> None:
    from commands.integrations.demo import dashboard_command

    assert dashboard_command(demo.config_path).endswith(
        f"--config {demo.config_path} dashboard --open"
    )


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    return find_chromium()


def test_headless_chromium_renders_the_charts(
    demo: DemoResult, chromium: str, tmp_path: Path
) -> None:
    with served(demo.config_path) as base:
        url = f"{base}/-/dashboards/pipeline"
        dom = headless(chromium, tmp_path / "profile", "--dump-dom", url)
        shot = tmp_path / "dashboard.png"
        taken = headless(chromium, tmp_path / "profile", f"--screenshot={shot}", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    # Every Vega-Lite chart drew an SVG with marks; the progress tiles show the status figures.
    drawn_cards = browser.cards(dom.stdout)
    vega = {n for n, c in dashboard.charts(demo.config, DB).items() if c["library"] == "vega-lite"}
    drawn = {n for n, html in drawn_cards.items() if "<svg" in html and "role-mark" in html}
    assert vega <= drawn, (vega, drawn)
    assert len(re.findall(r"<path[^>]+d=\"M", dom.stdout)) >= 10
    assert f'aria-label="Written: {demo.status.written} (pages)"' in dom.stdout
    assert taken.returncode == 0 and shot.is_file(), taken.stderr[-2000:]
    variance, colours = colour_variance(shot.read_bytes())
    assert variance > 100 and colours > 20, (variance, colours)  # not blank
    _charts_read_right(drawn_cards, demo)


def _charts_read_right(cards: dict[str, str], demo: DemoResult) -> None:
    """Time axes repeat no label; the demo's one or two busy hours (and its one day) are narrow
    bars among empty ones, not a full-width block; colour has a legend; every status bar has
    its number beside it, a zero too."""
    for name in ("pages_written_per_hour", "failures_per_hour", "pages_written_per_day"):
        for labels in browser.axis_labels(cards[name]):
            assert len(labels) == len(set(labels)) >= 2, (name, labels)
    for name in ("pages_written_per_hour", "pages_written_per_day", "spend_per_day"):
        widths = browser.bar_widths(cards[name])
        assert widths and max(widths) < browser.svg_width(cards[name]) / 8, (name, widths)
    for name in ("pages_by_status", "failures_per_hour", "spend_per_day"):
        assert "role-legend" in cards[name], f"{name} has no legend"
    p = demo.status.progress
    assert p is not None
    figures = [p.written, p.in_flight, p.retrying, p.dead_letters, p.to_go]
    assert browser.mark_texts(cards["pages_by_status"]) == [f"{n:,}" for n in figures]
    assert 0 in figures  # a zero bar, seen by its number
    statuses = ["written", "in flight", "retrying", "dead-lettered", "to go"]
    assert statuses in browser.axis_labels(cards["pages_by_status"])


def test_the_browser_test_says_clearly_when_chromium_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        find_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        find_chromium()


def test_project_capacity_has_a_row_per_configured_project_in_its_order(tmp_path: Path) -> None:
    """Two projects: the one with a batch shows it and its tokens against its own limits; the
    one with none shows zeros; no token limit is NULL (status: "no limit")."""
    from eventlog.events import BatchSubmitted
    from projections.dashboard_sql import Pricing, ProjectLimits, canned_queries

    limits = [ProjectLimits("b", 3, 0), ProjectLimits("a", 2, 9000)]
    [sql] = [
        q.sql
        for q in canned_queries(Pricing([], 0.5, "m"), 3, limits)
        if q.name == "project_capacity"
    ]
    with open_store(tmp_path / "gb.db", create=True) as store:
        store.append(
            [
                BatchSubmitted(
                    batch_id="batches/1",
                    display_name="gb-1",
                    model="m",
                    record_keys=["S:X:2020:1"],
                    estimated_tokens=1234,
                    project="a",
                )
            ],
            actor="run:r",
        )
        rows = store.query(sql)
    assert rows == [("b", 0, 3, 0, None, None, None), ("a", 1, 2, 1234, 9000, None, None)]


def test_the_workers_and_leases_queries_show_what_status_shows(tmp_path: Path) -> None:
    config = load_config(
        write_config(tmp_path, "http://127.0.0.1:9", workers={"mode": "shared", "partitions": 4})
    )
    config.paths.database.parent.mkdir(parents=True)
    live, lapsed = "2999-01-01T00:00:00.000000Z", "2001-01-01T00:00:00.000000Z"
    with open_store(config.paths.database, create=True) as store:
        store.append(
            [
                LeaseRenewed(worker="a", partitions=[], expires_at=live, run_id="run-a"),
                LeaseAcquired(partition="1", worker="a", expires_at=live),
                LeaseAcquired(partition="0", worker="a", expires_at=live),
                LeaseRenewed(worker="b", partitions=[], expires_at=lapsed, run_id="run-b"),
                LeaseAcquired(partition="2", worker="b", expires_at=lapsed),
            ],
            actor="run:test",
        )
        st = status(store, config, scan=False)
    answers = get_all(
        config, [f"/{DB}/{name}.json?_shape=objects" for name in ("workers", "leases")]
    )
    (workers_code, workers_body), (leases_code, leases_body) = answers
    assert workers_code == 200 and leases_code == 200, (workers_body, leases_body)
    workers_columns, workers = _rows(workers_body)
    leases_columns, leases = _rows(leases_body)
    assert workers_columns == COLUMNS["workers"] and leases_columns == COLUMNS["leases"]
    assert [
        (r["worker"], r["run_id"], r["renewed_at"], r["expires_at"], bool(r["expired"]))
        for r in workers
    ] == [(w.worker, w.run_id, w.renewed_at, w.expires_at, w.expired) for w in st.workers]
    assert {r["worker"]: (r["leases"], r["partitions"]) for r in workers} == {
        "a": (2, "0, 1"),
        "b": (1, "2"),
    }
    assert [(r["partition"], r["worker"], r["expired"]) for r in leases] == [
        ("0", "a", 0),
        ("1", "a", 0),
        ("2", "b", 1),
    ]
