"""The run a worker process is executing, stamped on every log record (threads included)."""

from __future__ import annotations

import logging

#: The worker run this process is executing (one at a time), stamped on every log record.
_current_run: str | None = None


def bind_run(run_id: str | None) -> None:
    """Stamp ``run_id`` on every log record from now on (None: stop)."""
    global _current_run
    _current_run = run_id


class RunFilter(logging.Filter):
    """Adds ``run_id`` to records that do not carry one (threads included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "run_id", None) is None:
            record.run_id = _current_run
        return True
