"""Typed reads for tests that look at the database directly (a count, a pragma, one column).

Read-only: each runs one statement through the store's own ``query_one`` (inside its error
translation). The statement must yield a row; one that yields none fails the test here, by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventlog.store import EventStore


def scalar(store: EventStore, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row of ``sql``; the statement must yield a row."""
    row = store.query_one(sql, params)
    assert row is not None, f"no row from {sql!r}"
    return row[0]
