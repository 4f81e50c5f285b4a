"""A months-long job's log, built through the store API for the dashboard's bench: ``PAGES``
pages written over ``DAYS`` days (the realistic mix of :mod:`workload`: uploads, intent,
submission, results with 2% failures, deletions), the scan's counts (more pages known than
written, so there is a finish to expect), dead letters, two active batches (one a day old), an
open intent, a quota hold and two workers (one lapsed).

    uv run python bench/dashboard_log.py /tmp/big.db 1000000
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from workload import BATCH, batch_events, key

from eventlog.events import (
    BatchStateObserved,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    LeaseAcquired,
    LeaseRenewed,
    PagesCounted,
    RecordDeadLettered,
    RecordFailed,
    RunStarted,
)
from eventlog.timestamps import format_ts
from projections import open_store

DAYS = 139
#: Pages per (State, School) folder in :func:`workload.key`.
FOLDER = 1000


def _counts(pages: int) -> list[Event]:
    """The scan's counts: every folder the written pages fall in, a fifth more pages known."""
    folders = -(-int(pages * 1.2) // FOLDER)
    out: list[Event] = []
    for f in range(folders):
        state, school, _, _ = key(f * FOLDER).split(":")
        path = f"/data/input/{state}/{school}"
        out.append(PagesCounted(path=path, state=state, school=school, pages=FOLDER))
    return out


def _dead_letters(events: list[Event]) -> list[Event]:
    return [
        RecordDeadLettered(record_key=e.record_key, failures=3, max_retries=3)
        for e in events
        if isinstance(e, RecordFailed)
    ]


def _the_present(now: datetime, pages: int) -> list[tuple[datetime, list[Event]]]:
    """What is going on now: two batches (one submitted a day ago), a quota hold, two workers
    (the second lapsed an hour ago, still holding a partition), an open intent."""
    out: list[tuple[datetime, list[Event]]] = []
    for i, hours in enumerate((26, 1)):
        keys = [key(pages + i * BATCH + j) for j in range(BATCH)]
        name, batch = f"gb-now-{i}", f"batches/now{i}"
        out.append(
            (
                now - timedelta(hours=hours),
                [
                    BatchSubmissionIntended(
                        display_name=name, model="gemini-2.5-flash", record_keys=keys
                    ),
                    BatchSubmitted(
                        batch_id=batch,
                        display_name=name,
                        model="gemini-2.5-flash",
                        record_keys=keys,
                    ),
                    BatchStateObserved(batch_id=batch, state="JOB_STATE_RUNNING"),
                ],
            )
        )
    keys = [key(pages + 2 * BATCH + j) for j in range(BATCH)]
    live, lapsed = format_ts(now + timedelta(hours=2)), format_ts(now - timedelta(hours=1))
    out.append(
        (
            now - timedelta(minutes=12),  # after the last batch: the hold is still on
            [
                BatchSubmissionDeferred(
                    display_name="gb-held", reason="quota", message="429 RESOURCE_EXHAUSTED"
                ),
                RunStarted(run_id="run-a"),
                LeaseRenewed(worker="a", partitions=["0"], expires_at=live, run_id="run-a"),
                LeaseAcquired(partition="0", worker="a", expires_at=live),
                LeaseRenewed(worker="b", partitions=["1"], expires_at=lapsed, run_id="run-b"),
                LeaseAcquired(partition="1", worker="b", expires_at=lapsed),
            ],
        )
    )
    out.append(
        (
            now - timedelta(minutes=10),
            [
                BatchSubmissionIntended(
                    display_name="gb-open", model="gemini-2.5-flash", record_keys=keys
                )
            ],
        )
    )
    return out


def build(path: Path, pages: int, days: int = DAYS) -> int:
    """The log at ``path`` (created); returns its events. Timestamps run from ``days`` ago to
    now, one batch of :data:`workload.BATCH` pages at a time, what is going on now among them."""
    now = datetime.now(UTC)
    start = now - timedelta(days=days)
    batches = pages // BATCH
    step = (now - timedelta(minutes=15) - start) / max(1, batches)
    schedule: list[tuple[datetime, int, list[Event]]] = [
        (start + b * step, b, []) for b in range(batches)
    ]
    schedule += [(at, -1, group) for at, group in _the_present(now, pages)]
    schedule.sort(key=lambda s: s[0])
    clock = [start]
    store = open_store(path, create=True, clock=lambda: clock[0])
    try:
        store.append(_counts(pages), actor="run:bench")
        for at, b, group in schedule:
            clock[0] = at
            if b >= 0:
                group = batch_events(b, b * BATCH)
                if b % 10 == 3:  # a tenth of the failing pages end dead-lettered
                    group += _dead_letters(group)
            store.append(group, actor="run:bench")
        return store.last_seq()
    finally:
        store.close()


if __name__ == "__main__":
    target, n = Path(sys.argv[1]), int(sys.argv[2])
    began = time.perf_counter()
    events = build(target, n)
    print(f"built {n:,} pages, {events:,} events in {time.perf_counter() - began:.0f} s: {target}")
