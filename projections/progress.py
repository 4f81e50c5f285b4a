"""Reads of the job's progress: the pages the scans counted (``dataset_counts``) and the pages
written per hour (``hourly_activity``). Each reads a few rows: no log scan, no tree walk."""

from __future__ import annotations

from eventlog.store import EventStore

__all__ = ["DATASET_TOTAL_SQL", "dataset_counts", "dataset_total", "written_per_hour"]

#: The pages known and when the newest count was made (the dashboard's card reads the same).
DATASET_TOTAL_SQL = "SELECT coalesce(sum(pages), 0), max(counted_at) FROM dataset_counts"


def dataset_counts(store: EventStore) -> dict[tuple[str, str], tuple[str, int]]:
    """(state, school) -> (its folder's path, pages) as last counted."""
    rows = store.query("SELECT state, school, path, pages FROM dataset_counts")
    return {(state, school): (path, pages) for state, school, path, pages in rows}


def dataset_total(store: EventStore) -> tuple[int, str | None]:
    """Pages known (the last counts summed) and the time of the newest count."""
    row = store.query_one(DATASET_TOTAL_SQL)
    return (int(row[0]), row[1]) if row else (0, None)


def written_per_hour(store: EventStore, since_hour: str) -> dict[str, int]:
    """Pages written per hour bucket from ``since_hour`` on."""
    rows = store.query(
        "SELECT hour, sum(written) FROM hourly_activity WHERE hour >= ? GROUP BY hour",
        (since_hour,),
    )
    return {hour: int(n) for hour, n in rows}
