"""A run's start-up through the real SDK and the emulator: the SDK is loaded and the service
asked on a thread of its own while, with nothing in flight, the first cycle's scan is made; that
scan is the one the first cycle uses. With something in flight the first cycle scans after its
poll, as every cycle does (pages freed by the poll go out in the same cycle)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from commands.config import Config, load_config
from commands.worker import scan as scan_module
from commands.worker import session as session_module
from commands.worker.session import run
from eventlog.events import BatchFailed, BatchSubmitted
from gemini_emulator import Emulator
from tests.pipeline import API_KEY, check_final_state, events, keys_for, make_dataset, write_config

KEYS = keys_for(1, 2, 1, 3)


def counted(
    monkeypatch: pytest.MonkeyPatch, module: Any, name: str, seen: list[str]
) -> Callable[..., Any]:
    """Wrap ``module.name`` so each call notes the thread it ran on in ``seen``."""
    real = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)
    return real


def setup(tmp_path: Path, emulator: Emulator, policy: dict[str, Any]) -> Config:
    emulator.policy = policy
    make_dataset(tmp_path / "input", KEYS)
    return load_config(write_config(tmp_path, emulator.url, batching={"batch_size": 3}))


def test_with_nothing_in_flight_the_first_scan_is_made_while_the_sdk_loads_and_used_once(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = setup(tmp_path, emulator, {})
    early: list[str] = []
    in_cycle: list[str] = []
    checks: list[str] = []
    counted(monkeypatch, session_module, "scan_dataset", early)
    counted(monkeypatch, scan_module, "scan_dataset", in_cycle)
    counted(monkeypatch, session_module, "check_service", checks)

    result = run(config, max_cycles=1, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.submitted == 2
    main = threading.main_thread().name
    assert early == [main] and in_cycle == []  # scanned once, before RunStarted
    assert checks and all(name != main for name in checks)  # the service asked on its thread
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


def test_with_a_batch_in_flight_the_first_cycle_scans_after_its_poll(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first batch ends FAILED: the next run's poll frees its pages, and the same cycle's
    scan (not one made before the poll) sends them again."""
    config = setup(
        tmp_path,
        emulator,
        {"timing": {"pending_seconds": 0.3}, "jobs": [{"nth": 1, "outcome": "FAILED"}]},
    )
    run(config, max_cycles=1, api_key=API_KEY)  # two batches submitted, still pending
    emulator.service.advance(3600)
    early: list[str] = []
    in_cycle: list[str] = []
    counted(monkeypatch, session_module, "scan_dataset", early)
    counted(monkeypatch, scan_module, "scan_dataset", in_cycle)

    result = run(config, max_cycles=1, api_key=API_KEY)

    assert early == [] and len(in_cycle) == 1
    log = events(config)
    [failed] = [e for e in log if isinstance(e, BatchFailed)]
    submitted = [e for e in log if isinstance(e, BatchSubmitted)]
    first = next(e for e in submitted if e.batch_id == failed.batch_id)
    assert sorted(submitted[-1].record_keys) == sorted(first.record_keys)
    assert result.last.submitted == 1
