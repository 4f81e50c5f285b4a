"""Clean-up: a file's lifetime on the service, which files are ours, and what a delete's answer
means (pure, no I/O).

* :func:`image_reusable_since` -- how young an uploaded image must be to be referenced again
  (the File API deletes it 48 h after its upload); older ones are garbage.
* :func:`is_ours`, :func:`request_file_run`, :func:`result_file_batch` -- the names this tool
  gives its files (page images by record key, request files ``gb-<run>-<n>-requests``, result
  files ``files/batch-<id>``), so a sweep of the service deletes only its own leftovers.
* :func:`file_deleted` and :func:`judge_job_delete` -- the events of a delete.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from commands.errors import GatewayError
from eventlog.events import BatchJobDeleted, Event, FileDeleted
from eventlog.timestamps import format_ts

__all__ = [
    "IMAGE_REUSE_HOURS",
    "JobDeleteVerdict",
    "file_deleted",
    "image_reusable_since",
    "is_ours",
    "judge_job_delete",
    "request_file_run",
    "result_file_batch",
]

#: An uploaded image is referenced again only while younger than this: the File API deletes it
#: 48 h after its upload, and the batch that references it must still find it.
IMAGE_REUSE_HOURS = 24.0

#: Our file names: request files, and images by record key (year and page ASCII digits, as
#: :func:`eventlog.keys.is_number`: ``\d`` would take any Unicode digit).
_OURS = re.compile(r"^(gb-.+-requests|[^:/\\]+:[^:/\\]+:[0-9]+:[0-9]+)$")
#: A request file's display name: ``gb-<run id>-<n>-requests``.
_REQUESTS = re.compile(r"^gb-(.+)-[0-9]+-requests$")
_RESULTS = "files/batch-"


def image_reusable_since(now: datetime) -> str:
    """The oldest upload time (a stored timestamp) of an image that may be referenced again."""
    return format_ts(now - timedelta(hours=IMAGE_REUSE_HOURS))


def is_ours(display_name: str) -> bool:
    """Whether a file of this display name is one this tool uploads (an image or a request
    file)."""
    return _OURS.match(display_name) is not None


def request_file_run(display_name: str) -> str | None:
    """The run that uploaded a request file of this display name; None if it is not one."""
    match = _REQUESTS.match(display_name)
    return None if match is None else match.group(1)


def result_file_batch(file_name: str) -> str | None:
    """The batch whose result file this is (``files/batch-<id>`` -> ``batches/<id>``); None
    if it is not a result file."""
    if not file_name.startswith(_RESULTS):
        return None
    return f"batches/{file_name.removeprefix(_RESULTS)}"


def file_deleted(file_name: str, *, existed: bool) -> FileDeleted:
    """A file deleted (``existed``) or found already gone: either way nothing holds it now."""
    return FileDeleted(
        file_name=file_name, reason="no longer needed" if existed else "already gone"
    )


class JobDeleteVerdict(msgspec.Struct, frozen=True):
    """What deleting a finished job's record on the service came to: ``deleted``,
    ``already_gone`` (a 404), ``refused`` (any other refusal: recorded, the job left there),
    or ``retry`` (a transient failure: nothing recorded, the next cycle tries again)."""

    outcome: Literal["deleted", "already_gone", "refused", "retry"]
    events: list[Event] = []


def judge_job_delete(batch_id: str, answer: bool | GatewayError) -> JobDeleteVerdict:
    """The verdict on ``delete_batch``'s answer: True (deleted), False (already gone) or its
    error."""
    if isinstance(answer, GatewayError):
        if answer.transient:
            return JobDeleteVerdict("retry")
        outcome: Literal["deleted", "already_gone", "refused"] = "refused"
        message = str(answer)
    else:
        outcome, message = ("deleted" if answer else "already_gone"), ""
    deleted = BatchJobDeleted(batch_id=batch_id, outcome=outcome, message=message)
    return JobDeleteVerdict(outcome, [deleted])
