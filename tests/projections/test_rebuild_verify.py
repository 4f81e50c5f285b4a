from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import apsw
import pytest

from eventlog.connection import translate_sqlite_errors
from eventlog.errors import ProjectionWriteRefused
from eventlog.store import EventStore
from projections import open_store, rebuild, snapshot_rows, verify
from tests.outside import outside_executescript
from tests.reads import scalar
from tests.scenario import scenario


@pytest.fixture
def full(store: EventStore) -> EventStore:
    for actor, group in scenario():
        store.append(group, actor=actor)
    return store


def _sneak(db: Path, sql: str) -> None:
    """Write to a projection the way only a determined operator could: open the gate first."""
    outside_executescript(
        db, f"UPDATE projection_gate SET open = 1; {sql}; UPDATE projection_gate SET open = 0;"
    )


def test_verify_is_clean_on_a_live_database(full: EventStore) -> None:
    assert verify(full) is None


@pytest.mark.parametrize(
    ("sql", "table", "fragment"),
    [
        (
            "UPDATE failure_counts SET count = 9 WHERE record_key = 'Texas:Alamo:2021:1'",
            "failure_counts",
            "differs",
        ),
        (
            "DELETE FROM failure_logs WHERE seq = (SELECT min(seq) FROM failure_logs)",
            "failure_logs",
            "missing from the live table",
        ),
        (
            "INSERT INTO active_batches VALUES "
            "('batches/ghost', 'g', 'm', 'S', 1, 1, 't', 't', 0, 0, 0, 'inline', 0, 'default')",
            "active_batches",
            "should not exist",
        ),
    ],
)
def test_verify_names_the_first_difference_and_rebuild_repairs_it(
    full: EventStore, db_path: Path, sql: str, table: str, fragment: str
) -> None:
    good = snapshot_rows(full)
    _sneak(db_path, sql)
    diff = verify(full)
    assert diff is not None and diff.table == table
    assert fragment in diff.describe()
    rebuild(full)
    assert verify(full) is None
    assert snapshot_rows(full) == good


def test_a_lagging_checkpoint_is_reported(full: EventStore, db_path: Path) -> None:
    _sneak(db_path, "UPDATE projection_checkpoints SET seq = 3")
    diff = verify(full)
    assert diff is not None and diff.table == "projection_checkpoints"


def test_reopening_catches_up_events_appended_past_the_checkpoint(tmp_path: Path) -> None:
    groups = scenario()
    reference = open_store(tmp_path / "ref.db", create=True)
    for actor, group in groups:
        reference.append(group, actor=actor)
    lagging_path = tmp_path / "lag.db"
    lagging = open_store(lagging_path, create=True)
    for actor, group in groups[:-3]:
        lagging.append(group, actor=actor)
    lagging.close()
    bare = EventStore.open(lagging_path)  # no projector: the tail is appended to the log only
    for actor, group in groups[-3:]:
        bare.append(group, actor=actor)
    bare.close()
    caught_up = open_store(lagging_path)
    checkpoint = scalar(caught_up, "SELECT min(seq) FROM projection_checkpoints")
    assert checkpoint == caught_up.last_seq() == reference.last_seq()
    assert _without_times(snapshot_rows(caught_up)) == _without_times(snapshot_rows(reference))
    assert verify(caught_up) is None
    caught_up.close()
    reference.close()


def _without_times(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """Two stores stamp different times; compare everything else."""
    return {
        name: [
            tuple(
                v for v in r if not (isinstance(v, str) and v.startswith("20") and v.endswith("Z"))
            )
            for r in table
        ]
        for name, table in rows.items()
    }


def test_a_new_projection_version_rebuilds_from_the_log_on_open(
    full: EventStore, db_path: Path
) -> None:
    good = snapshot_rows(full)
    full.close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE meta SET value = 'old' WHERE key = 'projection_version'")
    conn.commit()
    conn.close()
    s = open_store(db_path)
    assert snapshot_rows(s) == good
    assert verify(s) is None
    s.close()


SEED_PLAYBOOK = [
    ("DELETE FROM active_batches WHERE batch_id = 'batches/b5'", "clear-batch"),
    ("DELETE FROM batch_record_keys WHERE batch_id = 'batches/b5'", "clear-batch"),
    ("DELETE FROM inflight_records", "clear-batch"),
    ("DELETE FROM submission_intents", "clear-batch"),
    ("UPDATE failure_counts SET count = 0", "reset-failures"),
    ("DELETE FROM failure_counts", "reset-failures"),
    ("INSERT INTO record_status VALUES ('k', 'written', '', '', 1, 't')", "rebuild-projections"),
]


@pytest.mark.parametrize(("sql", "command"), SEED_PLAYBOOK)
def test_raw_writes_to_projections_are_refused_naming_the_command(
    store: EventStore, db_path: Path, sql: str, command: str
) -> None:
    for actor, group in [*scenario()[:15], scenario()[-1]]:  # b5 active, an intent open
        store.append(group, actor=actor)
    before = snapshot_rows(store)
    other = sqlite3.connect(db_path)
    with pytest.raises(sqlite3.IntegrityError, match=command):
        other.execute(sql)
    other.close()
    raw = apsw.Connection(str(db_path))
    with pytest.raises(ProjectionWriteRefused, match=command), translate_sqlite_errors(db_path):
        raw.execute(sql)
    raw.close()
    assert snapshot_rows(store) == before
    assert verify(store) is None


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell on this machine")
def test_the_seed_playbook_delete_in_the_sqlite3_shell_names_clear_batch(
    store: EventStore, db_path: Path
) -> None:
    for actor, group in scenario()[:15]:
        store.append(group, actor=actor)
    p = subprocess.run(
        ["sqlite3", str(db_path), "DELETE FROM active_batches WHERE batch_id = 'batches/b5';"],
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0
    assert "python -m commands clear-batch" in p.stderr
    assert scalar(store, "SELECT count(*) FROM active_batches") == 1
