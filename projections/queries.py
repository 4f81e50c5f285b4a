"""The read side: every question the commands ask of the projection tables, as typed functions.

Each function takes the :class:`~eventlog.store.EventStore` and returns the projection's own row
struct (``ActiveBatch``, ``FailureLog``, ...), a small struct defined here, or a count. All are
read-only and run through :meth:`EventStore.query` (inside the SQLite error translation), in
whatever transaction the caller holds: wrap several in ``store.snapshot()`` for one consistent
view, or call them inside ``store.write()`` when a decision must see the state it appends to.
Functions taking a list of keys read it in chunks SQLite accepts (:data:`IN_CHUNK`); the
``*_rows`` functions stream from the cursor, so memory stays flat in the table's size.

The SQL here runs on both backends: written with ``?`` placeholders (the PostgreSQL connection
translates them) and in the SQL both dialects share (integer sums cast, text in byte order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import msgspec

from eventlog.events import DEFAULT_PROJECT, ResetFilter
from eventlog.states import RecordStatus
from eventlog.store import EventStore
from projections.abandoned_batches import SPEC as ABANDONED_BATCHES
from projections.abandoned_batches import AbandonedBatch
from projections.active_batches import SPEC as ACTIVE_BATCHES
from projections.active_batches import ActiveBatch
from projections.deferred_submissions import SPEC as DEFERRED_SUBMISSIONS
from projections.deferred_submissions import DeferredSubmission
from projections.failure_counts import SPEC as FAILURE_COUNTS
from projections.failure_counts import FailureCount
from projections.failure_logs import SPEC as FAILURE_LOGS
from projections.failure_logs import FailureLog
from projections.finished_jobs import SPEC as FINISHED_JOBS
from projections.finished_jobs import FinishedJob
from projections.leases import SPEC as LEASES
from projections.leases import Lease
from projections.record_counts import records_with
from projections.runs import SPEC as RUNS
from projections.runs import Run
from projections.submission_intents import SPEC as SUBMISSION_INTENTS
from projections.submission_intents import SubmissionIntent
from projections.submission_quota import SCOPE as QUOTA_SCOPE
from projections.submission_quota import SPEC as SUBMISSION_QUOTA
from projections.submission_quota import SubmissionQuota
from projections.tables import TableSpec
from projections.token_usage import SPEC as TOKEN_USAGE
from projections.token_usage import TokenUsage
from projections.workers import SPEC as WORKERS
from projections.workers import WorkerRow

#: Values per ``IN (...)`` list: well under SQLite's limit on bound parameters.
IN_CHUNK = 500

__all__ = [
    "FAILING_BY_COUNT_SQL",
    "FAILURES_BY_SCHOOL_SQL",
    "FAILURE_GROUPS_SQL",
    "FAILURE_LOGS_OF_SQL",
    "FAILURE_LOG_ROWS_SQL",
    "FAILURE_SUMMARY_SQL",
    "IN_CHUNK",
    "STATUS_COUNTS_SQL",
    "FailureGroup",
    "ProjectLoad",
    "ReusableImage",
    "SchoolFailureGroup",
    "StatusCounts",
    "UsageTotals",
    "abandoned_batches",
    "active_batches",
    "batch_held_record",
    "count_events",
    "count_held_records",
    "count_in_flight",
    "count_rows",
    "count_submissions_in_progress",
    "create_refusals_of",
    "dead_letter_keys",
    "deferred_to_check",
    "failing_by_count",
    "failure_count_of",
    "failure_counts",
    "failure_counts_matching",
    "failure_counts_of",
    "failure_groups",
    "failure_groups_by_school",
    "failure_log_rows",
    "failure_logs_at",
    "failure_logs_of",
    "failure_summary",
    "failure_totals",
    "file_projects",
    "finished_jobs",
    "garbage_files",
    "has_open_intent",
    "in_flight_keys",
    "is_active_batch",
    "last_run",
    "open_intents",
    "pending_keys",
    "project_loads",
    "rejected_inputs",
    "reserved_keys",
    "retry_counts",
    "reusable_images",
    "run",
    "status_counts",
    "status_of",
    "statuses_of",
    "submission_quotas",
    "superseded_records",
    "unfinished_run_ids",
    "uploaded_file_names",
    "usage_by_model",
    "usage_of_run",
    "usage_totals",
    "watched_batch_ids",
]


def _columns(spec: TableSpec, alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{c}" for c in spec.columns)


def _count(store: EventStore, sql: str, params: Sequence[Any] = ()) -> int:
    row = store.query_one(sql, params)
    return int(row[0]) if row and row[0] is not None else 0


def _sum(column: str) -> str:
    """An integer sum in both dialects (PostgreSQL's sum of a BIGINT is a NUMERIC)."""
    return f"CAST(sum({column}) AS BIGINT)"


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values)


