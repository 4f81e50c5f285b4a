"""``analyze-failures``: read-only views over ``failure_logs``, ``failure_counts`` and
``record_status``. Every function here only reads."""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Any

import apsw
import msgspec

from eventlog.errors import NothingMatched, OperatorError
from projections.failure_logs import SPEC as FAILURE_LOGS


class Summary(msgspec.Struct, frozen=True):
    failures_logged: int
    records_with_failures: int
    records_failing_now: int
    dead_letters: int
    top_error_types: list[tuple[str, int]]


def summary(conn: apsw.Connection) -> Summary:
    logged, records = conn.execute(
        "SELECT count(*), count(DISTINCT record_key) FROM failure_logs"
    ).fetchone()
    failing = conn.execute("SELECT count(*) FROM failure_counts").fetchone()[0]
    dead = conn.execute(
        "SELECT count(*) FROM record_status WHERE status = 'dead_lettered'"
    ).fetchone()[0]
    top = conn.execute(
        "SELECT error_type, count(*) AS n FROM failure_logs GROUP BY error_type "
        "ORDER BY n DESC, error_type LIMIT 5"
    ).fetchall()
    return Summary(logged, records, failing, dead, [tuple(t) for t in top])


def by_error_type(conn: apsw.Connection) -> list[tuple[str, int, int]]:
    """(error type, failures, distinct records), most frequent first."""
    return conn.execute(
        "SELECT error_type, count(*) AS n, count(DISTINCT record_key) FROM failure_logs "
        "GROUP BY error_type ORDER BY n DESC, error_type"
    ).fetchall()


def by_state(conn: apsw.Connection) -> list[tuple[str, int, int]]:
    """(state, failures, distinct records), most frequent first."""
    return conn.execute(
        "SELECT state, count(*) AS n, count(DISTINCT record_key) FROM failure_logs "
        "GROUP BY state ORDER BY n DESC, state"
    ).fetchall()


def by_school(conn: apsw.Connection) -> list[tuple[str, str, int, int]]:
    """(state, school, failures, distinct records), most frequent first."""
    return conn.execute(
        "SELECT state, school, count(*) AS n, count(DISTINCT record_key) FROM failure_logs "
        "GROUP BY state, school ORDER BY n DESC, state, school"
    ).fetchall()


class RecordReport(msgspec.Struct, frozen=True):
    record_key: str
    status: str
    failure_count: int
    failures: list[dict[str, Any]]


def record(conn: apsw.Connection, key: str) -> RecordReport:
    """One record's status, current failure count and every logged failure."""
    status_row = conn.execute(
        "SELECT status FROM record_status WHERE record_key = ?", (key,)
    ).fetchone()
    count_row = conn.execute(
        "SELECT count FROM failure_counts WHERE record_key = ?", (key,)
    ).fetchone()
    cols = FAILURE_LOGS.columns
    rows = conn.execute(
        f"SELECT {', '.join(cols)} FROM failure_logs WHERE record_key = ? ORDER BY seq", (key,)
    ).fetchall()
    if status_row is None and not rows:
        raise NothingMatched(f"the log has nothing about record {key!r}")
    return RecordReport(
        key,
        status_row[0] if status_row else "pending",
        count_row[0] if count_row else 0,
        [dict(zip(cols, r, strict=True)) for r in rows],
    )


def export_csv(conn: apsw.Connection, path: Path) -> int:
    """Write every failure log row to ``path`` (written to a temporary file, then renamed)."""
    cols = FAILURE_LOGS.columns
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(cols)
            n = 0
            for row in conn.execute(f"SELECT {', '.join(cols)} FROM failure_logs ORDER BY seq"):
                writer.writerow(row)
                n += 1
        tmp.replace(path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise OperatorError(f"cannot write --export-csv {path}: {e.strerror or e}") from e
    return n
