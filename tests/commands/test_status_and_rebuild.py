from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.commands.conftest import invoke
from tests.conftest import file_digest
from tests.scenario import all_events, scenario


def test_status_text_and_json(db_path: Path) -> None:
    from projections import open_store

    s = open_store(db_path, create=True)
    for actor, group in scenario()[:15]:
        s.append(group, actor=actor)
    s.close()
    out = invoke(db_path, "status").stdout
    assert "active        1 batch(es)" in out and "batches/b5" in out
    assert "dead letters  0" in out
    data = json.loads(invoke(db_path, "status", "--json").stdout)
    assert data["active_batches"][0]["batch_id"] == "batches/b5"
    assert data["in_flight"] == 1 and data["written"] == 3
    # C failed once but was then written; B's counts were reset: nobody is retrying.
    assert data["failing_by_count"] == {}


def test_status_counts_records_still_retrying_by_failures(db_path: Path) -> None:
    from projections import open_store

    s = open_store(db_path, create=True)
    for actor, group in scenario()[:10]:  # B has failed twice and is not written
        s.append(group, actor=actor)
    s.close()
    data = json.loads(invoke(db_path, "status", "--json").stdout)
    assert data["failing_by_count"] == {"2": 1}
    assert "retrying      1 records (1 at 2 failures so far)" in invoke(db_path, "status").stdout


def test_status_json_counts_dead_letters_and_intents(populated: Path) -> None:
    data = json.loads(invoke(populated, "status", "--json").stdout)
    assert data["events"] == len(all_events())
    assert data["open_intents"] == ["gb-r2-2"] and data["dead_letters"] == 0


def test_rebuild_verify_is_clean_then_names_a_sneaked_change(populated: Path) -> None:
    result = invoke(populated, "rebuild-projections", "--verify")
    assert result.exit_code == 0 and "projections match the log" in result.output
    conn = sqlite3.connect(populated)
    conn.executescript(
        "UPDATE projection_gate SET open = 1; "
        "UPDATE failure_counts SET count = 7; UPDATE projection_gate SET open = 0;"
    )
    conn.close()
    before = file_digest(populated)
    result = invoke(populated, "rebuild-projections", "--verify")
    assert result.exit_code == 1
    assert "failure_counts: row ['Texas:Alamo:2021:1'] differs" in result.output
    assert file_digest(populated) == before  # --verify changes nothing
    conn = sqlite3.connect(populated)
    conn.executescript(
        "UPDATE projection_gate SET open = 1; DELETE FROM record_status; "
        "UPDATE projection_gate SET open = 0;"
    )
    conn.close()
    result = invoke(populated, "rebuild-projections", "--verify")
    assert result.exit_code == 1 and "(and 1 more, above)" in result.output
    assert "also differs: failure_counts: row" in result.output  # each table's first row
    assert "differ from the log: record_status: row" in result.output
    assert invoke(populated, "rebuild-projections").exit_code == 0
    assert invoke(populated, "rebuild-projections", "--verify").exit_code == 0