def _in_chunks(values: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for i in range(0, len(values), IN_CHUNK):
        yield values[i : i + IN_CHUNK]


def _literal(value: str) -> str:
    """``value`` as an SQL string literal (for SQL shared with the dashboard, which binds none)."""
    return "'" + value.replace("'", "''") + "'"


# --- the log itself, and table sizes ---------------------------------------------------------


def count_events(store: EventStore) -> int:
    """How many events the log holds."""
    return _count(store, "SELECT count(*) FROM events")


def count_events_of_type(
    store: EventStore, type_: str, after_seq: int, until_seq: int | None = None
) -> int:
    """How many ``type_`` events the log holds after ``after_seq`` (up to ``until_seq``, None:
    the end): a range of the primary key, no payload decoded."""
    end = 2**62 if until_seq is None else until_seq
    return _count(
        store,
        "SELECT count(*) FROM events WHERE seq > ? AND seq <= ? AND type = ?",
        (after_seq, end, type_),
    )


def count_rows(store: EventStore, spec: TableSpec) -> int:
    """How many rows ``spec``'s projection table holds."""
    return _count(store, f"SELECT count(*) FROM {spec.name}")


# --- submissions: active batches, open intents, abandoned batches ----------------------------


def active_batches(store: EventStore) -> list[ActiveBatch]:
    """Every batch the service is working on, oldest submission first."""
    return [
        ActiveBatch(*r)
        for r in store.query(
            f"SELECT {_columns(ACTIVE_BATCHES)} FROM active_batches ORDER BY submitted_seq"
        )
    ]


def finished_jobs(store: EventStore) -> list[FinishedJob]:
    """Completed batches whose job is still to be deleted from the service, oldest first."""
    return [
        FinishedJob(*r)
        for r in store.query(
            f"SELECT {_columns(FINISHED_JOBS)} FROM finished_jobs ORDER BY completed_seq"
        )
    ]


def is_active_batch(store: EventStore, batch_id: str) -> bool:
    sql = "SELECT count(*) FROM active_batches WHERE batch_id = ?"
    return bool(_count(store, sql, (batch_id,)))


def open_intents(store: EventStore) -> list[SubmissionIntent]:
    """Every submission intended but not yet resolved, oldest first."""
    return [
        SubmissionIntent(*r)
        for r in store.query(
            f"SELECT {_columns(SUBMISSION_INTENTS)} FROM submission_intents ORDER BY intended_seq"
        )
    ]


def has_open_intent(store: EventStore, display_name: str) -> bool:
    return bool(
        _count(
            store,
            "SELECT count(*) FROM submission_intents WHERE display_name = ?",
            (display_name,),
        )
    )


def count_submissions_in_progress(store: EventStore) -> int:
    """Active batches plus open intents, read in one statement (one consistent answer)."""
    return _count(
        store,
        "SELECT (SELECT count(*) FROM active_batches) + (SELECT count(*) FROM submission_intents)",
    )


class ProjectLoad(msgspec.Struct, frozen=True):
    """What one project has on the service: batches (active plus open intents) and their
    estimated tokens."""

    batches: int = 0
    tokens: int = 0


#: Per project: batches (active plus open intents) and their estimated tokens; also the
#: dashboard's ``project_capacity``.
PROJECT_LOADS_SQL = (
    f"SELECT project, count(*) AS batches, coalesce({_sum('estimated_tokens')}, 0) AS tokens "
    "FROM (SELECT project, estimated_tokens FROM active_batches UNION ALL "
    "SELECT project, estimated_tokens FROM submission_intents) AS loads GROUP BY project"
)


def project_loads(store: EventStore) -> dict[str, ProjectLoad]:
    """Per project, the active batches plus open intents and their estimated tokens, read in
    one statement: what admission per project counts (a project with none is absent)."""
    return {r[0]: ProjectLoad(r[1], r[2]) for r in store.query(PROJECT_LOADS_SQL)}


def submission_quotas(store: EventStore) -> dict[str, SubmissionQuota]:
    """Every project's quota row, by project."""
    return {
        q.project: q
        for q in (
            SubmissionQuota(*r)
            for r in store.query(
                f"SELECT {_columns(SUBMISSION_QUOTA)} FROM submission_quota WHERE scope = ?",
                (QUOTA_SCOPE,),
            )
        )
    }


def deferred_to_check(store: EventStore) -> list[DeferredSubmission]:
    """Deferred submissions whose display name was not looked up yet, oldest first."""
    return [
        DeferredSubmission(*r)
        for r in store.query(
            f"SELECT {_columns(DEFERRED_SUBMISSIONS)} FROM deferred_submissions "
            "WHERE checked = 0 ORDER BY deferred_seq"
        )
    ]


def abandoned_batches(store: EventStore) -> list[AbandonedBatch]:
    """Every batch given up on that is still watched for late results, in the order given up."""
    return [
        AbandonedBatch(*r)
        for r in store.query(
            f"SELECT {_columns(ABANDONED_BATCHES)} FROM abandoned_batches ORDER BY abandoned_seq"
        )
    ]


def watched_batch_ids(store: EventStore) -> set[str]:
    """The ids of every batch still active or watched after being given up on."""
    return {
        r[0]
        for r in store.query(
            "SELECT batch_id FROM active_batches UNION SELECT batch_id FROM abandoned_batches"
        )
    }


# --- records in flight -------------------------------------------------------------------------


def reserved_keys(store: EventStore, display_name: str) -> list[str]:
    """The records an open intent reserved (no batch id yet), in key order."""
    return [
        r[0]
        for r in store.query(
            "SELECT record_key FROM inflight_records WHERE display_name = ? "
            "AND batch_id IS NULL ORDER BY record_key",
            (display_name,),
        )
    ]


def count_in_flight(store: EventStore, batch_id: str | None = None) -> int:
    """Records in flight: all of them, or (``batch_id``) those of one batch."""
    if batch_id is None:
        return _count(store, "SELECT count(*) FROM inflight_records")
    return _count(store, "SELECT count(*) FROM inflight_records WHERE batch_id = ?", (batch_id,))


def count_held_records(store: EventStore, name: str) -> int:
    """Records held by the batch ``name`` or reserved by the open intent of that display name."""
    return _count(
        store,
        "SELECT count(*) FROM inflight_records WHERE batch_id = ? "
        "OR (batch_id IS NULL AND display_name = ?)",
        (name, name),
    )


def in_flight_keys(store: EventStore) -> set[str]:
    return {r[0] for r in store.rows("SELECT record_key FROM inflight_records")}


def pending_among(store: EventStore, batch_id: str, record_keys: Sequence[str]) -> set[str]:
    """Those of ``record_keys`` still in flight in ``batch_id`` (not yet judged), in chunked IN
    lists: one statement for a chunk of result lines, not one a line."""
    out: set[str] = set()
    for part in _in_chunks(record_keys):
        out.update(
            r[0]
            for r in store.query(
                "SELECT record_key FROM inflight_records WHERE batch_id = ? "
                f"AND record_key IN ({_marks(part)})",
                [batch_id, *part],
            )
        )
    return out


def output_cuts(store: EventStore) -> dict[str, int]:
    """Every page whose answers were cut at the output limit (``finish_max_tokens`` failures,
    ever: a reset keeps the larger limit a page needed), with how many times; few pages."""
    return dict(
        store.query(
            "SELECT record_key, count(*) FROM failure_logs "
            "WHERE error_type = 'finish_max_tokens' GROUP BY record_key"
        )
    )


def pending_keys(store: EventStore, batch_id: str, limit: int) -> list[str]:
    """Up to ``limit`` of ``batch_id``'s records still in flight, in key order (call again after
    judging them for the next ones)."""
    return [
        r[0]
        for r in store.query(
            "SELECT record_key FROM inflight_records WHERE batch_id = ? ORDER BY record_key "
            "LIMIT ?",
            (batch_id, limit),
        )
    ]


def batch_held_record(store: EventStore, batch_id: str, record_key: str) -> bool:
    """Whether ``record_key`` was one of ``batch_id``'s records when it was submitted."""
    return (
        store.query_one(
            "SELECT 1 FROM batch_record_keys WHERE batch_id = ? AND record_key = ?",
            (batch_id, record_key),
        )
        is not None
    )


def superseded_records(store: EventStore, batch_id: str, since_seq: int) -> dict[str, str]:
    """``batch_id``'s in-flight records already written by another batch after ``since_seq``:
    record key -> the batch that wrote it."""
    return dict(
        store.query(
            "SELECT s.record_key, s.batch_id FROM record_status s JOIN inflight_records i "
            "USING (record_key) WHERE i.batch_id = ? AND s.status = ? "
            "AND s.updated_seq > ?",
            (batch_id, RecordStatus.WRITTEN, since_seq),
        )
    )


# --- record status, failures, dead letters, rejected inputs ------------------------------------


def status_of(store: EventStore, record_key: str) -> str | None:
    """A record's status, or None when the log knows nothing of it."""
    row = store.query_one("SELECT status FROM record_status WHERE record_key = ?", (record_key,))
    return row[0] if row else None


def statuses_of(store: EventStore, record_keys: Sequence[str]) -> dict[str, str]:
    """The status of each of ``record_keys`` the log knows."""
    return _by_record_key(store, "record_status", "status", record_keys)


class StatusCounts(msgspec.Struct, frozen=True, array_like=True):
    """The counts ``status`` shows, read in one statement (:data:`STATUS_COUNTS_SQL`)."""

    active_batches: int
    open_intents: int
    in_flight: int
    written: int
    dead_letters: int
    rejected_inputs: int


#: ``status``'s counts, and the dashboard's progress: one text, so the two never disagree.
STATUS_COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM active_batches) AS active_batches, "
    "(SELECT count(*) FROM submission_intents) AS open_intents, "
    "(SELECT count(*) FROM inflight_records) AS in_flight, "
    f"{records_with(RecordStatus.WRITTEN)} AS written, "
    f"{records_with(RecordStatus.DEAD_LETTERED)} AS dead_letters, "
    "(SELECT count(*) FROM rejected_inputs) AS rejected_inputs"
)


