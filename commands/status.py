"""``status``: one screen of where the work stands, read from the projections (read-only)."""

from __future__ import annotations

from datetime import datetime

import apsw
import msgspec

from eventlog.store import TS_FORMAT, EventStore


class ActiveBatchView(msgspec.Struct, frozen=True):
    batch_id: str
    display_name: str
    state: str
    records: int
    submitted_at: str
    age_hours: float


class Status(msgspec.Struct, frozen=True):
    database: str
    events: int
    last_event_at: str | None
    active_batches: list[ActiveBatchView]
    open_intents: list[str]
    in_flight: int
    written: int
    failing_by_count: dict[str, int]
    dead_letters: int


def age_hours(ts: str, now: datetime) -> float:
    then = datetime.strptime(ts, TS_FORMAT).replace(tzinfo=now.tzinfo)
    return round((now - then).total_seconds() / 3600, 2)


def status(store: EventStore) -> Status:
    """A consistent snapshot (one read transaction) of the live projections."""
    now = store.clock()
    with store.snapshot():
        conn: apsw.Connection = store.conn
        bounds = store.bounds()
        batches = [
            ActiveBatchView(b, d, s, n, at, age_hours(at, now))
            for b, d, s, n, at in conn.execute(
                "SELECT batch_id, display_name, state, record_count, submitted_at "
                "FROM active_batches ORDER BY submitted_seq"
            )
        ]
        intents = [
            r[0]
            for r in conn.execute(
                "SELECT display_name FROM submission_intents ORDER BY intended_seq"
            )
        ]
        in_flight = conn.execute("SELECT count(*) FROM inflight_records").fetchone()[0]
        written = conn.execute(
            "SELECT count(*) FROM record_status WHERE status = 'written'"
        ).fetchone()[0]
        failing = {
            str(count): n
            for count, n in conn.execute(
                "SELECT f.count, count(*) FROM failure_counts f "
                "LEFT JOIN record_status s USING (record_key) "
                "WHERE coalesce(s.status, '') NOT IN ('written', 'dead_lettered') "
                "GROUP BY f.count ORDER BY f.count"
            )
        }
        dead = conn.execute(
            "SELECT count(*) FROM record_status WHERE status = 'dead_lettered'"
        ).fetchone()[0]
    return Status(
        database=str(store.path),
        events=bounds[1][0] if bounds else 0,
        last_event_at=bounds[1][1] if bounds else None,
        active_batches=batches,
        open_intents=intents,
        in_flight=in_flight,
        written=written,
        failing_by_count=failing,
        dead_letters=dead,
    )


def render(s: Status) -> str:
    lines = [f"database     {s.database}"]
    lines.append(f"events       {s.events} (last at {s.last_event_at or 'never'})")
    lines.append(f"active       {len(s.active_batches)} batch(es)")
    for b in s.active_batches:
        warn = (
            "  WARNING: older than 24 h (the service's target turnaround)"
            if b.age_hours > 24
            else ""
        )
        lines.append(
            f"  {b.batch_id}  {b.state}  {b.records} records  age {b.age_hours:.1f} h{warn}"
        )
    if s.open_intents:
        lines.append(f"open intents {len(s.open_intents)} (submission not yet confirmed)")
        lines.extend(f"  {name}" for name in s.open_intents)
    lines.append(f"in flight    {s.in_flight} records")
    lines.append(f"written      {s.written} records (by this log)")
    retrying = sum(s.failing_by_count.values())
    by_count = ", ".join(f"{n} at {c}" for c, n in s.failing_by_count.items())
    lines.append(
        f"retrying     {retrying} records" + (f" ({by_count} failures so far)" if retrying else "")
    )
    lines.append(f"dead letters {s.dead_letters}")
    return "\n".join(lines)
