"""The event-store backends the store's contract suite runs on (today SQLite only).

A backend is how to open a store at a location and how to reach its database *behind* the store's
back (to tamper with it, or to try a write the database must refuse). The contract tests in
``tests/eventlog/test_store.py`` and ``tests/projections/test_incremental_equals_rebuild.py`` take
the ``backend`` or ``store_factory`` fixture (``tests/conftest.py``), parametrised over
:data:`BACKENDS`; a PostgreSQL backend later is one more entry here.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

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

BACKENDS = [SQLITE]


class StoreFactory:
    """Opens stores of one backend at one location per test, and closes them all afterwards."""

    def __init__(self, backend: Backend, location: Path) -> None:
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
