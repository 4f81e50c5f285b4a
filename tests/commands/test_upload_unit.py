"""Uploading page images by the seed's policy, in process: the fake Gemini port over the
emulator's service, the events appended to a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from commands.integrations.demo import png
from commands.pages import Page
from commands.worker.context import Worker
from commands.worker.upload import Uploaded, upload_one, upload_pages
from eventlog.events import FileUploaded, UploadAbandoned, UploadFailed
from gemini_emulator.policy import Policy
from gemini_emulator.service import Service
from tests.fakes import EmulatorPort, make_worker

KEY = "Ohio:Lincoln:2020:1"


@pytest.fixture
def service() -> Service:
    return Service()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def worker(tmp_path: Path, service: Service, sleeps: list[float]) -> Iterator[Worker]:
    w = make_worker(tmp_path, EmulatorPort(service, timeout_seconds=0.5), sleeps)
    yield w
    w.pools.close()
    w.store.close()


def page(tmp: Path, key: str = KEY) -> Page:
    state, school, year, number = key.split(":")
    path = tmp / "input" / state / school / year / f"{number}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png(8, 8, 1))
    return Page(key, state, school, year, number, str(path), "image/png")


def upload(w: Worker, p: Page) -> Uploaded:
    """One page by the worker's upload settings; its events appended as the cycle appends them."""
    settings = w.config.uploads
    out = upload_one(
        w.gateway,
        p,
        attempts=settings.upload_retry_attempts,
        backoff_seconds=settings.upload_retry_backoff_seconds,
        sleep=w.sleep,
    )
    w.append(out.events)
    return out


def faults(service: Service, *rules: dict[str, Any]) -> None:
    service.policy = Policy.from_data({"faults": list(rules)})


def test_transient_failures_are_retried_with_backoff_until_one_works(
    worker: Worker, service: Service, sleeps: list[float], tmp_path: Path
) -> None:
    faults(service, {"endpoint": "files.upload", "match": KEY, "times": 2, "status": 503})
    backoff = worker.config.uploads.upload_retry_backoff_seconds

    out = upload(worker, page(tmp_path))

    assert out.remote is not None and not out.refused
    assert [f.name for f in service.list_files("fake-key")] == [out.remote.name]
    assert sleeps == [backoff, backoff * 2]
    logged = [r.event for r in worker.store.read()]
    assert [type(e) for e in logged] == [UploadFailed, UploadFailed, FileUploaded]
    failed = cast(list[UploadFailed], logged[:2])
    assert [(e.attempt, e.error_type) for e in failed] == [(1, "http_503"), (2, "http_503")]
    assert logged[2] == FileUploaded(
        record_key=KEY,
        file_name=out.remote.name,
        file_uri=out.remote.uri,
        mime_type="image/png",
        size_bytes=out.remote.size_bytes,
        attempt=3,
    )


def test_after_the_last_attempt_the_page_is_abandoned_for_this_cycle(
    worker: Worker, service: Service, sleeps: list[float], tmp_path: Path
) -> None:
    faults(service, {"endpoint": "files.upload", "status": 500})
    attempts = worker.config.uploads.upload_retry_attempts
    backoff = worker.config.uploads.upload_retry_backoff_seconds

    out = upload(worker, page(tmp_path))

    assert out.remote is None and not out.refused and "500" in out.message
    assert sleeps == [backoff * 2**i for i in range(attempts - 1)]  # none after the last
    logged = [r.event for r in worker.store.read()]
    assert [type(e) for e in logged] == [UploadFailed] * attempts + [UploadAbandoned]
    assert logged[-1] == UploadAbandoned(record_key=KEY, attempts=attempts, message=out.message)
    assert service.list_files("fake-key") == []


def test_a_timeout_is_a_network_failure_and_retried(
    worker: Worker, service: Service, sleeps: list[float], tmp_path: Path
) -> None:
    # The answer to the first upload is too slow: the client gives up, the service keeps the
    # file (clean-up finds it later), the next attempt uploads again.
    faults(service, {"endpoint": "files.upload_bytes", "calls": [1], "delay": 0.5})

    out = upload(worker, page(tmp_path))

    logged = [r.event for r in worker.store.read()]
    assert [type(e) for e in logged] == [UploadFailed, FileUploaded]
    assert isinstance(logged[0], UploadFailed) and logged[0].error_type == "network"
    assert out.remote is not None and len(service.list_files("fake-key")) == 2
    assert len(sleeps) == 1