def status_counts(store: EventStore) -> StatusCounts:
    row = store.query_one(STATUS_COUNTS_SQL)
    return StatusCounts(*row) if row else StatusCounts(0, 0, 0, 0, 0, 0)


def failure_counts(store: EventStore) -> dict[str, int]:
    """Every record's current failure count."""
    return dict(store.query("SELECT record_key, count FROM failure_counts"))


def _by_record_key(
    store: EventStore,
    table: str,
    column: str,
    record_keys: Sequence[str],
    where: str = "",
    params: Sequence[Any] = (),
) -> dict[str, Any]:
    """``table``'s ``column`` for those of ``record_keys`` with a row (and, with ``where``, that
    condition on ``params`` too), in chunked IN lists."""
    also = f"{where} AND " if where else ""
    out: dict[str, Any] = {}
    for part in _in_chunks(record_keys):
        sql = f"SELECT record_key, {column} FROM {table} WHERE {also}record_key IN ({_marks(part)})"
        out.update(store.query(sql, [*params, *part]))
    return out


def create_refusals_of(
    store: EventStore, record_keys: Sequence[str], error_type: str
) -> dict[str, int]:
    """The failure counts of those of ``record_keys`` whose last failure was ``error_type``
    (a refused create: the next batch holding such a page holds it alone)."""
    return _by_record_key(
        store, "failure_counts", "count", record_keys, "last_error_type = ?", [error_type]
    )


