"""The peer the log is measured against: the ``eventsourcing`` library on SQLite, storing the
same payloads as one aggregate's events (``uv sync --group bench`` installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def eventsourcing_app(db: Path) -> tuple[Any, Any] | None:
    """(an Application on ``db``, an aggregate whose ``append(data)`` records one event), or
    None when the library is not installed."""
    try:
        from eventsourcing.application import Application
        from eventsourcing.domain import Aggregate, event
    except ImportError:
        print("eventsourcing not installed: uv sync --group bench", flush=True)
        return None

    class Log(Aggregate):
        @event("Appended")
        def append(self, data: dict) -> None:
            pass

    db.unlink(missing_ok=True)
    app = Application(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite",
                           "SQLITE_DBNAME": str(db), "SQLITE_LOCK_TIMEOUT": "10"})
    return app, Log()
