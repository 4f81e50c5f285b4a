from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from eventlog.errors import DatabaseNotFound, NotAnEventLog, SchemaTooNew
from eventlog.schema import SCHEMA_VERSION
from eventlog.store import EventStore
from projections import open_store
from tests.reads import scalar


def test_a_missing_database_is_not_created_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    with pytest.raises(DatabaseNotFound, match="database not found"):
        EventStore.open(path)
    assert not path.exists()


def test_a_new_database_is_owner_only_and_marked_as_ours(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "new.db"
    s = open_store(path, create=True)
    assert scalar(s, "PRAGMA user_version") == SCHEMA_VERSION
    assert scalar(s, "PRAGMA application_id") == 0x47424154
    s.close()
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is not a database at all, just some text" * 100, "not a usable SQLite database"),
        (b"SQLite format 3\x00" + b"\xff" * 200, "not a usable SQLite database"),
    ],
)
def test_unusable_files_are_refused_and_left_alone(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.db"
    path.write_bytes(content)
    with pytest.raises(NotAnEventLog, match=message):
        open_store(path, create=True)
    assert path.read_bytes() == content


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(NotAnEventLog, match="not a gemini-batches database"):
        open_store(path, create=True)


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_store(path, create=True).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match=f"schema version {SCHEMA_VERSION + 1}"):
        open_store(path)


def test_concurrent_creation_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    a = open_store(path, create=True)
    b = open_store(path, create=True)  # sees the schema already there
    a.append([], actor="x")
    assert scalar(b, "PRAGMA user_version") == SCHEMA_VERSION
    a.close()
    b.close()
