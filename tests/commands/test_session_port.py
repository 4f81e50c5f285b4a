"""A whole run handed a Gemini port: in process, with no API key, the port left to its owner."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.config import load_config
from commands.worker.session import run
from eventlog.events import LeaseAcquired, LeaseReleased, RunFinished
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


def test_a_shared_mode_worker_that_finished_leaves_every_partition_to_the_next_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's run ends releasing its leases and recording its ``RunFinished`` in one
    transaction; the next worker, started well inside the first one's last renewal, does not
    count it as live: it takes every partition, not a share (its sweep then covers them all)."""
    monkeypatch.delenv("E2E_GEMINI_KEY", raising=False)
    make_dataset(tmp_path / "input", KEYS)
    shared = {"mode": "shared", "partition_by": "school_hash", "partitions": 4}
    config = load_config(
        write_config(tmp_path, "http://127.0.0.1:9", workers={**shared, "lease_seconds": 600})
    )
    port = EmulatorPort(Service())

    first = run(config, max_cycles=1, gateway=port, sleep=lambda _: None, worker_id="first")
    second = run(config, max_cycles=1, gateway=port, sleep=lambda _: None, worker_id="second")

    assert first.outcome == "ok" and second.outcome == "ok"
    store = open_store(config.paths.database)
    try:
        records = list(store.read())
    finally:
        store.close()
    ended = next(
        i
        for i, r in enumerate(records)
        if isinstance(r.event, RunFinished) and r.actor.endswith(first.run_id)
    )
    released = [r for r in records[:ended] if isinstance(r.event, LeaseReleased)]
    assert {r.event.partition for r in released} == {"0", "1", "2", "3"}  # type: ignore[attr-defined]
    assert {r.ts for r in released} == {records[ended].ts}  # one transaction
    acquired = {
        r.event.partition
        for r in records
        if isinstance(r.event, LeaseAcquired) and r.event.worker == "second"
    }
    assert acquired == {"0", "1", "2", "3"}