def failure_counts_of(store: EventStore, record_keys: Sequence[str]) -> dict[str, int]:
    """The current failure counts of ``record_keys`` (those with none are absent)."""
    return _by_record_key(store, "failure_counts", "count", record_keys)


def failure_count_of(store: EventStore, record_key: str) -> int:
    row = store.query_one("SELECT count FROM failure_counts WHERE record_key = ?", (record_key,))
    return row[0] if row else 0


def failure_counts_matching(store: EventStore, f: ResetFilter) -> list[FailureCount]:
    """The failure counts a reset filter selects (parameterised SQL), in record-key order."""
    where, params = _reset_where(f)
    sql = (
        f"SELECT {_columns(FAILURE_COUNTS)} FROM failure_counts"
        f"{' WHERE ' + ' AND '.join(where) if where else ''} ORDER BY record_key"
    )
    return [FailureCount(*r) for r in store.query(sql, params)]


def given_up_uploads_matching(store: EventStore, f: ResetFilter) -> list[str]:
    """The record keys of pages given up on (their uploads) that a reset filter selects."""
    where, params = _reset_where(f)
    sql = (
        "SELECT record_key FROM upload_budget WHERE given_up = 1"
        f"{''.join(' AND ' + w for w in where)} ORDER BY record_key"
    )
    return [r[0] for r in store.query(sql, params)]


