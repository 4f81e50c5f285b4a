"""``status``: one screen an operator reads in five seconds, from the projections (read-only).

It never writes: pending pages are counted by the same scan the worker uses, without appending
the scan's events.
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from commands.config import Config
from commands.rules.cost import Spend, Usage, spend
from commands.worker.scan import scan_dataset
from eventlog.store import TS_FORMAT, EventStore

STALE_HOURS = 24  # the service's target turnaround


class ActiveBatchView(msgspec.Struct, frozen=True):
    batch_id: str
    display_name: str
    state: str
    records: int
    submitted_at: str
    age_hours: float


class LastRun(msgspec.Struct, frozen=True):
    run_id: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    message: str
    spend: Spend


class Status(msgspec.Struct, frozen=True):
    database: str
    events: int
    last_event_at: str | None
    active_batches: list[ActiveBatchView]
    open_intents: list[str]
    in_flight: int
    written: int
    pending: int | None
    waiting_for_previous_page: int | None
    rejected_inputs: int
    failing_by_count: dict[str, int]
    dead_letters: int
    last_run: LastRun | None
    spend: Spend


def age_hours(ts: str, now: datetime) -> float:
    then = datetime.strptime(ts, TS_FORMAT).replace(tzinfo=now.tzinfo)
    return round((now - then).total_seconds() / 3600, 2)


def _usage(rows: list[tuple[str, str, int, int, int, int, int, int]]) -> list[Usage]:
    return [Usage(*row[1:]) for row in rows]


def status(store: EventStore, config: Config, *, scan: bool = True) -> Status:
    """A consistent snapshot (one read transaction) of the live projections, plus (``scan``) the
    pages waiting to be submitted."""
    now = store.clock()
    pending = waiting = None
    if scan:
        decision = scan_dataset(store, config, limit=0)
        pending = decision.counts["candidates"]
        waiting = decision.counts["waiting_for_previous_page"]
    with store.snapshot():
        conn = store.conn
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
        rejected = conn.execute("SELECT count(*) FROM rejected_inputs").fetchone()[0]
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
        totals = conn.execute(
            "SELECT '', model, sum(results), sum(prompt_tokens), sum(output_tokens), "
            "sum(failed_results), sum(failed_prompt_tokens), sum(failed_output_tokens) "
            "FROM token_usage GROUP BY model"
        ).fetchall()
        run = conn.execute(
            "SELECT run_id, started_at, finished_at, outcome, message FROM runs "
            "ORDER BY started_seq DESC LIMIT 1"
        ).fetchone()
        last_run = None
        if run is not None:
            rows = conn.execute("SELECT * FROM token_usage WHERE run_id = ?", (run[0],)).fetchall()
            last_run = LastRun(*run, spend(_usage(rows), config.pricing, config.gemini.model))
    return Status(
        database=str(store.path),
        events=bounds[1][0] if bounds else 0,
        last_event_at=bounds[1][1] if bounds else None,
        active_batches=batches,
        open_intents=intents,
        in_flight=in_flight,
        written=written,
        pending=pending,
        waiting_for_previous_page=waiting,
        rejected_inputs=rejected,
        failing_by_count=failing,
        dead_letters=dead,
        last_run=last_run,
        spend=spend(_usage(totals), config.pricing, config.gemini.model),
    )
