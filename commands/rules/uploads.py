"""Uploads to the File API: the events each attempt makes, and when a page is given up on
(pure, no I/O).

* :func:`attempted` -- a page image's upload this cycle: an ``UploadFailed`` per failed attempt,
  then ``FileUploaded`` or ``UploadAbandoned``; :func:`changed` -- its file changed before it
  was read (``file_changed``).
* :func:`given_up` -- the page's ``UploadGivenUp`` once its budget across cycles is spent
  (:func:`commands.rules.retry.upload_gives_up`), or at once when the service refused the file.
* :func:`request_file_failed` -- a request file that could not be uploaded charges each of its
  pages' budgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from commands.errors import GatewayError
from commands.gemini.port import RemoteFile
from commands.rules.retry import upload_gives_up
from eventlog.events import (
    DEFAULT_PROJECT,
    Event,
    FileUploaded,
    UploadAbandoned,
    UploadFailed,
    UploadGivenUp,
)

__all__ = ["attempted", "changed", "given_up", "request_file_failed"]


def changed(record_key: str, why: str) -> list[Event]:
    """A page whose file changed since the scan (or cannot be read): one failed attempt
    (``file_changed``) and the page skipped this cycle."""
    return [
        UploadFailed(record_key=record_key, attempt=1, error_type="file_changed", message=why),
        UploadAbandoned(record_key=record_key, attempts=1, message=why),
    ]


def attempted(
    record_key: str,
    failures: Sequence[tuple[int, GatewayError]],
    remote: RemoteFile | None,
    project: str = DEFAULT_PROJECT,
) -> list[Event]:
    """A page image's upload this cycle: each failed attempt (its number, its error), then the
    file uploaded (``remote``) or, with none, the page skipped this cycle."""
    events: list[Event] = [
        UploadFailed(
            record_key=record_key,
            attempt=attempt,
            error_type=f"http_{e.code}" if e.code else "network",
            message=str(e),
        )
        for attempt, e in failures
    ]
    if remote is not None:
        events.append(
            FileUploaded(
                record_key=record_key,
                file_name=remote.name,
                file_uri=remote.uri,
                mime_type=remote.mime_type,
                size_bytes=remote.size_bytes,
                attempt=len(failures) + 1,
                project=project,
            )
        )
    else:
        last = str(failures[-1][1]) if failures else ""
        events.append(UploadAbandoned(record_key=record_key, attempts=len(failures), message=last))
    return events


def given_up(
    record_key: str,
    path: str,
    *,
    failed_before: int,
    failed_now: int,
    refused: bool,
    message: str,
    stamp: tuple[int, int],
    max_attempts: int,
) -> UploadGivenUp | None:
    """The ``UploadGivenUp`` of a page whose upload failed ``failed_now`` times this cycle after
    ``failed_before`` since its last success, if its budget (``max_attempts``) is spent or the
    service ``refused`` the file; None when it is tried again next cycle. ``stamp`` is its
    file's (size, mtime_ns) then: a changed file is tried again."""
    if not upload_gives_up(
        failed_before, failed_now, transient=not refused, max_attempts=max_attempts
    ):
        return None
    attempts = failed_before + failed_now
    why = "the File API refused it" if refused else f"{attempts} failed attempts"
    return UploadGivenUp(
        record_key=record_key,
        path=path,
        attempts=attempts,
        reason=f"upload given up ({why}): {message}",
        size_bytes=stamp[0],
        mtime_ns=stamp[1],
    )


def request_file_failed(
    pages: Sequence[tuple[str, str]],
    *,
    failed: int,
    transient: bool,
    why: str,
    budget: Mapping[str, int],
    stamps: Mapping[str, tuple[int, int]],
    max_attempts: int,
) -> list[Event]:
    """A request file whose upload failed ``failed`` times charges each of its pages (record key,
    path) an ``UploadAbandoned``, so a request file that can never go does not come back for
    ever; the pages whose budget (``budget``: failed attempts before) is spent are given up on."""
    events: list[Event] = []
    for key, path in pages:
        events.append(UploadAbandoned(record_key=key, attempts=failed, message=why))
        gone = given_up(
            key,
            path,
            failed_before=budget.get(key, 0),
            failed_now=failed,
            refused=not transient,
            message=why,
            stamp=stamps.get(key, (-1, -1)),
            max_attempts=max_attempts,
        )
        if gone is not None:
            events.append(gone)
    return events
