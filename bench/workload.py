"""A realistic event mix, as the pipeline writes it: per batch of pages, the uploads, the intent,
the submission, state changes, the results (2% failures) and the file deletions."""

from __future__ import annotations

from collections.abc import Iterator

from eventlog.events import (
    BatchCompleted,
    BatchStateObserved,
    BatchSubmissionIntended,
    BatchSubmitted,
    BatchSucceeded,
    Event,
    FileDeleted,
    FileUploaded,
    RecordFailed,
    RecordValidated,
)

BATCH = 500


def key(i: int) -> str:
    return f"State{i // 100_000}:School{(i // 1000) % 100}:{2000 + (i // 100) % 10}:{i % 100 + 1}"


def batch_events(b: int, start: int, n: int = BATCH) -> list[Event]:
    keys = [key(i) for i in range(start, start + n)]
    files = [f"files/img{b}x{i}" for i in range(n)]
    name, batch = f"gb-bench-{b:06d}", f"batches/bench{b:06d}"
    out: list[Event] = [
        FileUploaded(
            record_key=k,
            file_name=f,
            file_uri=f"https://x/v1beta/{f}",
            mime_type="image/png",
            size_bytes=123_456,
        )
        for k, f in zip(keys, files, strict=True)
    ]
    out.append(
        BatchSubmissionIntended(
            display_name=name,
            model="gemini-2.5-flash",
            record_keys=keys,
            input_file=f"files/req{b}",
            files=files,
        )
    )
    out.append(
        BatchSubmitted(
            batch_id=batch,
            display_name=name,
            model="gemini-2.5-flash",
            record_keys=keys,
            input_file=f"files/req{b}",
        )
    )
    out.append(BatchStateObserved(batch_id=batch, state="JOB_STATE_RUNNING"))
    out.append(BatchSucceeded(batch_id=batch, result_file=f"files/batch-bench{b}"))
    for i, k in enumerate(keys):
        if i % 50 == 7:
            out.append(
                RecordFailed(
                    record_key=k,
                    batch_id=batch,
                    error_type="schema_violation",
                    message="text: Field required",
                    excerpt='{"title": "x"}',
                    prompt_tokens=612,
                    output_tokens=388,
                    total_tokens=1000,
                    model="gemini-2.5-flash",
                )
            )
        else:
            out.append(
                RecordValidated(
                    record_key=k,
                    batch_id=batch,
                    output_path=f"/data/out/{k.replace(':', '/')}.json",
                    output_sha256="ab" * 32,
                    prompt_tokens=612,
                    output_tokens=388,
                    total_tokens=1000,
                    model="gemini-2.5-flash",
                )
            )
    out.append(
        BatchCompleted(
            batch_id=batch,
            validated=n - n // 50,
            failed=n // 50,
            submitted_at="2026-11-28T10:00:00.000000Z",
        )
    )
    out += [FileDeleted(file_name=f, reason="no longer needed") for f in [*files, f"files/req{b}"]]
    return out


def events(total: int) -> Iterator[Event]:
    """About ``total`` events (whole batches)."""
    made = b = 0
    while made < total:
        group = batch_events(b, b * BATCH)
        made += len(group)
        b += 1
        yield from group