def test_a_refused_upload_is_not_retried(
    worker: Worker, service: Service, sleeps: list[float], tmp_path: Path
) -> None:
    faults(service, {"endpoint": "files.upload", "status": 400, "message": "Unsupported image."})

    out = upload(worker, page(tmp_path))

    assert out.remote is None and out.refused and "Unsupported image." in out.message
    assert sleeps == [] and service.policy.calls("files.upload") == 1
    logged = [r.event for r in worker.store.read()]
    assert [type(e) for e in logged] == [UploadFailed, UploadAbandoned]
    assert isinstance(logged[0], UploadFailed) and logged[0].error_type == "http_400"


def test_concurrent_uploads_yield_every_page_once(
    worker: Worker, service: Service, tmp_path: Path
) -> None:
    keys = [f"Ohio:Lincoln:2020:{n}" for n in range(1, 13)]
    faults(service, {"endpoint": "files.upload", "match": keys[4], "status": 503})

    async def every() -> list[Uploaded]:
        return [
            o
            async for o in upload_pages(
                worker.pools,
                worker.gateway,
                [page(tmp_path, k) for k in keys],
                attempts=2,
                backoff_seconds=0.0,
                concurrency=4,
                sleep=worker.sleep,
            )
        ]

    outcomes = worker.pools.run(every())

    assert sorted(o.page.key for o in outcomes) == sorted(keys)
    done = {o.page.key for o in outcomes if o.remote is not None}
    assert done == set(keys) - {keys[4]}
    assert {f.display_name for f in service.list_files("fake-key")} == done


def test_a_file_changed_since_its_check_is_not_uploaded_and_counts_as_a_failed_attempt(
    worker: Worker, service: Service, tmp_path: Path
) -> None:
    from commands.worker.dataset import file_stamp

    p = page(tmp_path)
    seen = file_stamp(p.path)
    Path(p.path).write_bytes(png(20, 20, 3))  # replaced after the scan looked at it

    out = upload_one(worker.gateway, p, attempts=3, backoff_seconds=0, expected=seen)
    worker.append(out.events)

    assert out.remote is None and not out.refused and out.attempts == 1
    assert "changed since it was checked" in out.message
    assert service.policy.calls("files.upload") == 0 and service.list_files("fake-key") == []
    logged = [r.event for r in worker.store.read()]
    assert [type(e) for e in logged] == [UploadFailed, UploadAbandoned]
    assert isinstance(logged[0], UploadFailed) and logged[0].error_type == "file_changed"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param(b"", "no longer the image", id="emptied"),
        pytest.param(b"GIF89a not a png", "no longer the image", id="replaced_by_another_kind"),
    ],
)
def test_bytes_that_are_no_longer_the_image_are_not_uploaded(
    worker: Worker, service: Service, tmp_path: Path, content: bytes, reason: str
) -> None:
    p = page(tmp_path)
    Path(p.path).write_bytes(content)

    out = upload_one(worker.gateway, p, attempts=3, backoff_seconds=0)

    assert out.remote is None and reason in out.message
    assert service.policy.calls("files.upload") == 0


def test_the_upload_is_made_from_the_bytes_read_once(
    worker: Worker, service: Service, tmp_path: Path
) -> None:
    p = page(tmp_path)
    original = Path(p.path).read_bytes()
    # The service is slow to start the upload; meanwhile the file is truncated on disk.
    real = service.start_upload

    def start_then_truncate(*args: Any) -> str:
        Path(p.path).write_bytes(original[:5])
        return real(*args)

    service.start_upload = start_then_truncate  # type: ignore[method-assign,assignment]

    out = upload_one(worker.gateway, p, attempts=3, backoff_seconds=0)

    assert out.remote is not None
    stored = service.files[out.remote.name.removeprefix("files/")]
    assert stored.data == original
