"""Errors of the write side and the Gemini boundary; the whole tree is drawn in
:mod:`eventlog.errors`."""

from __future__ import annotations

from eventlog.errors import GeminiBatchesError, OperatorError


class ConfigError(OperatorError):
    """The config file is missing, unreadable, or has a bad key or value (the message names it)."""


def transient_status(code: int | None) -> bool:
    """Whether an HTTP answer with ``code`` may succeed if asked again: 408, 429 and 5xx."""
    return code in (408, 429) or (code or 0) >= 500


class GatewayError(OperatorError):
    """A Gemini call failed after its retries, or was refused (4xx). Carries the HTTP code."""

    def __init__(
        self, message: str, *, code: int | None = None, transient: bool = False, status: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient
        #: The service's status word (``RESOURCE_EXHAUSTED``, ``FAILED_PRECONDITION``), if any.
        self.status = status


class RunLocked(OperatorError):
    """Another worker run holds the run lock on this database."""


class LeaseLost(GeminiBatchesError):
    """Another worker holds (or the log no longer gives this one) a partition's lease: the worker
    stops touching that partition. Caught by the worker; never reaches the operator."""

    def __init__(self, partition: str, holder: str) -> None:
        super().__init__(f"the lease on partition {partition} is held by {holder or 'nobody'}")
        self.partition = partition
        self.holder = holder
