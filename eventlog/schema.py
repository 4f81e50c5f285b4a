"""The events table and its schema migrations.

``PRAGMA user_version`` holds the schema version and ``PRAGMA application_id`` marks the file as
ours.
Migrations are a small registry: each one and its version bump commit in one transaction.

SQLite-specific (with :mod:`eventlog.connection`): the DDL, the append-only triggers and the
version pragmas live here and only here. A second backend (PostgreSQL, planned) brings its own
schema module in place of this one; :mod:`eventlog.store`'s contract stays the same.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from eventlog.connection import APPLICATION_ID, immediate
from eventlog.errors import NotAnEventLog, SchemaTooNew

APPEND_ONLY_MESSAGE = (
    "events is append-only: the log is never updated or deleted in place "
    "(operator actions are new events: see `python -m commands --help`)"
)

_V1 = f"""
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    ts      TEXT    NOT NULL,
    type    TEXT    NOT NULL,
    stream  TEXT    NOT NULL,
    actor   TEXT    NOT NULL,
    version INTEGER NOT NULL,
    payload TEXT    NOT NULL,
    hash    TEXT    NOT NULL
) STRICT;

CREATE TRIGGER events_refuse_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;

CREATE TRIGGER events_refuse_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;

-- INSERT OR REPLACE deletes without firing delete triggers: only strictly increasing
-- sequence numbers may be inserted, so no row can be replaced.
CREATE TRIGGER events_refuse_rewrite BEFORE INSERT ON events
WHEN NEW.seq <= (SELECT coalesce(max(seq), 0) FROM events)
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;
"""

#: A record's history is an index lookup (``replay.py --record``; the dashboard's reads its stream):
#: the events of a stream by ``events_by_stream``, and the events that name a record only in a
#: list (a batch's ``record_keys``, a reset's) by ``event_record_keys``, one row per key an event
#: names other than its own stream. Written with the events, append-only like them; the
#: backfill reads each such event's payload once.
_V2 = f"""
CREATE INDEX events_by_stream ON events (stream, seq);

CREATE TABLE event_record_keys (
    record_key TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (record_key, seq)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER event_record_keys_refuse_update BEFORE UPDATE ON event_record_keys
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;

CREATE TRIGGER event_record_keys_refuse_delete BEFORE DELETE ON event_record_keys
BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END;

INSERT OR IGNORE INTO event_record_keys (record_key, seq)
SELECT k.value, e.seq FROM events e, json_each(e.payload, '$.record_keys') k
WHERE instr(e.payload, '"record_keys":') > 0 AND k.value <> e.stream;

INSERT OR IGNORE INTO event_record_keys (record_key, seq)
SELECT json_extract(payload, '$.record_key'), seq FROM events
WHERE instr(payload, '"record_key":') > 0 AND json_type(payload, '$.record_keys') IS NULL
AND json_extract(payload, '$.record_key') <> stream;
"""

Migration = Callable[[apsw.Connection], None]


def _migrate_to_1(conn: apsw.Connection) -> None:
    conn.execute(_V1)
    conn.pragma("application_id", APPLICATION_ID)


def _migrate_to_2(conn: apsw.Connection) -> None:
    conn.execute(_V2)


#: version -> the migration that produces it from version - 1.
MIGRATIONS: dict[int, Migration] = {1: _migrate_to_1, 2: _migrate_to_2}
SCHEMA_VERSION = max(MIGRATIONS)


def check_schema(conn: apsw.Connection, path: str) -> int:
    """Return the file's schema version (0 for a fresh, empty database); refuse foreign files.

    Read-only: raises :class:`NotAnEventLog` for another program's database and
    :class:`SchemaTooNew` for one written by a newer version of this tool.
    """
    app_id = conn.pragma("application_id")
    version = conn.pragma("user_version")
    if app_id == 0 and version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").get
        if tables:
            raise NotAnEventLog(f"not a gemini-batches database (it has other tables): {path}")
        return 0
    if app_id != APPLICATION_ID:
        raise NotAnEventLog(f"not a gemini-batches database (application_id {app_id:#x}): {path}")
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"database schema version {version} was written by a newer version of this tool "
            f"(this one understands up to {SCHEMA_VERSION}): {path}"
        )
    return version


def migrate(conn: apsw.Connection) -> None:
    """Apply every missing migration, each with its version bump in one write transaction.

    Safe when two processes migrate at once: the version is re-read under the write lock.
    """
    while True:
        with immediate(conn):
            current = conn.pragma("user_version")
            if current >= SCHEMA_VERSION:
                return
            MIGRATIONS[current + 1](conn)
            conn.pragma("user_version", current + 1)
