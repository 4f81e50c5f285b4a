"""The append-only event log: event types, the SQLite store, and its hash chain.

Public API (everything else in this package is private)::

    from eventlog import EventStore, Recorded, events, errors
"""

from eventlog import errors, events
from eventlog.store import (
    GENESIS_HASH,
    ChainBreak,
    EventStore,
    Projector,
    RawRow,
    Recorded,
    Writer,
    utc_now,
)
from eventlog.timestamps import format_ts

__all__ = [
    "GENESIS_HASH",
    "ChainBreak",
    "EventStore",
    "Projector",
    "RawRow",
    "Recorded",
    "Writer",
    "errors",
    "events",
    "format_ts",
    "utc_now",
]
