"""The event-store backends the store's contract suite runs on: SQLite and PostgreSQL.

A backend is how to open a store at a location and how to reach its database *behind* the store's
back (to tamper with it, or to try a write the database must refuse). The contract tests in
``tests/eventlog/test_store.py`` and ``tests/projections/test_incremental_equals_rebuild.py`` take
the ``backend`` or ``store_factory`` fixture (``tests/conftest.py``), parametrised over
:data:`BACKENDS`. A location is a file (SQLite) or a URL naming a fresh schema on the session's
throwaway server (PostgreSQL, ``tests/postgres.py``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from eventlog import postgres
from eventlog.connection import translate_sqlite_errors
from eventlog.store import EventStore
from projections import open_store


@dataclass(frozen=True)
class Backend:
    """One storage backend, as the contract suite sees it."""

    name: str
    #: ``open(location, *, projections=True, **options)``: options as ``EventStore.open``.
    open: Callable[..., EventStore]
    #: Rewrite the log the way an attacker with the database's own shell would (guards dropped).
    tamper: Callable[[Path, str], None]
    #: Run a statement on a separate connection, its errors translated at the store's boundary.
    raw_execute: Callable[[Path, str], None]
    #: Run a statement through another client library altogether, as an operator would.
    foreign_execute: Callable[[Path, str], None]
    #: What that other library raises when the database refuses the statement.
    foreign_refusal: type[Exception]
    #: ``new_location(tmp_dir)``: where a fresh, empty log of this backend may be made.
    new_location: Callable[[Path], Any] = lambda tmp: tmp / "data" / "gemini_batches.db"
    #: A statement in this backend's dialect (SQLite's is the reference phrasing).
    phrase: Callable[[str], str] = lambda sql: sql
    #: The PostgreSQL server the locations are made on (set by the ``backend`` fixture).
    server: str = ""


def _sqlite_open(path: Path, *, projections: bool = True, **options: Any) -> EventStore:
    return open_store(path, **options) if projections else EventStore.open(path, **options)


def _sqlite_tamper(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(f"DROP TRIGGER events_refuse_update; {sql}")
    conn.close()


def _sqlite_raw_execute(path: Path, sql: str) -> None:
    conn = apsw.Connection(str(path))
    try:
        with translate_sqlite_errors(path):
            conn.execute(sql)
    finally:
        conn.close()


def _sqlite_foreign_execute(path: Path, sql: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(sql)
    finally:
        conn.close()


SQLITE = Backend(
    name="sqlite",
    open=_sqlite_open,
    tamper=_sqlite_tamper,
    raw_execute=_sqlite_raw_execute,
    foreign_execute=_sqlite_foreign_execute,
    foreign_refusal=sqlite3.IntegrityError,
)


def _pg_open(url: str, *, projections: bool = True, **options: Any) -> EventStore:
    if projections:
        return open_store(url, **options)
    return postgres.PostgresEventStore.open_url(url, **options)


def _pg_tamper(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER events_refuse_update")
        conn.execute(sql)
        conn.execute("ALTER TABLE events ENABLE TRIGGER events_refuse_update")


def _pg_raw_execute(url: str, sql: str) -> None:
    conn = postgres.connect(url, busy_timeout_ms=1000)
    try:
        with postgres.translate_pg_errors(url):
            conn.execute(sql)
    finally:
        conn.close()


class PsqlRefused(Exception):
    """``psql`` exited non-zero; the message is its stderr."""


def _pg_foreign_execute(url: str, sql: str) -> None:
    from tests.postgres import bin_dir

    p = subprocess.run(
        [str(bin_dir() / "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0:
        raise PsqlRefused(p.stderr)


def _pg_phrase(sql: str) -> str:
    if sql.startswith("INSERT OR REPLACE INTO events"):  # PostgreSQL's upsert
        return sql.replace("INSERT OR REPLACE", "INSERT") + (
            " ON CONFLICT (seq) DO UPDATE SET actor = excluded.actor"
        )
    return sql


POSTGRES = Backend(
    name="postgresql",
    open=_pg_open,
    tamper=_pg_tamper,  # type: ignore[arg-type]
    raw_execute=_pg_raw_execute,  # type: ignore[arg-type]
    foreign_execute=_pg_foreign_execute,  # type: ignore[arg-type]
    foreign_refusal=PsqlRefused,
    phrase=_pg_phrase,
)

BACKENDS = [SQLITE, POSTGRES]


def on_server(backend: Backend, server: str) -> Backend:
    """``backend`` making its locations as fresh schemas on ``server``."""
    from tests.postgres import new_schema_url

    return dataclasses.replace(
        backend, server=server, new_location=lambda _tmp: new_schema_url(server)
    )


class StoreFactory:
    """Opens stores of one backend at one location per test, and closes them all afterwards."""

    def __init__(self, backend: Backend, location: Any) -> None:
        self.backend = backend
        self.location = location
        self._opened: list[EventStore] = []

    def __call__(self, *, create: bool = True, **options: Any) -> EventStore:
        store = self.backend.open(self.location, create=create, **options)
        self._opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self._opened:
            store.close()
