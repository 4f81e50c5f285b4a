"""Collecting hostile result files in process (the fake port over the emulator's service): odd
lines fail their own records and the rest is collected; a result file that is gone ends the
batch with its records freed."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.schema import PageExtraction
from commands.worker.collect import BatchRef, collect
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from eventlog.events import BatchCompleted, BatchResultsUnavailable, RecordFailed
from gemini_emulator.policy import Policy
from gemini_emulator.service import Service
from projections import verify
from tests.commands.test_collect_unit import KEYS, logged, submit
from tests.fakes import EmulatorPort, make_worker
from tests.reads import scalar

MORE = [f"Ohio:Lincoln:2020:{p}" for p in range(4, 9)]


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
def worker(tmp_path: Path, service: Service) -> Iterator[Worker]:
    w = make_worker(tmp_path, EmulatorPort(service), [], results={"max_result_line_bytes": 16384})
    yield w
    w.pools.close()
    w.store.close()


HOSTILE = {
    KEYS[0]: {"line_b64": base64.b64encode(b'{"key": "{key}", "response": "\xff"}').decode()},
    KEYS[1]: {"line": '{"key": "{key}", "response": ' + "[" * 3000 + "]" * 3000 + "}"},
    KEYS[2]: {"line": '{"key": "{key}", "response": "a string"}'},
    MORE[0]: {"line": '{"key": "{key}", "error": 500}'},
    MORE[1]: {
        "line": '{"key": "{key}", "response": {"candidates": [], '
        '"usageMetadata": {"promptTokenCount": -3}}}'
    },
    MORE[2]: {"line": '{"key": "{key}", "response": {"pad": "' + "x" * 20000 + '"}}'},
}
EXPECTED = {
    KEYS[0]: "result_not_utf8",
    KEYS[1]: "result_too_deep",
    KEYS[2]: "malformed_result_line",
    MORE[0]: "malformed_result_line",
    MORE[1]: "bad_usage_metadata",
    MORE[2]: "result_line_too_large",
}


def test_each_hostile_line_fails_its_own_record_and_the_rest_is_collected(
    worker: Worker, service: Service
) -> None:
    service.policy = Policy.from_data(
        {"results": [{"match": k, **rule} for k, rule in HOSTILE.items()]}
    )
    batch = submit(worker, KEYS + MORE)

    counts = worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id)))

    assert counts == {"validated": len(KEYS + MORE) - len(HOSTILE), "failed": len(HOSTILE)}
    events = logged(worker, batch.submitted_seq)
    failed = {e.record_key: e for e in events if isinstance(e, RecordFailed)}
    assert {k: e.error_type for k, e in failed.items()} == EXPECTED
    assert all(e.excerpt for e in failed.values())
    assert "20,0" in failed[MORE[2]].message  # the size of the line too long
    assert isinstance(events[-1], BatchCompleted)
    root = worker.config.paths.output_root
    PageExtraction.model_validate_json(output_path(root, MORE[3]).read_bytes())
    assert scalar(worker.store, "SELECT count(*) FROM inflight_records") == 0
    assert verify(worker.store) is None


@pytest.mark.parametrize(
    "policy",
    [
        {"jobs": [{"outcome": "RESULTS_GONE"}]},
        {"faults": [{"endpoint": "files.download", "status": 404}]},
        {"faults": [{"endpoint": "files.download", "status": 410}]},
    ],
    ids=["gone", "404", "410"],
)
def test_a_result_file_that_is_gone_frees_the_batch_records(
    worker: Worker, service: Service, policy: dict[str, object]
) -> None:
    service.policy = Policy.from_data(policy)
    batch = submit(worker, KEYS)

    assert (
        worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id))) is None
    )

    [gone] = [
        e for e in logged(worker, batch.submitted_seq) if isinstance(e, BatchResultsUnavailable)
    ]
    assert gone.batch_id == batch.batch_id and gone.code in (403, 404, 410)
    store = worker.store
    assert scalar(store, "SELECT count(*) FROM active_batches") == 0
    assert scalar(store, "SELECT count(*) FROM inflight_records") == 0
    statuses = {r[0] for r in store.query("SELECT status FROM record_status")}
    assert statuses == {"pending"}
    assert verify(store) is None


def test_a_transient_download_failure_waits_then_gives_up(worker: Worker, service: Service) -> None:
    service.policy = Policy.from_data({"faults": [{"endpoint": "files.download", "status": 503}]})
    batch = submit(worker, KEYS)
    remote = worker.gateway.get_batch(batch.batch_id)
    seq = worker.store.last_seq()

    assert (
        worker.pools.run(collect(worker, batch, remote)) is None
    )  # it succeeded just now: try again later
    assert worker.store.last_seq() == seq
    assert scalar(worker.store, "SELECT count(*) FROM inflight_records") == len(KEYS)

    old = BatchRef(
        batch.batch_id,
        batch.model,
        batch.submitted_seq,
        batch.submitted_at,
        succeeded_at="2000-01-01T00:00:00.000000Z",
    )
    assert worker.pools.run(collect(worker, old, remote)) is None
    [gone] = [e for e in logged(worker, seq) if isinstance(e, BatchResultsUnavailable)]
    assert gone.code == 503
    assert scalar(worker.store, "SELECT count(*) FROM inflight_records") == 0
