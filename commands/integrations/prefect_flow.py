"""The cycle as a Prefect flow: an optional extra (``uv sync --extra prefect``).

Each step of the cycle is a task, retried by Prefect with exponential backoff when it fails on a
transient error (a Gemini 5xx/429/timeout that outlived the gateway's own retries, or a database
locked past its busy timeout). The run report is published as a Markdown artifact and its counts
as a table artifact, as the operations document describes for the Prefect UI.

The core never imports this module; only ``commands prefect-run`` / ``prefect-serve`` do.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from commands.config import load_config
from commands.errors import GatewayError
from commands.views.report import render
from commands.worker.session import session
from eventlog.errors import DatabaseBusy
from projections import open_store, queries

T = TypeVar("T")
REPORT_KEY = "gemini-batches-run-report"
COUNTS_KEY = "gemini-batches-counts"
ACTIVE_KEY = "gemini-batches-active"


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only what may succeed later; a bug or an operator error fails at once."""
    error = state.result(raise_on_failure=False)
    if isinstance(error, GatewayError):
        return error.transient
    return isinstance(error, DatabaseBusy)


_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": exponential_backoff(backoff_factor=2),
    "retry_condition_fn": is_transient,
    "cache_policy": NO_CACHE,
}


def as_task(name: str, fn: Callable[[], T], /) -> T:
    """Run one step of the cycle as a Prefect task named ``name``, with the retries above."""

    def step() -> T:
        return fn()

    return task(name=name, **_RETRIES)(step)()


@flow(name="gemini-batches")
def gemini_batches(config_path: str | None = None) -> dict[str, int]:
    """One cycle of the pipeline; returns the run report's counts. The API key is read from the
    environment of the worker, never passed as a parameter (Prefect stores parameters)."""
    config = load_config(Path(config_path) if config_path else None)
    with session(config, command="prefect flow") as s:
        s.cycle.run(as_task)
    assert s.report is not None
    counts = s.report.counts()
    create_markdown_artifact(
        markdown=render(s.report), key=REPORT_KEY, description=f"gemini-batches run {s.run_id}"
    )
    create_table_artifact(
        table=[{"figure": k, "value": v} for k, v in counts.items()],
        key=COUNTS_KEY,
        description=f"counts of run {s.run_id}",
    )
    create_table_artifact(
        table=active_batch_rows(config.log_location, scratch=config.paths.database),
        key=ACTIVE_KEY,
        description=f"active batches after run {s.run_id}: the service's request counts",
    )
    return counts


def active_batch_rows(
    location: Path | str, *, scratch: Path | None = None
) -> list[dict[str, str | int]]:
    """One row per active batch of the log at ``location`` (a SQLite file or a ``[database]
    url``; ``scratch`` as :func:`projections.open_store` takes it): its state and the service's
    done / failed / pending counts (``batchStats``), as ``status`` shows them (read-only)."""
    with open_store(location, write=False, scratch=scratch) as store:
        batches = queries.active_batches(store)
    return [
        {
            "batch": b.batch_id,
            "state": b.state,
            "done": b.succeeded,
            "failed": b.failed,
            "pending": b.pending,
            "transport": b.transport,
        }
        for b in batches
    ] or [{"batch": "(none active)"}]


def serve(config_path: str | None, interval_seconds: float | None, cron: str | None) -> None:
    """Serve the flow with a schedule (an interval, default the config's poll interval)."""
    config = load_config(Path(config_path) if config_path else None)
    schedule: dict[str, Any] = (
        {"cron": cron}
        if cron
        else {
            "interval": timedelta(seconds=interval_seconds or config.batching.poll_interval_seconds)
        }
    )
    gemini_batches.serve(name="gemini-batches", parameters={"config_path": config_path}, **schedule)
