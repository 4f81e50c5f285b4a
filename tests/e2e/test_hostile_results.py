"""Issue 12, classes 1, 3 and 11 through the real SDK over HTTP against the emulator: result
lines that are not what the wire format says fail their own records while the rest of the batch
is collected, and a succeeded job whose result file is gone (403/404/410, expired after 48 h, a
download failing for too long) ends with its records freed and resubmitted, while the other
batches are collected and new pages submitted in the same cycle."""

from __future__ import annotations

import base64
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from commands.views.report import build, last_run_id, render
from commands.worker.session import run
from eventlog.events import (
    BatchCompleted,
    BatchResultsUnavailable,
    BatchSubmitted,
    RecordFailed,
    RecordValidated,
)
from gemini_emulator import Emulator
from gemini_emulator.service import FILE_TTL_SECONDS
from projections import open_store
from tests.conftest import run_cli
from tests.e2e.test_reliability import KEYS, setup
from tests.pipeline import API_KEY, check_final_state, cycles, events

DEEP = "[" * 3000 + "]" * 3000


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("line", "error_type"),
    [
        ({"line_b64": b64(b'{"key": "{key}", "response": {"x": "\xff\xfe"}}')}, "result_not_utf8"),
        ({"line": '{"key": "{key}", "response": ' + DEEP + "}"}, "result_too_deep"),
        ({"line": '{"key": "{key}", "response": "I am a string"}'}, "malformed_result_line"),
        ({"line": '{"key": "{key}", "response": 12}'}, "malformed_result_line"),
        ({"line": '{"key": "{key}", "error": "boom"}'}, "malformed_result_line"),
        (
            {"line": '{"key": "{key}", "response": {"candidates": ["x"]}}'},
            "malformed_result_line",
        ),
        (
            {"line": '{"key": "{key}", "response": {"candidates": [{"content": {"parts": [7]}}]}}'},
            "malformed_result_line",
        ),
        (
            {
                "line": '{"key": "{key}", "response": {"candidates": [], "usageMetadata": '
                '{"promptTokenCount": "many", "totalTokenCount": 1e300}}}'
            },
            "bad_usage_metadata",
        ),
        (
            {
                "line": '{"key": "{key}", "response": {"candidates": [], "usageMetadata": '
                '{"promptTokenCount": 99999999999999999999999}}}'
            },
            "bad_usage_metadata",
        ),
        (
            {"line": '{"key": "{key}", "response": {"pad": "' + "x" * 9000 + '"}}'},
            "result_line_too_large",
        ),
    ],
    ids=[
        "not-utf8",
        "too-deep",
        "response-string",
        "response-number",
        "error-string",
        "candidate-string",
        "part-number",
        "tokens-string-float",
        "tokens-huge",
        "too-large",
    ],
)
def test_a_hostile_line_fails_its_record_and_the_rest_is_collected(
    tmp_path: Path, emulator: Emulator, line: dict[str, Any], error_type: str
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"results": [{"match": KEYS[1], "times": 1, **line}]},
        results={"max_result_line_bytes": 8192},
    )
    cycles(config, 2)  # submitted, then collected
    log = events(config)
    [failed] = [e for e in log if isinstance(e, RecordFailed)]
    assert (failed.record_key, failed.error_type) == (KEYS[1], error_type)
    assert failed.excerpt and failed.prompt_tokens <= 10_000_000
    validated = {e.record_key for e in log if isinstance(e, RecordValidated)}
    assert validated == set(KEYS) - {KEYS[1]}
    assert [e.failed for e in log if isinstance(e, BatchCompleted)] == [1]
    # The record is resubmitted and written; every billed line is accounted for.
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


GONE = [
    {"jobs": [{"nth": 1, "outcome": "RESULTS_GONE"}]},
    {"faults": [{"endpoint": "files.download", "status": 403, "times": 1}]},
    {"faults": [{"endpoint": "files.download", "status": 404, "times": 1}]},
    {"faults": [{"endpoint": "files.download", "status": 410, "times": 1}]},
]