def given_up_uploads(store: EventStore) -> dict[str, tuple[int, int]]:
    """Every page given up on (its uploads): record key -> (size, mtime_ns) of its file then."""
    return {
        k: (size, mtime)
        for k, size, mtime in store.query(
            "SELECT record_key, size_bytes, mtime_ns FROM upload_budget WHERE given_up = 1"
        )
    }


def failed_uploads_of(store: EventStore, record_keys: Sequence[str]) -> dict[str, int]:
    """Failed upload attempts since the last success of those of ``record_keys`` that have any."""
    return _by_record_key(store, "upload_budget", "failed_attempts", record_keys)


def _reset_where(f: ResetFilter) -> tuple[list[str], list[Any]]:
    """The WHERE terms (and their parameters) of a reset filter, over state/school/year."""
    where: list[str] = []
    params: list[Any] = []
    if f.states:
        where.append(f"state IN ({_marks(f.states)})")
        params.extend(f.states)
    if f.schools:
        where.append(f"school IN ({_marks(f.schools)})")
        params.extend(f.schools)
    if f.year_start is not None:
        where.append("year >= ?")
        params.append(f.year_start)
    if f.year_end is not None:
        where.append("year <= ?")
        params.append(f.year_end)
    return where, params


#: The failure counts (``f``) of records still to be retried: neither written (a written page's
#: count is history) nor dead-lettered (counted on its own).
_STILL_FAILING = (
    "failure_counts f LEFT JOIN record_status s USING (record_key) "
    f"WHERE coalesce(s.status, '') NOT IN ({_literal(RecordStatus.WRITTEN)}, "
    f"{_literal(RecordStatus.DEAD_LETTERED)})"
)
#: Records still to be retried per failure count; ``status``'s "retrying" line and the
#: dashboard's ``retrying_by_count``.
FAILING_BY_COUNT_SQL = (
    f"SELECT f.count AS failures, count(*) AS records FROM {_STILL_FAILING} "
    "GROUP BY f.count ORDER BY f.count"
)


def failing_by_count(store: EventStore) -> list[tuple[int, int]]:
    """(failure count, records) of the records still to be retried (neither written nor dead
    lettered), by count."""
    return [(count, n) for count, n in store.query(FAILING_BY_COUNT_SQL)]


def retry_counts(store: EventStore, record_keys: Sequence[str]) -> list[tuple[str, int]]:
    """(record key, failure count) of those of ``record_keys`` (sorted) that may still be retried,
    in key order."""
    out: list[tuple[str, int]] = []
    for part in _in_chunks(record_keys):
        out += [
            (k, c)
            for k, c in store.query(
                "SELECT f.record_key, f.count FROM failure_counts f JOIN record_status s "
                f"USING (record_key) WHERE s.status IN ({_marks(_RETRYING)}) "
                f"AND f.record_key IN ({_marks(part)}) ORDER BY f.record_key",
                [*_RETRYING, *part],
            )
        ]
    return out


#: Statuses of a record that may still be retried (neither written nor dead-lettered).
_RETRYING = (
    RecordStatus.FAILED,
    RecordStatus.PENDING,
    RecordStatus.RESERVED,
    RecordStatus.INFLIGHT,
)


def dead_letter_keys(store: EventStore) -> set[str]:
    return {r[0] for r in store.rows("SELECT record_key FROM dead_letters")}


def rejected_inputs(store: EventStore) -> dict[str, str]:
    """Every input refused by the scanner: path -> reason."""
    return dict(store.query("SELECT path, reason FROM rejected_inputs"))


