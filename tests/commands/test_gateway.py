"""The Gemini gateway against the emulator: retries, translation, the API key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from commands.config import parse_config
from commands.errors import ConfigError, GatewayError
from commands.gemini.port import normalize_state
from commands.gemini.sdk import Gateway, api_key_from_env
from gemini_emulator import Emulator

KEY = "sk-test-SECRET-1234567890"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator() as e:
        yield e


def gateway(emu: Emulator, sleeps: list[float], attempts: int = 3, timeout: float = 30) -> Gateway:
    return Gateway(
        api_key=KEY,
        base_url=emu.url,
        retry_attempts=attempts,
        retry_backoff_seconds=0.5,
        timeout_seconds=timeout,
        sleep=sleeps.append,
    )


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_failures_are_retried_with_backoff_and_each_attempt_logged(
    emu: Emulator, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    emu.policy = {"faults": [{"endpoint": "files.list", "calls": [1, 2], "status": status}]}
    sleeps: list[float] = []
    with caplog.at_level(logging.WARNING, "commands.gateway"):
        assert gateway(emu, sleeps).list_files() == []
    assert sleeps == [0.5, 1.0]
    attempts = [r.getMessage() for r in caplog.records]
    assert len(attempts) == 2 and "attempt 1/3" in attempts[0] and "attempt 2/3" in attempts[1]
    assert str(status) in attempts[0]


def test_giving_up_after_the_last_attempt(emu: Emulator) -> None:
    emu.policy = {"faults": [{"endpoint": "batches.get", "status": 503}]}
    sleeps: list[float] = []
    with pytest.raises(GatewayError) as info:
        gateway(emu, sleeps, attempts=4).get_batch("batches/x")
    assert info.value.transient and info.value.code == 503
    assert sleeps == [0.5, 1.0, 2.0] and emu.policy.calls("batches.get") == 4


def test_client_errors_are_not_retried(emu: Emulator) -> None:
    sleeps: list[float] = []
    with pytest.raises(GatewayError) as info:
        gateway(emu, sleeps).get_batch("batches/doesnotexist")
    assert info.value.code == 404 and not info.value.transient
    assert sleeps == [] and emu.policy.calls("batches.get") == 1


def test_timeouts_are_transient_and_retried(emu: Emulator) -> None:
    emu.policy = {"faults": [{"endpoint": "files.list", "calls": [1], "delay": 1.0}]}
    sleeps: list[float] = []
    assert gateway(emu, sleeps, timeout=0.3).list_files() == []
    assert sleeps == [0.5]


def test_connection_errors_are_transient(tmp_path: Path) -> None:
    sleeps: list[float] = []
    g = Gateway(
        api_key=KEY,
        base_url="http://127.0.0.1:9",
        retry_attempts=2,
        retry_backoff_seconds=0.1,
        sleep=sleeps.append,
    )
    with pytest.raises(GatewayError) as info:
        g.get_batch("batches/x")
    assert info.value.transient and "connection error" in str(info.value)
    assert sleeps == [0.1]


def test_create_is_never_retried(emu: Emulator) -> None:
    emu.policy = {"faults": [{"endpoint": "batches.create", "calls": [1], "status": 503}]}
    sleeps: list[float] = []
    g = gateway(emu, sleeps)
    f = g.upload(b'{"key": "k", "request": {}}\n', mime_type="jsonl", display_name="r")
    with pytest.raises(GatewayError) as info:
        g.create_batch(model="gemini-2.5-flash", input_file=f.name, display_name="gb-x")
    assert info.value.transient and sleeps == []
    assert emu.policy.calls("batches.create") == 1 and dict(emu.service.creates) == {}
    assert g.find_batches("gb-x") == []


def test_find_batches_by_display_name(emu: Emulator) -> None:
    g = gateway(emu, [])
    f = g.upload(b'{"key": "k", "request": {}}\n', mime_type="jsonl", display_name="r")
    made = g.create_batch(model="gemini-2.5-flash", input_file=f.name, display_name="gb-a")
    g.create_batch(model="gemini-2.5-flash", input_file=f.name, display_name="gb-b")
    [found] = g.find_batches("gb-a")
    assert found.name == made.name and found.state == "JOB_STATE_SUCCEEDED"
    assert found.result_file and found.result_file.startswith("files/batch-")


def test_the_api_key_never_appears_in_an_error(emu: Emulator) -> None:
    emu.policy = {
        "faults": [
            {"endpoint": "files.list", "status": 400, "message": f"bad request from key {KEY}"}
        ]
    }
    with pytest.raises(GatewayError) as info:
        gateway(emu, []).list_files()
    assert KEY not in str(info.value) and "***" in str(info.value)


def test_a_missing_api_key_is_a_one_line_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MY_GEMINI_KEY", raising=False)
    config = parse_config({"gemini": {"api_key_env": "MY_GEMINI_KEY"}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="set the environment variable MY_GEMINI_KEY"):
        api_key_from_env(config)
    monkeypatch.setenv("MY_GEMINI_KEY", "abc")
    assert api_key_from_env(config) == "abc"


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        ("BATCH_STATE_RUNNING", "JOB_STATE_RUNNING"),
        ("JOB_STATE_SUCCEEDED", "JOB_STATE_SUCCEEDED"),
        ("batch_state_expired", "JOB_STATE_EXPIRED"),
        ("BATCH_STATE_WEIRD", "JOB_STATE_WEIRD"),
        (None, "JOB_STATE_UNSPECIFIED"),
    ],
)
def test_states_are_normalised(raw: str | None, want: str) -> None:
    assert normalize_state(raw) == want


def test_a_value_error_inside_the_sdk_call_is_a_transient_gateway_error(emu: Emulator) -> None:
    # The SDK raises ValueError when an upload's status is not finalized.
    g = gateway(emu, [])

    class Files:
        def upload(self, **_: object) -> None:
            raise ValueError("Failed to upload file: Upload status is not finalized.")

    class Client:
        files = Files()

    g._client = Client()  # type: ignore[assignment]  # an SDK whose upload misbehaves
    with pytest.raises(GatewayError) as info:
        g.upload(b"x", mime_type="image/png", display_name="CA:X:2020:1")
    assert info.value.transient and info.value.code is None
    assert "unexpected answer (ValueError: " in str(info.value)


def test_a_value_error_from_our_own_code_is_a_bug_not_a_gateway_error(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from commands.gemini import resources

    sleeps: list[float] = []
    g = gateway(emu, sleeps)
    f = g.upload(b'{"key": "k", "request": {}}\n', mime_type="jsonl", display_name="r")
    made = g.create_batch(model="gemini-2.5-flash", input_file=f.name, display_name="gb-x")

    def broken(job: object) -> None:
        raise ValueError("a bug in turning the answer into a RemoteBatch")

    monkeypatch.setattr(resources, "batch", broken)
    with pytest.raises(ValueError, match="a bug"):
        g.get_batch(made.name)
    with pytest.raises(ValueError, match="a bug"):
        g.find_batches("gb-x")
    # Not retried: each call was made once.
    assert sleeps == [] and emu.policy.calls("batches.get") == 1
    assert emu.policy.calls("batches.list") == 1


class _ChangedPrivateClient:
    """The SDK's private API client as a later SDK might shape it: ``request`` takes other
    arguments. Polling must fall back to the public ``batches.get``."""

    vertexai = False

    def request(self, *args: object) -> object:
        raise TypeError("request() takes 2 positional arguments")


def test_polling_falls_back_to_the_public_call_when_the_private_read_changes(
    emu: Emulator,
) -> None:
    g = gateway(emu, [])
    f = g.upload(b'{"key": "k", "request": {}}\n', mime_type="jsonl", display_name="r")
    made = g.create_batch(model="gemini-2.5-flash", input_file=f.name, display_name="gb-a")
    assert g.get_batch(made.name).stats is not None  # the raw resource keeps batchStats
    g._client._api_client = _ChangedPrivateClient()  # type: ignore[assignment]
    polled = g.get_batch(made.name)
    assert polled.name == made.name and polled.state == "JOB_STATE_SUCCEEDED"
    assert polled.stats is None


def test_listed_files_keep_their_state(emu: Emulator) -> None:
    emu.policy = {"files": [{"match": "slow", "processing_seconds": 60}]}
    g = gateway(emu, [])
    g.upload(b"x", mime_type="jsonl", display_name="slow")
    g.upload(b"y", mime_type="jsonl", display_name="quick")
    states = {r.display_name: r.state for r in g.list_files()}
    assert states == {"slow": "PROCESSING", "quick": "ACTIVE"}
