"""Deleting uploaded files nothing needs, in process: the fake Gemini port over the emulator's
service and a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.worker.cleanup import collect_garbage
from commands.worker.context import Worker
from eventlog.events import BatchSubmissionIntended, FileDeleted, FileUploaded
from gemini_emulator.policy import Policy
from gemini_emulator.service import Service
from tests.fakes import EmulatorPort, make_worker

OWNER = "fake-key"


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
def worker(tmp_path: Path, service: Service) -> Iterator[Worker]:
    w = make_worker(tmp_path, EmulatorPort(service, api_key=OWNER), [])
    yield w
    w.pools.close()
    w.store.close()


def uploaded(w: Worker, key: str, *, logged: bool = True) -> str:
    """Upload a page image; with ``logged``, record it as the upload step does. Its file name."""
    f = w.gateway.upload(b"\x89PNG image", mime_type="image/png", display_name=key)
    if logged:
        w.append(
            [
                FileUploaded(
                    record_key=key,
                    file_name=f.name,
                    file_uri=f.uri,
                    mime_type=f.mime_type,
                    size_bytes=f.size_bytes,
                )
            ]
        )
    return f.name


def on_service(service: Service) -> set[str]:
    return {f.name for f in service.list_files(OWNER)}


def deletions(w: Worker) -> dict[str, str]:
    return {
        r.event.file_name: r.event.reason
        for r in w.store.read()
        if isinstance(r.event, FileDeleted)
    }


def test_files_no_submission_holds_are_deleted_and_held_ones_kept(
    worker: Worker, service: Service
) -> None:
    loose = uploaded(worker, "Ohio:Lincoln:2020:1")
    held = uploaded(worker, "Ohio:Lincoln:2020:2")
    worker.append(
        [
            BatchSubmissionIntended(
                display_name="gb-unit-001",
                model="m",
                record_keys=["Ohio:Lincoln:2020:2"],
                files=[held],
            )
        ]
    )

    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq(), sweep=False)) == 1

    assert on_service(service) == {held}
    assert deletions(worker) == {loose: "no longer needed"}


def test_a_file_uploaded_during_this_cycle_waits_for_its_submission(
    worker: Worker, service: Service
) -> None:
    start = worker.store.last_seq()
    fresh = uploaded(worker, "Ohio:Lincoln:2020:1")

    assert worker.pools.run(collect_garbage(worker, start, sweep=False)) == 0

    assert on_service(service) == {fresh} and deletions(worker) == {}


def test_a_file_already_gone_counts_as_deleted(worker: Worker, service: Service) -> None:
    gone = uploaded(worker, "Ohio:Lincoln:2020:1")
    service.delete_file(OWNER, gone.removeprefix("files/"))  # expired, or deleted by hand

    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq(), sweep=False)) == 1

    assert deletions(worker) == {gone: "already gone"}


def test_a_delete_that_fails_is_left_for_the_next_cycle(worker: Worker, service: Service) -> None:
    kept = uploaded(worker, "Ohio:Lincoln:2020:1")
    service.policy = Policy.from_data({"faults": [{"endpoint": "files.delete", "status": 503}]})

    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq(), sweep=False)) == 0

    assert on_service(service) == {kept} and deletions(worker) == {}
    service.policy = Policy()
    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq(), sweep=False)) == 1
    assert on_service(service) == set() and deletions(worker) == {kept: "no longer needed"}


def test_the_sweep_deletes_files_of_ours_the_log_never_heard_of_and_nothing_else(
    worker: Worker, service: Service
) -> None:
    # A crash between an upload and its event leaves a page image and a request file behind.
    lost_image = uploaded(worker, "Ohio:Lincoln:2020:1", logged=False)
    lost_requests = uploaded(worker, "gb-20260101T000000Z-ab12-001-requests", logged=False)
    not_ours = uploaded(worker, "holiday photo.png", logged=False)
    # Not a record key (no key has a year or page in other scripts' digits): someone else's.
    arabic_digits = uploaded(worker, "Ohio:Lincoln:\u0662\u0660\u0662\u0660:1", logged=False)

    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq())) == 2

    assert on_service(service) == {not_ours, arabic_digits}
    assert deletions(worker) == {lost_image: "no longer needed", lost_requests: "no longer needed"}


def test_a_listing_that_fails_leaves_the_sweep_for_the_next_cycle(
    worker: Worker, service: Service
) -> None:
    lost = uploaded(worker, "Ohio:Lincoln:2020:1", logged=False)
    service.policy = Policy.from_data({"faults": [{"endpoint": "files.list", "status": 500}]})

    assert worker.pools.run(collect_garbage(worker, worker.store.last_seq())) == 0

    assert on_service(service) == {lost} and deletions(worker) == {}
