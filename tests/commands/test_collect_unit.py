"""Collecting a succeeded batch, in process: the fake Gemini port over the emulator's service and
a real store. The batch is made on the service from a request file, as the cycle makes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.gemini.requests import request_line
from commands.schema import PageExtraction
from commands.worker.collect import BatchRef, collect
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from eventlog.events import (
    BatchCompleted,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    RecordFailed,
    RecordValidated,
    ResultLinesIgnored,
)
from gemini_emulator.policy import Policy
from gemini_emulator.service import EXTRA_KEYS, Service
from tests.fakes import EmulatorPort, make_worker

KEYS = ["Ohio:Lincoln:2020:1", "Ohio:Lincoln:2020:2", "Ohio:Lincoln:2020:3"]
MODEL = "gemini-2.5-flash"


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
def worker(tmp_path: Path, service: Service) -> Iterator[Worker]:
    w = make_worker(tmp_path, EmulatorPort(service), [])
    yield w
    w.pools.close()
    w.store.close()


def submit(w: Worker, keys: list[str]) -> BatchRef:
    """Upload a request file, create its batch on the service and log the submission."""
    schema = PageExtraction.model_json_schema()
    body = b"".join(request_line(k, "Extract the page.", [], schema) for k in keys)
    request = w.gateway.upload(body, mime_type="jsonl", display_name="gb-unit-001-requests")
    job = w.gateway.create_batch(model=MODEL, input_file=request.name, display_name="gb-unit-001")
    w.append([BatchSubmissionIntended(display_name="gb-unit-001", model=MODEL, record_keys=keys)])
    [rec] = w.append(
        [
            BatchSubmitted(
                batch_id=job.name, display_name="gb-unit-001", model=MODEL, record_keys=keys
            )
        ]
    )
    return BatchRef(job.name, MODEL, rec.seq, rec.ts)


def logged(w: Worker, after_seq: int) -> list[Event]:
    return [r.event for r in w.store.read(after_seq=after_seq)]


def test_valid_lines_become_outputs_and_events_and_failures_are_recorded(
    worker: Worker, service: Service
) -> None:
    service.policy = Policy.from_data(
        {
            "records": [
                {"match": KEYS[1], "outcome": "schema_violation"},
                {"match": KEYS[2], "outcome": "missing_line"},
            ]
        }
    )
    batch = submit(worker, KEYS)
    remote = worker.gateway.get_batch(batch.batch_id)
    assert remote.state == "JOB_STATE_SUCCEEDED" and remote.result_file

    counts = worker.pools.run(collect(worker, batch, remote))

    assert counts == {"validated": 1, "failed": 2}
    root = worker.config.paths.output_root
    PageExtraction.model_validate_json(output_path(root, KEYS[0]).read_bytes())
    assert not output_path(root, KEYS[1]).exists() and not output_path(root, KEYS[2]).exists()
    events = logged(worker, batch.submitted_seq)
    [validated] = [e for e in events if isinstance(e, RecordValidated)]
    assert validated.record_key == KEYS[0] and validated.batch_id == batch.batch_id
    assert validated.output_path == str(output_path(root, KEYS[0]))
    assert validated.total_tokens > 0 and validated.model == MODEL
    failed = {e.record_key: e.error_type for e in events if isinstance(e, RecordFailed)}
    assert failed == {KEYS[1]: "schema_violation", KEYS[2]: "missing_line"}
    assert not [e for e in events if isinstance(e, ResultLinesIgnored)]
    assert isinstance(events[-1], BatchCompleted)
    assert (events[-1].validated, events[-1].failed) == (1, 2)


def test_duplicate_lines_are_ignored_and_the_first_line_wins(
    worker: Worker, service: Service
) -> None:
    service.policy = Policy.from_data({"jobs": [{"outcome": "DUPLICATES"}]})
    batch = submit(worker, KEYS[:2])

    counts = worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id)))

    # Every line came twice, the copy an answer that is not JSON: had it won, the record failed.
    assert counts == {"validated": 2, "failed": 0}
    events = logged(worker, batch.submitted_seq)
    [ignored] = [e for e in events if isinstance(e, ResultLinesIgnored)]
    assert sorted(ignored.duplicates) == KEYS[:2]
    assert ignored.unknown_keys == [] and ignored.unreadable == 0
    root = worker.config.paths.output_root
    for key in KEYS[:2]:
        PageExtraction.model_validate_json(output_path(root, key).read_bytes())


def test_lines_for_keys_the_batch_never_held_are_ignored_and_never_become_paths(
    worker: Worker, service: Service, tmp_path: Path
) -> None:
    service.policy = Policy.from_data({"jobs": [{"outcome": "EXTRA_KEYS"}]})
    batch = submit(worker, KEYS[:1])
    before = {p for p in tmp_path.rglob("*") if p.is_file()}

    counts = worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id)))

    assert counts == {"validated": 1, "failed": 0}
    events = logged(worker, batch.submitted_seq)
    [ignored] = [e for e in events if isinstance(e, ResultLinesIgnored)]
    assert sorted(ignored.unknown_keys) == sorted(EXTRA_KEYS) and ignored.duplicates == []
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    root = worker.config.paths.output_root
    assert {p for p in written if p.suffix == ".json"} == {output_path(root, KEYS[0])}
    assert not any(isinstance(e, RecordFailed) for e in events)


def test_an_output_folder_replaced_by_a_symlink_out_of_the_root_is_refused_at_write_time(
    worker: Worker, service: Service, tmp_path: Path
) -> None:
    """The scan checks output folders before submission; a folder swapped for a symlink out of
    ``output_root`` after that (while the batch ran) is refused when its results are written:
    nothing lands outside the root, the records fail, no output is recorded."""
    batch = submit(worker, KEYS[:2])
    root = worker.config.paths.output_root
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "Ohio" / "Lincoln").mkdir(parents=True)
    (root / "Ohio" / "Lincoln" / "2020").symlink_to(elsewhere, target_is_directory=True)

    counts = worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id)))

    assert counts == {"validated": 0, "failed": 2}
    assert list(elsewhere.iterdir()) == []
    events = logged(worker, batch.submitted_seq)
    assert not [e for e in events if isinstance(e, RecordValidated)]
    failed = {e.record_key: e.error_type for e in events if isinstance(e, RecordFailed)}
    assert failed == {key: "unsafe_key" for key in KEYS[:2]}


def test_an_output_folder_that_is_a_symlink_inside_the_root_is_written_through(
    worker: Worker, service: Service
) -> None:
    batch = submit(worker, KEYS[:2])
    root = worker.config.paths.output_root
    shadow = root / "shadow"
    shadow.mkdir(parents=True)
    (root / "Ohio" / "Lincoln").mkdir(parents=True)
    (root / "Ohio" / "Lincoln" / "2020").symlink_to(shadow, target_is_directory=True)

    counts = worker.pools.run(collect(worker, batch, worker.gateway.get_batch(batch.batch_id)))

    assert counts == {"validated": 2, "failed": 0}
    assert sorted(p.name for p in shadow.iterdir()) == ["1.json", "2.json"]
    for key in KEYS[:2]:
        PageExtraction.model_validate_json(output_path(root, key).read_bytes())
