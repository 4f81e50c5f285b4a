"""Read models folded from the event log: one module per table, a projector that keeps them in
step inside each append transaction, and rebuild/verify from the log.

Public API::

    from projections import open_store, rebuild, verify, fold, SPECS
    from projections import queries  # the read side: typed, read-only questions the commands ask
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from eventlog.connection import DEFAULT_BUSY_TIMEOUT_MS
from eventlog.postgres import PostgresEventStore, is_url
from eventlog.store import EventStore, utc_now
from projections.projector import (
    PROJECTIONS,
    PROJECTOR,
    SPECS,
    TABLE_NAMES,
    evolve,
    fold,
    memory_rows,
    rebuild,
    snapshot_rows,
)
from projections.tables import MemoryTables, PostgresTables, SqliteTables, Tables, TableSpec
from projections.verification import Difference, differences, first_difference, verify

__all__ = [
    "PROJECTIONS",
    "PROJECTOR",
    "SPECS",
    "TABLE_NAMES",
    "Difference",
    "MemoryTables",
    "PostgresTables",
    "SqliteTables",
    "TableSpec",
    "Tables",
    "differences",
    "evolve",
    "first_difference",
    "fold",
    "memory_rows",
    "open_store",
    "rebuild",
    "snapshot_rows",
    "verify",
]


def open_store(
    location: Path | str,
    *,
    create: bool = False,
    write: bool = True,
    clock: Callable[[], datetime] = utc_now,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    scratch: Path | None = None,
) -> EventStore:
    """Open the log with the projections attached (the way every command opens it).

    ``location`` is a SQLite file, or a ``postgresql://`` URL (:mod:`eventlog.postgres`); for a
    URL, ``scratch`` is the local file beside which temporary files go (as they go beside a
    SQLite file): the config's ``[paths] database``."""
    if is_url(location):
        return PostgresEventStore.open_url(
            str(location),
            create=create,
            write=write,
            projector=PROJECTOR,
            clock=clock,
            busy_timeout_ms=busy_timeout_ms,
            scratch=scratch,
        )
    return EventStore.open(
        location,
        create=create,
        write=write,
        projector=PROJECTOR,
        clock=clock,
        busy_timeout_ms=busy_timeout_ms,
    )
