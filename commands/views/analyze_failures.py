"""``analyze-failures``: read-only views over ``failure_logs``, ``failure_counts`` and
``record_status``. Every function here only reads (through ``projections.queries``); wrap calls in
``store.snapshot()`` for one consistent view."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import msgspec

from eventlog.errors import NothingMatched, OperatorError
from eventlog.states import RecordStatus
from eventlog.store import EventStore
from projections import queries
from projections.failure_logs import SPEC as FAILURE_LOGS


class Summary(msgspec.Struct, frozen=True):
    failures_logged: int
    records_with_failures: int
    records_failing_now: int
    dead_letters: int
    top_error_types: list[tuple[str, int]]


def summary(store: EventStore) -> Summary:
    logged, records, failing, dead = queries.failure_summary(store)
    top = [(g.value, g.failures) for g in queries.failure_groups(store, "error_type")[:5]]
    return Summary(logged, records, failing, dead, top)


def _rows(groups: list[Any]) -> list[Any]:
    return [msgspec.structs.astuple(g) for g in groups]


def by_error_type(store: EventStore) -> list[tuple[str, int, int]]:
    """(error type, failures, distinct records), most frequent first."""
    return _rows(queries.failure_groups(store, "error_type"))


def by_state(store: EventStore) -> list[tuple[str, int, int]]:
    """(state, failures, distinct records), most frequent first."""
    return _rows(queries.failure_groups(store, "state"))


def by_school(store: EventStore) -> list[tuple[str, str, int, int]]:
    """(state, school, failures, distinct records), most frequent first."""
    return _rows(queries.failure_groups_by_school(store))


class RecordReport(msgspec.Struct, frozen=True):
    record_key: str
    status: str
    failure_count: int
    failures: list[dict[str, Any]]


def record(store: EventStore, key: str) -> RecordReport:
    """One record's status, current failure count and every logged failure."""
    status = queries.status_of(store, key)
    count = queries.failure_count_of(store, key)
    logs = queries.failure_logs_of(store, key)
    if status is None and not logs:
        raise NothingMatched(f"the log has nothing about record {key!r}")
    cols = FAILURE_LOGS.columns
    return RecordReport(
        key,
        status if status is not None else RecordStatus.PENDING,
        count,
        [dict(zip(cols, msgspec.structs.astuple(r), strict=True)) for r in logs],
    )


def export_csv(store: EventStore, path: Path) -> int:
    """Write every failure log row to ``path`` (written to a temporary file, then renamed);
    rows are streamed, so memory stays flat in the table's size."""
    cols = FAILURE_LOGS.columns
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(cols)
            n = 0
            for row in queries.failure_log_rows(store):
                writer.writerow(msgspec.structs.astuple(row))
                n += 1
        tmp.replace(path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OperatorError(f"cannot write --export-csv {path}: {e.strerror or e}") from e
    return n
