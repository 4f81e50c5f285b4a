"""Pipeline test helpers: a dataset on disk, a config pointing at an emulator, and the checks
every end-to-end and crash test ends with."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from commands.config import Config
from commands.integrations.demo import png
from commands.schema import PageExtraction
from commands.worker.dataset import output_path
from eventlog.events import (
    BatchSubmissionIntended,
    Event,
    RecordFailed,
    RecordValidated,
    ResultDiscarded,
)
from eventlog.store import Recorded
from gemini_emulator import Emulator
from projections import open_store, verify
from projections.projector import SPECS, evolve
from projections.tables import MemoryTables
from tests.reads import scalar

API_KEY = "e2e-test-key-0123456789"
#: Failures no answer was billed for (a refused create never ran).
UNBILLED = {"error_line", "missing_line", "unparseable_line", "batch_create_refused"}
IMAGE = png(8, 8, 1)
#: The image transport of every config :func:`write_config` writes, unless a test names one:
#: ``E2E_IMAGE_TRANSPORT=file_api pytest tests/e2e tests/crash`` runs the suites in file_api.
TRANSPORT = os.environ.get("E2E_IMAGE_TRANSPORT", "")
#: For a test about image uploads (their faults, events, progress): every image uploaded.
FILE_API = {"image_transport": "file_api"}


def make_dataset(root: Path, keys: list[str]) -> None:
    for key in keys:
        state, school, year, page = key.split(":")
        path = root / state / school / year / f"{page}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(IMAGE)


def keys_for(states: int, schools: int, years: int, pages: int) -> list[str]:
    return [
        f"State{s}:School{c}:{2020 + y}:{p}"
        for s in range(states)
        for c in range(schools)
        for y in range(years)
        for p in range(1, pages + 1)
    ]


def write_config(tmp: Path, url: str, **sections: dict[str, Any]) -> Path:
    base: dict[str, dict[str, Any]] = {
        "paths": {
            "input_root": "input",
            "output_root": "output",
            "database": "data/gemini_batches.db",
            "reports_dir": "data/reports",
        },
        "gemini": {"base_url": url, "api_key_env": "E2E_GEMINI_KEY"},
        "batching": {
            "batch_size": 10,
            "max_active_batches": 4,
            "max_retries": 3,
            "poll_interval_seconds": 0.05,
        },
        "uploads": {
            "upload_retry_attempts": 3,
            "upload_retry_backoff_seconds": 0.01,
            "upload_concurrency": 8,
            **({"image_transport": TRANSPORT} if TRANSPORT else {}),
        },
        "network": {
            "api_retry_attempts": 4,
            "api_retry_backoff_seconds": 0.01,
            "request_timeout_seconds": 5,
        },
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path = tmp / "gemini_batches.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def check_final_state(
    config: Config, emulator: Emulator, keys: list[str], *, billing: bool = True
) -> dict[str, int]:
    """Every page written (valid JSON matching the schema) or dead-lettered with its failures
    logged; projections equal a rebuild; nothing billed twice. Returns counts by outcome."""
    store = open_store(config.log_location)
    try:
        assert verify(store) is None
        inflight = scalar(store, "SELECT count(*) FROM inflight_records")
        active = scalar(store, "SELECT count(*) FROM active_batches")
        assert inflight == 0 and active == 0
        outcome = page_outcomes(store, config, keys)
        if billing:
            check_billing(store, emulator)
        # No request ever named a file deleted too early (the service answers those with 403).
        denied = scalar(
            store, "SELECT count(*) FROM failure_logs WHERE message LIKE '%PERMISSION_DENIED%'"
        )
        assert denied == 0
        # Nothing is left on the File API: images, request and result files were all deleted.
        left = [f.display_name or f.id for f in emulator.service.files.values()]
        assert left == [], left
    finally:
        store.close()
    return dict(outcome)


def page_outcomes(store: Any, config: Config, keys: list[str]) -> Counter[str]:
    """Each page written (valid JSON matching the schema) or dead-lettered with its failures
    logged: counts by outcome."""
    status = dict(store.query("SELECT record_key, status FROM record_status"))
    logs = Counter(r[0] for r in store.query("SELECT record_key FROM failure_logs"))
    outcome: Counter[str] = Counter()
    for key in keys:
        out = output_path(config.paths.output_root, key)
        if out.exists():
            PageExtraction.model_validate_json(out.read_bytes())
            outcome["written"] += 1
        else:
            assert status.get(key) == "dead_lettered", (key, status.get(key))
            assert logs[key] >= config.batching.max_retries
            outcome["dead_lettered"] += 1
    return outcome


def check_billing(store: Any, emulator: Emulator) -> None:
    """Each key paid for at most one valid answer, and every billed line is accounted for by a
    result event in the log (a double submission would leave billed lines nobody recorded)."""
    ledger = emulator.service.ledger()
    valid = Counter(b.key for b in ledger if b.outcome == "valid")
    assert all(n == 1 for n in valid.values()), [k for k, n in valid.items() if n > 1]
    billed = Counter(b.key for b in ledger)
    accounted: Counter[str] = Counter()
    for rec in store.read():
        e = rec.event
        if isinstance(e, RecordValidated | ResultDiscarded) or (
            isinstance(e, RecordFailed) and e.error_type not in UNBILLED
        ):
            accounted[e.record_key] += 1
    assert billed == accounted
    assert all(n == 1 for n in emulator.service.creates.values()), emulator.service.creates


def events(config: Config) -> list[Event]:
    """Every event in ``config``'s log, in order."""
    store = open_store(config.log_location)
    out = [r.event for r in store.read()]
    store.close()
    return out


def cycles(config: Config, n: int = 1) -> None:
    """``n`` worker cycles with the e2e API key, sleeping 50 ms between them."""
    from commands.worker.session import run

    run(config, max_cycles=n, loop=True, api_key=API_KEY, sleep=lambda s: time.sleep(0.05))


def configured(
    tmp_path: Path,
    emulator: Emulator,
    policy: dict[str, Any],
    keys: list[str],
    batch_size: int,
    **sections: dict[str, Any],
) -> Config:
    """The emulator set to ``policy``, a dataset of ``keys`` and a config (``batch_size`` unless
    ``sections`` give a ``batching`` of their own)."""
    from commands.config import load_config

    emulator.policy = policy
    make_dataset(tmp_path / "input", keys)
    sections.setdefault("batching", {"batch_size": batch_size})
    return load_config(write_config(tmp_path, emulator.url, **sections))


def peak_project_loads(records: Iterable[Recorded]) -> Counter[str]:
    """Per project, the most batches it ever had active or intended at once over the whole log
    (what ``max_active_batches`` bounds), folding the log as the projections do."""
    tables = MemoryTables(SPECS)
    peak: Counter[str] = Counter()
    active: dict[Any, Any] = tables.data["active_batches"]
    intents: dict[Any, Any] = tables.data["submission_intents"]
    for rec in records:
        evolve(tables, rec)
        if isinstance(rec.event, BatchSubmissionIntended):
            load = Counter(r.project for r in active.values())
            load.update(r.project for r in intents.values())
            for project, n in load.items():
                peak[project] = max(peak[project], n)
    return peak
