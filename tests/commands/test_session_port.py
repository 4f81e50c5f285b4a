"""A whole run handed a Gemini port: in process, with no API key, the port left to its owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.config import load_config
from commands.worker.session import run
from gemini_emulator.service import Service
from projections import open_store
from tests.fakes import EmulatorPort
from tests.pipeline import keys_for, make_dataset, page_outcomes, write_config

KEYS = keys_for(states=1, schools=2, years=1, pages=6)  # 12 pages, two batches of 10 and 2


def test_a_run_over_an_injected_port_needs_no_api_key_and_leaves_the_port_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("E2E_GEMINI_KEY", raising=False)
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9"))
    service = Service()
    port = EmulatorPort(service)

    result = run(config, until_idle=True, max_cycles=10, gateway=port, sleep=lambda _: None)

    assert result.outcome == "ok" and result.last.idle and not port.closed
    store = open_store(config.paths.database)
    try:
        assert page_outcomes(store, config, KEYS) == {"written": len(KEYS)}
    finally:
        store.close()
    assert sum(service.creates.values()) == 2
    assert not service.files  # images, request and result files all deleted
