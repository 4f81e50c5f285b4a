"""Signals that arrive while the log is being written take effect once it is written.

A SIGTERM or Ctrl+C raised in the middle of a statement can leave a database connection busy
(PostgreSQL: "another command is already in progress"), and the run could then not record its
own end. The worker's signal handlers call :func:`interrupt`; the store runs each write
transaction and each read statement inside :func:`deferred`: an interrupt that arrives there is
raised when the section ends (after the commit), anywhere else at once. Main thread only, where
Python runs signal handlers.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_depth = 0
_pending: BaseException | None = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section an interrupt does not cut short: it is raised at the section's end."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            exc, _pending = _pending, None
            raise exc


def interrupt(exc: BaseException) -> None:
    """From a signal handler: raise ``exc`` now, or at the end of the section under way (the
    first interrupt of a section is the one raised)."""
    global _pending
    if _depth:
        if _pending is None:
            _pending = exc
        return
    raise exc