# --- failure logs --------------------------------------------------------------------------------


class FailureGroup(msgspec.Struct, frozen=True, array_like=True):
    """Failures sharing one value (an error type, a state): how many, over how many records."""

    value: str
    failures: int
    records: int


class SchoolFailureGroup(msgspec.Struct, frozen=True, array_like=True):
    state: str
    school: str
    failures: int
    records: int


#: ``analyze-failures --summary``'s totals in one statement (one consistent answer); the
#: dashboard's ``failure_summary``.
FAILURE_SUMMARY_SQL = (
    "SELECT (SELECT count(*) FROM failure_logs) AS failures_logged, "
    "(SELECT count(DISTINCT record_key) FROM failure_logs) AS records_with_failures, "
    f"(SELECT count(*) FROM {_STILL_FAILING}) AS records_failing_now, "
    f"{records_with(RecordStatus.DEAD_LETTERED)} AS dead_letters"
)


def failure_summary(store: EventStore) -> tuple[int, int, int, int]:
    """(failures logged, records that failed, records failing now, dead letters); failing now:
    neither written nor dead-lettered, the records ``status`` calls retrying."""
    row = store.query_one(FAILURE_SUMMARY_SQL)
    return (row[0], row[1], row[2], row[3]) if row else (0, 0, 0, 0)


def failure_totals(store: EventStore) -> tuple[int, int]:
    """(failures logged, distinct records that failed)."""
    row = store.query_one("SELECT count(*), count(DISTINCT record_key) FROM failure_logs")
    return (row[0], row[1]) if row else (0, 0)


def _failure_groups_sql(*columns: str) -> str:
    cols = ", ".join(columns)
    return (
        f"SELECT {cols}, count(*) AS failures, count(DISTINCT record_key) AS records "
        f"FROM failure_logs GROUP BY {cols} ORDER BY failures DESC, {cols}"
    )


#: ``analyze-failures --by-error-type`` / ``--by-state`` / ``--by-school``, and the dashboard's
#: canned queries of the same names: one text each, so the two never disagree.
FAILURE_GROUPS_SQL: dict[str, str] = {
    "error_type": _failure_groups_sql("error_type"),
    "state": _failure_groups_sql("state"),
}
FAILURES_BY_SCHOOL_SQL = _failure_groups_sql("state", "school")
#: One record's logged failures, oldest first; bound by position (``?``: PostgreSQL's connection
#: translates only ``?``); the dashboard's canned query names it ``:record_key``.
FAILURE_LOGS_OF_SQL = (
    f"SELECT {_columns(FAILURE_LOGS)} FROM failure_logs WHERE record_key = ? ORDER BY seq"
)


def failure_groups(store: EventStore, column: Literal["error_type", "state"]) -> list[FailureGroup]:
    """Failures per ``column`` (error type or state), most frequent first."""
    return [FailureGroup(*r) for r in store.query(FAILURE_GROUPS_SQL[column])]


def failure_groups_by_school(store: EventStore) -> list[SchoolFailureGroup]:
    """Failures per (state, school), most frequent first."""
    return [SchoolFailureGroup(*r) for r in store.query(FAILURES_BY_SCHOOL_SQL)]


def failure_logs_of(store: EventStore, record_key: str) -> list[FailureLog]:
    """Every logged failure of one record, oldest first."""
    return [FailureLog(*r) for r in store.query(FAILURE_LOGS_OF_SQL, (record_key,))]


def failure_logs_at(store: EventStore, seqs: Sequence[int]) -> list[FailureLog]:
    """The failure logs recorded by the events ``seqs`` (sorted), in sequence order."""
    out: list[FailureLog] = []
    for part in _in_chunks(seqs):
        out += [
            FailureLog(*r)
            for r in store.query(
                f"SELECT {_columns(FAILURE_LOGS)} FROM failure_logs "
                f"WHERE seq IN ({_marks(part)}) ORDER BY seq",
                part,
            )
        ]
    return out


#: Every failure log row in sequence order: ``analyze-failures --export-csv`` and the dashboard's
#: ``failure_log`` (whose CSV link is the same export).
FAILURE_LOG_ROWS_SQL = f"SELECT {_columns(FAILURE_LOGS)} FROM failure_logs ORDER BY seq"


