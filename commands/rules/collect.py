"""Collecting a succeeded batch: the events its judged lines make (pure, no I/O).

* :func:`decide` -- a chunk of verdicts (:mod:`commands.rules.results` judges each line) to
  ``RecordValidated`` for the outputs written, ``RecordFailed`` for the others, and the one
  dead-letter rule (:func:`commands.rules.retry.dead_letter`) for a failure that reaches
  ``max_retries``.
* :func:`discarded` -- a result not taken (its record was written from another batch first);
  :func:`completed` -- the batch's end, with the lines it ignored; :func:`late_adopted` -- the
  late results of a batch given up on.
* :func:`judge_download_error` and :func:`results_unavailable` -- a result file that cannot be
  downloaded.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from commands.errors import GatewayError
from commands.rules.results import Verdict
from commands.rules.retry import dead_letter
from eventlog.events import (
    DEFAULT_PROJECT,
    BatchCompleted,
    BatchResultsUnavailable,
    Event,
    LateResultsAdopted,
    RecordFailed,
    RecordValidated,
    ResultDiscarded,
    ResultLinesIgnored,
)

__all__ = [
    "MAX_LISTED",
    "Ignored",
    "completed",
    "decide",
    "discarded",
    "judge_download_error",
    "late_adopted",
    "results_unavailable",
]

#: Keys named in one ``ResultLinesIgnored`` event (the counts are whole).
MAX_LISTED = 100


def decide(
    batch_id: str,
    verdicts: list[Verdict],
    written: dict[str, tuple[str, str]],
    failure_counts: dict[str, int],
    max_retries: int,
    model: str = "",
) -> list[Event]:
    """The events for a chunk of verdicts (pure).

    ``written`` maps each valid key to (output path, sha256) after its file was written;
    ``failure_counts`` holds the counts before this chunk. A failure that brings a record to
    ``max_retries`` also dead-letters it.
    """
    events: list[Event] = []
    for v in verdicts:
        if v.valid:
            path, digest = written[v.key]
            events.append(
                RecordValidated(
                    record_key=v.key,
                    batch_id=batch_id,
                    output_path=path,
                    output_sha256=digest,
                    prompt_tokens=v.prompt_tokens,
                    output_tokens=v.output_tokens,
                    total_tokens=v.total_tokens,
                    model=model,
                )
            )
            continue
        events.append(
            RecordFailed(
                record_key=v.key,
                batch_id=batch_id,
                error_type=v.error_type or "unknown",
                message=v.message,
                excerpt=v.excerpt,
                prompt_tokens=v.prompt_tokens,
                output_tokens=v.output_tokens,
                total_tokens=v.total_tokens,
                model=model,
            )
        )
        count = failure_counts.get(v.key, 0) + 1
        failure_counts[v.key] = count
        dead = dead_letter(v.key, count, max_retries)
        if dead is not None:
            events.append(dead)
    return events


def discarded(batch_id: str, model: str, v: Verdict, reason: str) -> ResultDiscarded:
    """A result billed but not taken (``reason``): its tokens are still counted as spent."""
    return ResultDiscarded(
        record_key=v.key,
        batch_id=batch_id,
        reason=reason,
        prompt_tokens=v.prompt_tokens,
        output_tokens=v.output_tokens,
        total_tokens=v.total_tokens,
        model=model,
    )


class Ignored(msgspec.Struct):
    """Lines of a result file no record took: duplicates of a line already judged, lines for
    keys the batch never held (at most :data:`MAX_LISTED` of each named), lines naming no key."""

    duplicates: int = 0
    unknown: int = 0
    unreadable: int = 0
    duplicate_keys: list[str] = []
    unknown_keys: list[str] = []

    def add(self, key: str, *, duplicate: bool) -> None:
        """Count a line for ``key`` that no record takes."""
        if duplicate:
            self.duplicates += 1
            listed = self.duplicate_keys
        else:
            self.unknown += 1
            listed = self.unknown_keys
        if len(listed) < MAX_LISTED:
            listed.append(key)

    def __bool__(self) -> bool:
        return bool(self.duplicates or self.unknown or self.unreadable)


def completed(
    batch_id: str, submitted_at: str, validated: int, failed: int, ignored: Ignored
) -> list[Event]:
    """The end of a collected batch: the lines it ignored (if any), then ``BatchCompleted``."""
    events: list[Event] = []
    if ignored:
        events.append(
            ResultLinesIgnored(
                batch_id=batch_id,
                duplicates=ignored.duplicate_keys[:MAX_LISTED],
                unknown_keys=ignored.unknown_keys[:MAX_LISTED],
                unreadable=ignored.unreadable,
            )
        )
    events.append(
        BatchCompleted(
            batch_id=batch_id, submitted_at=submitted_at, validated=validated, failed=failed
        )
    )
    return events


def late_adopted(
    batch_id: str, adopted: int, ignored: int, result_file: str, project: str = DEFAULT_PROJECT
) -> LateResultsAdopted:
    """The late results of a batch given up on, read: how many were adopted and ignored."""
    return LateResultsAdopted(
        batch_id=batch_id,
        adopted=adopted,
        ignored=ignored,
        result_file=result_file,
        project=project,
    )


def judge_download_error(
    error: GatewayError, hours_since_succeeded: float, give_up_hours: float
) -> Literal["unavailable", "retry"]:
    """What a failed download of a succeeded batch's result file means (pure).

    A refusal (any 4xx: 403/404 for a file that is gone or expired after 48 h, 410) will not
    change: ``unavailable`` (the batch ends, its records go back to pending). A transient failure
    (5xx, 429, a timeout) is tried again next cycle (``retry``) until ``give_up_hours`` have
    passed since the batch was seen succeeded; then it is ``unavailable`` too, so a file the
    service never serves again cannot hold the batch for ever.
    """
    if not error.transient:
        return "unavailable"
    return "unavailable" if hours_since_succeeded >= give_up_hours else "retry"


def results_unavailable(
    batch_id: str, error: GatewayError, submitted_at: str
) -> BatchResultsUnavailable:
    """A succeeded batch whose results cannot be had: it ends, its records go back to pending."""
    return BatchResultsUnavailable(
        batch_id=batch_id, message=str(error), code=error.code or 0, submitted_at=submitted_at
    )