@pytest.mark.parametrize("policy", GONE, ids=["gone", "403", "404", "410"])
def test_a_result_file_that_is_gone_frees_its_batch_and_the_cycle_goes_on(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture, policy: dict[str, Any]
) -> None:
    faults = policy.get("faults", [])
    config = setup(tmp_path, emulator, {} if faults else policy, batching={"batch_size": 3})
    with caplog.at_level(logging.WARNING):
        if faults:  # the downloads go side by side: the fault is pinned to the first's file
            cycles(config, 1)  # two batches submitted
            first_id = next(e for e in events(config) if isinstance(e, BatchSubmitted)).batch_id
            pinned = {**faults[0], "match": "batch-" + first_id.removeprefix("batches/")}
            emulator.policy = {"faults": [pinned]}
            cycles(config, 1)  # both polled, one file gone
        else:
            cycles(config, 2)  # two batches submitted; then both polled, one file gone
    log = events(config)
    [gone] = [e for e in log if isinstance(e, BatchResultsUnavailable)]
    first, second = [e for e in log if isinstance(e, BatchSubmitted)][:2]
    assert gone.batch_id == first.batch_id
    assert f"Batch {gone.batch_id}: its results cannot be downloaded" in caplog.text
    # The other batch was collected, and the freed pages went out again in the same cycle.
    assert [e.batch_id for e in log if isinstance(e, BatchCompleted)] == [second.batch_id]
    resubmitted = [e for e in log if isinstance(e, BatchSubmitted)][2:]
    assert [sorted(e.record_keys) for e in resubmitted] == [sorted(first.record_keys)]
    assert not [e for e in log if isinstance(e, RecordFailed)]
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    # The gone file's lines were billed and never read: billing cannot balance here.
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}


def test_status_and_the_report_name_the_batches_whose_results_were_unavailable(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, GONE[0], batching={"batch_size": 3})
    cycles(config, 2)  # one run: two batches, the first one's result file gone
    [gone] = [e for e in events(config) if isinstance(e, BatchResultsUnavailable)]
    store = open_store(config.paths.database)
    report = build(store, last_run_id(store), config)
    store.close()
    assert report.batches_results_unavailable == [gone.batch_id]
    assert report.counts()["batches_results_unavailable"] == 1
    assert len(report.batch_turnaround_seconds) == 2  # the gone batch turned around too
    text = render(report)
    assert "- Batches: 3 submitted, 1 completed, 1 results unavailable;" in text
    assert f"- Results unavailable: {gone.batch_id} (succeeded, but" in text
    shown = run_cli("--config", str(tmp_path / "gemini_batches.toml"), "status", "--no-scan")
    assert shown.code == 0, shown.err
    assert "  results unavailable  1 batch(es): succeeded, but the result file" in shown.out
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    store = open_store(config.paths.database)
    assert build(store, last_run_id(store), config).batches_results_unavailable == []
    store.close()


def test_a_result_file_expired_after_48_hours_frees_its_batch(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(tmp_path, emulator, {})
    cycles(config, 1)  # submitted; the job succeeds at once
    emulator.service.settle_all()
    emulator.service.advance(49 * 3600)  # the worker comes back two days later
    cycles(config, 1)
    log = events(config)
    [gone] = [e for e in log if isinstance(e, BatchResultsUnavailable)]
    assert gone.code == 403 and "PERMISSION_DENIED" in gone.message
    assert len([e for e in log if isinstance(e, BatchSubmitted)]) == 2  # resubmitted at once
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    service = emulator.service  # the files that expired are gone there, as on the service
    now = service.now()
    service.files = {k: f for k, f in service.files.items() if now <= f.created + FILE_TTL_SECONDS}
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}


def test_a_download_failing_transiently_is_retried_then_given_up_on(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = setup(
        tmp_path,
        emulator,
        {"faults": [{"endpoint": "files.download", "status": 503}]},
        results={"download_give_up_hours": 0.001},  # 3.6 s
    )
    with caplog.at_level(logging.WARNING):
        cycles(config, 3)  # submitted; then two polls whose download fails
    assert caplog.text.count("Cannot download the results of") == 2
    assert not [e for e in events(config) if isinstance(e, BatchResultsUnavailable)]
    time.sleep(3.7)
    cycles(config, 1)
    [gone] = [e for e in events(config) if isinstance(e, BatchResultsUnavailable)]
    assert gone.code == 503
    emulator.policy = {}  # the service recovers: the resubmitted batch downloads
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert check_final_state(config, emulator, KEYS, billing=False) == {"written": len(KEYS)}
