"""The peer the log is measured against: the ``eventsourcing`` library on SQLite, storing the
same payloads as one aggregate's events (``uv sync --group bench`` installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

try:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate, event

    INSTALLED = True
except ImportError:  # pragma: no cover - the bench group is not installed
    INSTALLED = False

if INSTALLED:

    class Log(Aggregate):
        """One aggregate whose events carry our payloads."""

        @event("Appended")
        def append(self, data: dict) -> None:
            pass


def eventsourcing_app(db: Path) -> tuple[Any, Any] | None:
    """(an Application on ``db``, a fresh aggregate whose ``append(data)`` records one event),
    or None when the library is not installed."""
    if not INSTALLED:
        print("eventsourcing not installed: uv sync --group bench", flush=True)
        return None
    db.unlink(missing_ok=True)
    app: Application[Any] = Application(
        env={
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(db),
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    )
    return app, Log()
