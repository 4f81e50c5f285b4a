"""The Prefect flow under Prefect's own test harness (a real local Prefect API, not mocks),
against the emulator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

prefect = pytest.importorskip("prefect")

from prefect.client.orchestration import get_client  # noqa: E402
from prefect.client.schemas.filters import (  # noqa: E402
    ArtifactFilter,
    ArtifactFilterKey,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from commands.config import load_config  # noqa: E402
from commands.errors import GatewayError  # noqa: E402
from commands.integrations import prefect_flow  # noqa: E402
from eventlog.errors import DatabaseBusy, OperatorError  # noqa: E402
from gemini_emulator import Emulator  # noqa: E402
from projections import open_store  # noqa: E402
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config  # noqa: E402
from tests.reads import scalar  # noqa: E402


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _artifacts(key: str) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
            )

    return asyncio.run(read())


def _task_runs(flow_run_id: Any) -> list[Any]:
    async def read() -> list[Any]:
        async with get_client() as client:
            return await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id])
                )
            )

    return asyncio.run(read())


def test_the_flow_runs_cycles_and_publishes_the_report_and_counts(
    harness: None, tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = keys_for(1, 2, 1, 6)
    emulator.policy = {
        "records": [{"match": keys[2], "outcome": "invalid_json", "times": 1}],
        # The gateway's two download attempts both fail, then the next one works: the cycle
        # absorbs the transient failure (other batches are still polled, new pages still
        # submitted) and a later cycle downloads the results; no task fails.
        "faults": [{"endpoint": "files.download", "calls": [1, 2], "status": 503}],
    }
    make_dataset(tmp_path / "input", keys)
    config_path = write_config(
        tmp_path, emulator.url, network={"api_retry_attempts": 2}, batching={"batch_size": 20}
    )
    monkeypatch.setenv("E2E_GEMINI_KEY", API_KEY)
    states = []
    for _ in range(6):
        state = prefect_flow.gemini_batches(config_path=str(config_path), return_state=True)
        states.append(state)
        assert state.is_completed(), state
        counts = state.result()
        if counts["records_processed"]:
            break
    first_results_run = states[-1]
    assert counts["records_validated"] == len(keys) - 1 and counts["records_failed"] == 1
    poll = [
        t
        for t in _task_runs(first_results_run.state_details.flow_run_id)
        if t.name.startswith("poll active batches")
    ]
    # The step no longer fails on a service error it can absorb: Prefect's retry of a step that
    # does fail on a transient error is test_a_step_failing_transiently_is_retried_by_prefect.
    assert poll and poll[0].run_count == 1
    assert emulator.policy.calls("files.download") == 3

    [report] = [
        a
        for a in _artifacts(prefect_flow.REPORT_KEY)
        if a.flow_run_id == first_results_run.state_details.flow_run_id
    ]
    assert report.type == "markdown"
    assert f"Processed {len(keys)} records. {len(keys) - 1} Success, 1 Failed." in report.data
    assert "| invalid_json |" in report.data
    tables = [
        a
        for a in _artifacts(prefect_flow.COUNTS_KEY)
        if a.flow_run_id == first_results_run.state_details.flow_run_id
    ]
    [table] = tables
    rows = {r["figure"]: r["value"] for r in _table_rows(table.data)}
    assert rows["records_validated"] == len(keys) - 1
    assert rows["records_failed"] == 1 and rows["batches_completed"] == 1
    # Each flow run also publishes the active batches with the service's request counts.
    runs = {s.state_details.flow_run_id for s in states}
    active = [a for a in _artifacts(prefect_flow.ACTIVE_KEY) if a.flow_run_id in runs]
    assert len(active) == len(states)
    first = _table_rows(next(a for a in active if a.flow_run_id == runs_order(states)[0]).data)
    assert first and {"batch", "state", "done", "failed", "pending"} <= set(first[0])

    # One more flow run retries the failed page; then everything is written.
    for _ in range(6):
        counts = prefect_flow.gemini_batches(config_path=str(config_path))
        store = open_store(load_config(config_path).paths.database)
        busy = scalar(store, "SELECT count(*) FROM inflight_records")
        store.close()
        if not busy:
            break
    assert check_final_state(load_config(config_path), emulator, keys) == {"written": len(keys)}


def runs_order(states: list[Any]) -> list[Any]:
    return [s.state_details.flow_run_id for s in states]


def _table_rows(data: Any) -> list[dict[str, Any]]:
    import json

    return json.loads(data) if isinstance(data, str) else data


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (GatewayError("503", code=503, transient=True), True),
        (GatewayError("400", code=400, transient=False), False),
        (DatabaseBusy("locked"), True),
        (OperatorError("bad config"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_transient_errors_are_retried(error: Exception, retried: bool) -> None:
    class State:
        def result(self, raise_on_failure: bool = True) -> Exception:
            return error

    assert prefect_flow.is_transient(None, None, State()) is retried


@pytest.mark.parametrize(
    ("error", "runs"),
    [
        (GatewayError("503", code=503, transient=True), 2),
        (DatabaseBusy("locked"), 2),
        (GatewayError("400", code=400, transient=False), 1),
    ],
)
def test_a_step_failing_transiently_is_retried_by_prefect(
    harness: None, error: Exception, runs: int
) -> None:
    """A step of the cycle run as a task (``as_task``) that fails once: Prefect runs it again
    when the error is transient, and fails the flow at once when it is not."""
    calls: list[int] = []

    def step() -> str:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return "done"

    @prefect.flow
    def one_step() -> str:
        return prefect_flow.as_task("flaky step", step)

    state = one_step(return_state=True)
    assert len(calls) == runs
    assert state.is_completed() is (runs == 2)
    [task_run] = [
        t for t in _task_runs(state.state_details.flow_run_id) if t.name.startswith("flaky step")
    ]
    assert task_run.run_count == runs


def test_the_core_never_imports_prefect() -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = (
        "import sys, commands.cli, commands.worker.session, commands.worker.cycle, "
        "commands.views.status, replay, "
        "projections, eventlog, gemini_emulator; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