def failure_log_rows(store: EventStore) -> Iterator[FailureLog]:
    """Every failure log row in sequence order, streamed (flat memory)."""
    for r in store.rows(FAILURE_LOG_ROWS_SQL):
        yield FailureLog(*r)


# --- uploaded files ------------------------------------------------------------------------------


def garbage_files(
    store: EventStore, uploaded_before_seq: int, reusable_since: str = ""
) -> list[str]:
    """Files no submission needs: held by a submission that is over (a batch cleared while the
    service may still run it keeps them), or held by none and uploaded at or before
    ``uploaded_before_seq``; in upload order. An image held by a deferred submission and
    uploaded at or after ``reusable_since`` is kept for reuse ('' keeps none) while its record
    waits (not written, dead-lettered, or taken by another submission: with several projects
    the page may have gone with another project's key, which cannot reference this one)."""
    return [
        r[0]
        for r in store.query(
            """
SELECT file_name FROM uploaded_files u
WHERE (u.holder IS NULL AND u.uploaded_seq <= ?)
   OR (u.holder IS NOT NULL
       AND u.holder NOT IN (SELECT display_name FROM active_batches)
       AND u.holder NOT IN (SELECT display_name FROM submission_intents)
       AND u.holder NOT IN (SELECT display_name FROM abandoned_batches WHERE terminal = 0)
       AND NOT (u.kind = 'image' AND ? != '' AND u.uploaded_at >= ?
                AND u.holder IN (SELECT display_name FROM deferred_submissions)
                AND u.record_key NOT IN (SELECT record_key FROM record_status
                                         WHERE status IN (?, ?, ?, ?))))
ORDER BY u.uploaded_seq
""",
            (
                uploaded_before_seq,
                reusable_since,
                reusable_since,
                RecordStatus.WRITTEN,
                RecordStatus.DEAD_LETTERED,
                RecordStatus.RESERVED,
                RecordStatus.INFLIGHT,
            ),
        )
    ]


class ReusableImage(msgspec.Struct, frozen=True):
    """A page image still on the File API that a new submission may reference again."""

    record_key: str
    file_name: str
    file_uri: str
    mime_type: str
    size_bytes: int


def reusable_images(
    store: EventStore,
    record_keys: Sequence[str],
    uploaded_since: str,
    project: str = DEFAULT_PROJECT,
) -> dict[str, ReusableImage]:
    """For each of ``record_keys``, its newest image uploaded by ``project``'s key at or after
    ``uploaded_since`` that no live submission holds (unheld, or held by a deferred submission).
    Another project's key could not reference it."""
    out: dict[str, ReusableImage] = {}
    for chunk in _in_chunks(record_keys):
        for r in store.query(
            f"""
SELECT record_key, file_name, file_uri, mime_type, size_bytes FROM uploaded_files u
WHERE u.kind = 'image' AND u.file_uri != '' AND u.uploaded_at >= ?
  AND u.record_key IN ({_marks(chunk)}) AND u.project = ?
  AND (u.holder IS NULL OR u.holder IN (SELECT display_name FROM deferred_submissions))
ORDER BY u.uploaded_seq
""",
            (uploaded_since, *chunk, project),
        ):
            out[r[0]] = ReusableImage(*r)
    return out


def file_projects(store: EventStore, file_names: Sequence[str]) -> dict[str, str]:
    """The project (API key) owning each of ``file_names`` the log knows; others are absent."""
    out: dict[str, str] = {}
    for chunk in _in_chunks(file_names):
        out.update(
            store.query(
                f"SELECT file_name, project FROM uploaded_files "
                f"WHERE file_name IN ({_marks(chunk)})",
                tuple(chunk),
            )
        )
    return out


def uploaded_file_names(store: EventStore) -> set[str]:
    return {r[0] for r in store.query("SELECT file_name FROM uploaded_files")}


# --- runs and token usage ------------------------------------------------------------------------


def last_run(store: EventStore) -> Run | None:
    """The run started last, or None before the first."""
    row = store.query_one(f"SELECT {_columns(RUNS)} FROM runs ORDER BY started_seq DESC LIMIT 1")
    return Run(*row) if row else None


