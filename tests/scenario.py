"""A scripted scenario of the pipeline's life, as event groups (one group = one transaction):
uploads, submissions, a failed batch, validation failures up to a dead letter, a reset, a clear."""

from __future__ import annotations

from eventlog.events import (
    BatchCleared,
    BatchCompleted,
    BatchFailed,
    BatchStateObserved,
    BatchSubmissionIntended,
    BatchSubmitted,
    BatchSucceeded,
    Event,
    FailuresReset,
    FileUploaded,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
    ResetFilter,
    RunFinished,
    RunStarted,
    UploadAbandoned,
    UploadFailed,
)

A = "California:LincolnHigh:2023:1"
B = "California:LincolnHigh:2023:2"
C = "Texas:Alamo:2021:1"
D = "Texas:Alamo:2021:2"
MAX_RETRIES = 3


def _upload(key: str, n: int) -> FileUploaded:
    return FileUploaded(
        record_key=key,
        file_name=f"files/{n}",
        file_uri=f"u/{n}",
        mime_type="image/png",
        size_bytes=100,
    )


def _submit(batch: str, name: str, keys: list[str]) -> list[Event]:
    return [
        BatchSubmissionIntended(display_name=name, model="gemini-2.5-flash", record_keys=keys),
        BatchSubmitted(
            batch_id=batch, display_name=name, model="gemini-2.5-flash", record_keys=keys
        ),
    ]


def scenario() -> list[tuple[str, list[Event]]]:
    """(actor, events) groups in order."""
    run = "run:r1"
    groups: list[tuple[str, list[Event]]] = [
        (run, [RunStarted(run_id="r1")]),
        (run, [_upload(A, 1), _upload(B, 2), _upload(C, 3)]),
        (
            run,
            [
                UploadFailed(record_key=D, attempt=1, error_type="ServerError", message="503"),
                UploadFailed(record_key=D, attempt=2, error_type="ServerError", message="503"),
                UploadAbandoned(record_key=D, attempts=2, message="503"),
            ],
        ),
        (run, _submit("batches/b1", "gb-r1-1", [A, B, C])),
        (run, [BatchStateObserved(batch_id="batches/b1", state="JOB_STATE_RUNNING")]),
        (run, [BatchFailed(batch_id="batches/b1", state="JOB_STATE_FAILED", message="boom")]),
        (run, _submit("batches/b2", "gb-r1-2", [A, B, C, D])),
        (
            run,
            [
                BatchSucceeded(batch_id="batches/b2", result_file="files/batch-b2"),
                RecordValidated(record_key=A, batch_id="batches/b2", output_path="out/a.json"),
                RecordFailed(
                    record_key=B,
                    batch_id="batches/b2",
                    error_type="schema_violation",
                    message="missing field text",
                    excerpt="{}",
                ),
                RecordFailed(
                    record_key=C,
                    batch_id="batches/b2",
                    error_type="invalid_json",
                    message="not JSON",
                    excerpt="Sure! Here",
                ),
                RecordValidated(record_key=D, batch_id="batches/b2", output_path="out/d.json"),
                BatchCompleted(batch_id="batches/b2", validated=2, failed=2),
            ],
        ),
        (run, _submit("batches/b3", "gb-r1-3", [B, C])),
        (
            run,
            [
                BatchSucceeded(batch_id="batches/b3"),
                RecordFailed(
                    record_key=B,
                    batch_id="batches/b3",
                    error_type="schema_violation",
                    message="missing field text",
                ),
                RecordValidated(record_key=C, batch_id="batches/b3", output_path="out/c.json"),
                BatchCompleted(batch_id="batches/b3", validated=1, failed=1),
            ],
        ),
        (run, _submit("batches/b4", "gb-r1-4", [B])),
        (
            run,
            [
                BatchSucceeded(batch_id="batches/b4"),
                RecordFailed(
                    record_key=B,
                    batch_id="batches/b4",
                    error_type="missing_line",
                    message="no result line",
                ),
                RecordDeadLettered(record_key=B, failures=3, max_retries=MAX_RETRIES),
                BatchCompleted(batch_id="batches/b4", validated=0, failed=1),
            ],
        ),
        (run, [RunFinished(run_id="r1", outcome="ok")]),
        (
            "operator:alice@host reset-failures",
            [FailuresReset(filter=ResetFilter(states=["California"]), record_keys=[B])],
        ),
        ("run:r2", _submit("batches/b5", "gb-r2-1", [B])),
        ("operator:alice@host clear-batch", [BatchCleared(batch_id="batches/b5", reason="stuck")]),
        (
            "run:r2",
            [
                BatchSubmissionIntended(
                    display_name="gb-r2-2", model="gemini-2.5-flash", record_keys=[B]
                )
            ],
        ),
    ]
    return groups


def all_events() -> list[Event]:
    return [e for _, group in scenario() for e in group]


#: Pages of :func:`failed_then_written`: two written after failing, one failing, one dead letter.
WRITTEN_1 = "Ohio:Akron:2020:1"
WRITTEN_2 = "Ohio:Akron:2020:2"
FAILING = "Ohio:Akron:2020:3"
DEAD = "Ohio:Akron:2020:4"


def failed_then_written() -> list[tuple[str, list[Event]]]:
    """A log where some failed pages were later written: WRITTEN_1 fails once and WRITTEN_2 twice
    before each is written; FAILING fails once and waits; DEAD fails MAX_RETRIES times and is
    dead-lettered. 7 failures logged, 4 pages that failed, 1 failing now, 1 dead letter."""
    run = "run:r1"

    def failed(key: str, batch: str) -> RecordFailed:
        return RecordFailed(record_key=key, batch_id=batch, error_type="invalid_json", message="m")

    def written(key: str, batch: str) -> RecordValidated:
        return RecordValidated(record_key=key, batch_id=batch, output_path=f"out/{key}.json")

    def batch(n: int, keys: list[str], results: list[Event]) -> list[tuple[str, list[Event]]]:
        done = BatchCompleted(batch_id=f"batches/w{n}", validated=0, failed=0)
        return [
            (run, _submit(f"batches/w{n}", f"gb-r1-w{n}", keys)),
            (run, [BatchSucceeded(batch_id=f"batches/w{n}"), *results, done]),
        ]

    w1, w2, w3 = "batches/w1", "batches/w2", "batches/w3"
    return [
        (run, [RunStarted(run_id="r1")]),
        *batch(
            1,
            [WRITTEN_1, WRITTEN_2, FAILING, DEAD],
            [failed(WRITTEN_1, w1), failed(WRITTEN_2, w1), failed(FAILING, w1), failed(DEAD, w1)],
        ),
        *batch(
            2,
            [WRITTEN_1, WRITTEN_2, DEAD],
            [written(WRITTEN_1, w2), failed(WRITTEN_2, w2), failed(DEAD, w2)],
        ),
        *batch(
            3,
            [WRITTEN_2, DEAD],
            [
                written(WRITTEN_2, w3),
                failed(DEAD, w3),
                RecordDeadLettered(record_key=DEAD, failures=MAX_RETRIES, max_retries=MAX_RETRIES),
            ],
        ),
        (run, [RunFinished(run_id="r1", outcome="ok")]),
    ]
