"""The Gemini port's contract, run on both adapters: the SDK adapter over HTTP and the in-process
fake over the same emulator service. What the fake answers is what the worker would see."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.errors import GatewayError
from commands.gemini.port import BatchStats, GeminiPort
from commands.gemini.sdk import Gateway
from gemini_emulator import Emulator
from gemini_emulator.service import rfc3339
from tests.fakes import EmulatorPort

KEY = "port-contract-key"
MODEL = "gemini-2.5-flash"
LINE = b'{"key": "k", "request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n'


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


@pytest.fixture(params=["sdk", "fake"])
def port(request: pytest.FixtureRequest, emu: Emulator) -> Iterator[GeminiPort]:
    adapter: GeminiPort
    if request.param == "sdk":
        adapter = Gateway(api_key=KEY, base_url=emu.url, retry_attempts=1, timeout_seconds=30)
    else:
        adapter = EmulatorPort(emu.service, api_key=KEY)
    yield adapter
    adapter.close()


@pytest.mark.parametrize("adapter", [Gateway, EmulatorPort])
def test_each_adapter_has_every_call_of_the_port_with_its_signature(adapter: type) -> None:
    calls = [n for n in vars(GeminiPort) if not n.startswith("_") and callable(vars(GeminiPort)[n])]
    assert set(calls) == {
        "upload",
        "get_file",
        "delete_file",
        "list_files",
        "check_access",
        "download_to",
        "create_batch",
        "get_batch",
        "find_batches",
        "cancel_batch",
        "delete_batch",
        "close",
    }
    for name in calls:
        want = inspect.signature(getattr(GeminiPort, name))
        assert inspect.signature(getattr(adapter, name)) == want, name


def test_upload_list_delete(port: GeminiPort, tmp_path: Path) -> None:
    image = tmp_path / "1.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"x" * 4)
    f = port.upload(image, mime_type="image/png", display_name="CA:X:2020:1")
    assert f.name.startswith("files/") and f.uri.endswith(f.name)
    assert (f.mime_type, f.size_bytes, f.display_name) == ("image/png", 12, "CA:X:2020:1")
    [listed] = port.list_files()
    assert (listed.name, listed.display_name, listed.size_bytes) == (f.name, "CA:X:2020:1", 12)
    assert port.delete_file(f.name) is True
    assert port.delete_file(f.name) is False  # already gone
    assert port.list_files() == []


def test_a_batch_from_create_to_its_result_file(port: GeminiPort, tmp_path: Path) -> None:
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-1-requests", retry=True)
    made = port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    assert made.name.startswith("batches/") and made.display_name == "gb-1"
    got = port.get_batch(made.name)
    assert got.state == "JOB_STATE_SUCCEEDED" and got.result_file
    assert got.inline_lines is None
    assert [b.name for b in port.find_batches("gb-1")] == [made.name]
    assert port.find_batches("gb-2") == []
    out = tmp_path / "results.jsonl"
    port.download_to(got.result_file, out)
    assert b'"key": "k"' in out.read_bytes()
    port.cancel_batch(made.name)  # a finished job stays as it is
    assert port.get_batch(made.name).state == "JOB_STATE_SUCCEEDED"


@pytest.mark.parametrize(
    ("endpoint", "status", "transient"), [("files.upload", 503, True), ("files.upload", 400, False)]
)
def test_an_injected_fault_is_the_same_gateway_error(
    port: GeminiPort, emu: Emulator, endpoint: str, status: int, transient: bool
) -> None:
    emu.policy = {"faults": [{"endpoint": endpoint, "status": status, "message": "nope"}]}
    with pytest.raises(GatewayError) as info:
        port.upload(b"x", mime_type="image/png", display_name="CA:X:2020:1")
    assert (info.value.code, info.value.transient) == (status, transient)
    assert str(info.value).startswith("upload CA:X:2020:1: ") and "nope" in str(info.value)


def test_a_lost_answer_still_did_the_work(port: GeminiPort, emu: Emulator) -> None:
    emu.policy = {"faults": [{"endpoint": "batches.create", "status": 503, "after": True}]}
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-1-requests")
    with pytest.raises(GatewayError) as info:
        port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    assert info.value.transient and info.value.code == 503
    assert len(port.find_batches("gb-1")) == 1


def test_an_unknown_batch_is_a_permanent_404(port: GeminiPort) -> None:
    with pytest.raises(GatewayError) as info:
        port.get_batch("batches/doesnotexist")
    assert info.value.code == 404 and not info.value.transient


def test_a_request_file_processing_refuses_a_create_until_it_is_active(
    port: GeminiPort, emu: Emulator
) -> None:
    emu.policy = {"files": [{"match": "gb-*", "processing_seconds": 60}]}
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-1-requests", retry=True)
    assert request.state == "PROCESSING"
    assert port.get_file(request.name).state == "PROCESSING"
    with pytest.raises(GatewayError) as info:
        port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    assert (info.value.code, info.value.status) == (400, "FAILED_PRECONDITION")
    assert not info.value.transient
    emu.service.advance(61)
    got = port.get_file(request.name)
    assert (got.name, got.state, got.display_name) == (request.name, "ACTIVE", "gb-1-requests")
    made = port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    assert made.display_name == "gb-1"


def test_a_file_the_service_could_not_process_is_failed(port: GeminiPort, emu: Emulator) -> None:
    emu.policy = {"files": [{"match": "gb-*", "state": "FAILED"}]}
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-1-requests", retry=True)
    assert port.get_file(request.name).state == "FAILED"


def test_batch_stats_are_read_as_the_job_runs(port: GeminiPort, emu: Emulator) -> None:
    emu.policy = {"timing": {"pending_seconds": 0.0, "running_seconds": 3600.0}}
    lines = b"".join(b'{"key": "k%d", "request": {}}\n' % i for i in range(10))
    request = port.upload(lines, mime_type="jsonl", display_name="gb-1-requests")
    made = port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    emu.service.advance(1800)  # half its run time
    running = port.get_batch(made.name)
    assert running.state == "JOB_STATE_RUNNING"
    assert running.stats == BatchStats(requests=10, succeeded=5, failed=0, pending=5)
    emu.service.advance(1800)
    done = port.get_batch(made.name)
    assert done.state == "JOB_STATE_SUCCEEDED"
    assert done.stats == BatchStats(requests=10, succeeded=10, failed=0, pending=0)


def test_a_deleted_job_is_gone_and_a_second_delete_says_so(port: GeminiPort) -> None:
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-1-requests")
    made = port.create_batch(model=MODEL, input_file=request.name, display_name="gb-1")
    assert port.delete_batch(made.name) is True
    assert port.delete_batch(made.name) is False  # a 404 counts as deleted
    assert port.find_batches("gb-1") == []


def test_a_lookup_past_the_intent_stops_reading_the_history(
    port: GeminiPort, emu: Emulator
) -> None:
    """The service lists newest first: jobs older than the intent (by more than the margin)
    are not read past, so the lookup costs a page, not the whole history."""
    request = port.upload(LINE, mime_type="jsonl", display_name="gb-old-requests")
    for i in range(250):  # three pages of old history
        port.create_batch(model=MODEL, input_file=request.name, display_name=f"gb-old-{i}")
    emu.service.advance(3 * 3600)
    intended_at = rfc3339(emu.service.now())
    made = port.create_batch(model=MODEL, input_file=request.name, display_name="gb-new")
    before = emu.policy.calls("batches.list")
    assert [b.name for b in port.find_batches("gb-new", created_after=intended_at)] == [made.name]
    assert emu.policy.calls("batches.list") - before == 1
    # Without a time the whole history is read (three pages of 100).
    before = emu.policy.calls("batches.list")
    assert len(port.find_batches("gb-old-7")) == 1
    assert emu.policy.calls("batches.list") - before == 3
