"""``uploaded_files``: every file this system put on the File API and has not deleted yet, with
the submission that holds it. The worker deletes a file once nothing can need it any more (its
batch is done, or it was never used), so the project's 20 GB quota never fills with leftovers.
"""

from __future__ import annotations

from functools import singledispatch

import msgspec

from eventlog.events import (
    DEFAULT_PROJECT,
    BatchSubmissionIntended,
    BatchSucceeded,
    Event,
    FileDeleted,
    FileUploaded,
    LateResultsAdopted,
)
from eventlog.store import Recorded
from projections import active_batches
from projections.tables import Tables, TableSpec


class UploadedFile(msgspec.Struct, array_like=True, gc=False):
    file_name: str
    kind: str  # "image", "requests" or "results"
    record_key: str
    #: The display name of the submission that references it; None while unreferenced.
    holder: str | None
    uploaded_seq: int
    uploaded_at: str
    #: For an image, what a request line needs to reuse it ('' / 0 for other kinds).
    file_uri: str = ""
    mime_type: str = ""
    size_bytes: int = 0
    #: The project (API key) that owns it: only that key can reference or delete it.
    project: str = DEFAULT_PROJECT


SPEC = TableSpec("uploaded_files", UploadedFile, pk=("file_name",), prefetch=("file_name", "files"))


@singledispatch
def apply(event: Event, t: Tables, rec: Recorded) -> None:
    """Events that do not touch this table."""


@apply.register
def _(e: FileUploaded, t: Tables, rec: Recorded) -> None:
    t.put(
        SPEC,
        UploadedFile(
            e.file_name,
            "image",
            e.record_key,
            None,
            rec.seq,
            rec.ts,
            e.file_uri,
            e.mime_type,
            e.size_bytes,
            e.project,
        ),
    )


@apply.register
def _(e: BatchSubmissionIntended, t: Tables, rec: Recorded) -> None:
    for name in e.files:
        row = t.get(SPEC, (name,))
        if row is not None:
            t.put(SPEC, msgspec.structs.replace(row, holder=e.display_name))
    if e.input_file:
        t.put(
            SPEC,
            UploadedFile(
                e.input_file, "requests", "", e.display_name, rec.seq, rec.ts, project=e.project
            ),
        )


@apply.register
def _(e: BatchSucceeded, t: Tables, rec: Recorded) -> None:
    """The service's result file: held by the batch until it completes."""
    active = t.get(active_batches.SPEC, (e.batch_id,))
    if e.result_file and active is not None:
        t.put(
            SPEC,
            UploadedFile(
                e.result_file,
                "results",
                "",
                active.display_name,
                rec.seq,
                rec.ts,
                project=active.project,
            ),
        )


@apply.register
def _(e: LateResultsAdopted, t: Tables, rec: Recorded) -> None:
    """A late batch's result file, read once: nothing holds it ('' is no submission)."""
    if e.result_file:
        t.put(
            SPEC,
            UploadedFile(e.result_file, "results", "", "", rec.seq, rec.ts, project=e.project),
        )


@apply.register
def _(e: FileDeleted, t: Tables, rec: Recorded) -> None:
    t.delete(SPEC, (e.file_name,))