def run(store: EventStore, run_id: str) -> Run | None:
    row = store.query_one(f"SELECT {_columns(RUNS)} FROM runs WHERE run_id = ?", (run_id,))
    return Run(*row) if row else None


def unfinished_run_ids(store: EventStore) -> list[str]:
    """Runs that started and never finished, oldest first."""
    return [
        r[0]
        for r in store.query(
            "SELECT run_id FROM runs WHERE finished_seq IS NULL ORDER BY started_seq"
        )
    ]


def usage_of_run(store: EventStore, run_id: str) -> list[TokenUsage]:
    """One run's token usage, a row per model."""
    return [
        TokenUsage(*r)
        for r in store.query(
            f"SELECT {_columns(TOKEN_USAGE)} FROM token_usage WHERE run_id = ?", (run_id,)
        )
    ]


def usage_by_model(store: EventStore) -> list[TokenUsage]:
    """Token usage summed over every run, a row per model (``run_id`` is empty)."""
    return [
        TokenUsage(*r)
        for r in store.query(
            f"SELECT '', model, {_sum('results')}, {_sum('prompt_tokens')}, "
            f"{_sum('output_tokens')}, {_sum('failed_results')}, "
            f"{_sum('failed_prompt_tokens')}, {_sum('failed_output_tokens')} "
            "FROM token_usage GROUP BY model"
        )
    ]


class UsageTotals(msgspec.Struct, frozen=True):
    """Billed results and their tokens for one model, over the whole log."""

    results: int
    prompt_tokens: int
    output_tokens: int


def usage_totals(store: EventStore, model: str) -> UsageTotals:
    row = store.query_one(
        f"SELECT {_sum('results')}, {_sum('prompt_tokens')}, {_sum('output_tokens')} "
        "FROM token_usage "
        "WHERE model = ?",
        (model,),
    )
    results, prompt, output = row if row else (None, None, None)
    return UsageTotals(results or 0, prompt or 0, output or 0)


# --- several workers: partition leases ------------------------------------------------------


def leases(store: EventStore) -> list[Lease]:
    """Every partition lease, by partition (expired ones included: nobody took them yet)."""
    return [
        Lease(*r) for r in store.query(f"SELECT {_columns(LEASES)} FROM leases ORDER BY partition")
    ]


def lease_of(store: EventStore, partition: str) -> Lease | None:
    row = store.query_one(
        f"SELECT {_columns(LEASES)} FROM leases WHERE partition = ?", (partition,)
    )
    return Lease(*row) if row else None


def workers(store: EventStore) -> list[WorkerRow]:
    """Every worker that ever renewed a lease, most recently renewed first."""
    return [
        WorkerRow(*r)
        for r in store.query(f"SELECT {_columns(WORKERS)} FROM workers ORDER BY renewed_at DESC")
    ]


def run_has_ended(store: EventStore, run_id: str) -> bool:
    """Whether ``run_id`` has a ``RunFinished`` in the log (recorded by itself or another)."""
    row = store.query_one("SELECT finished_seq FROM runs WHERE run_id = ?", (run_id,))
    return row is not None and row[0] is not None


def ended_worker_runs(store: EventStore) -> set[str]:
    """The runs of ``workers`` rows that have finished (a ``RunFinished``): not live, even
    before their last renewal lapses."""
    return {
        r[0]
        for r in store.query(
            "SELECT w.run_id FROM workers w JOIN runs r ON r.run_id = w.run_id "
            "WHERE r.finished_seq IS NOT NULL"
        )
    }


def batch_partitions(store: EventStore) -> dict[str, str]:
    """The partition of each shared-mode submission, by display name and by batch id."""
    out: dict[str, str] = {}
    for name, partition, batch_id in store.query(
        "SELECT display_name, partition, batch_id FROM batch_partitions"
    ):
        out[name] = partition
        if batch_id:
            out[batch_id] = partition
    return out


def file_owners(store: EventStore, file_names: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    """For each of ``file_names`` the log knows: (its record key, its holder's display name)."""
    out: dict[str, tuple[str, str | None]] = {}
    for chunk in _in_chunks(file_names):
        for name, key, holder in store.query(
            f"SELECT file_name, record_key, holder FROM uploaded_files "
            f"WHERE file_name IN ({_marks(chunk)})",
            tuple(chunk),
        ):
            out[name] = (key, holder)
    return out
