"""Reports, status, estimate and logs, checked against the log and the emulator's ledger."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from commands.config import load_config
from commands.views.report import build, render
from commands.worker.session import run
from eventlog.events import RecordFailed, RecordValidated
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import ROOT, run_cli
from tests.pipeline import API_KEY, FILE_API, keys_for, make_dataset, write_config

KEYS = keys_for(1, 2, 1, 10)
POLICY = {
    "timing": {"pending_seconds": 0.02, "running_seconds": 0.02},
    "records": [
        {"match": KEYS[0], "outcome": "invalid_json"},
        {"match": KEYS[1], "outcome": "schema_violation", "times": 1},
        {"match": KEYS[2], "outcome": "error_line", "times": 1},
        {"match": KEYS[3], "outcome": "missing_line", "times": 1},
        {"match": KEYS[4], "outcome": "safety", "times": 1},
        {"match": KEYS[5], "outcome": "recitation", "times": 1},
        {"match": KEYS[6], "outcome": "max_tokens", "times": 1},
    ],
    "jobs": [{"nth": 1, "outcome": "FAILED"}],
    "faults": [{"endpoint": "files.upload", "match": KEYS[9], "times": 2, "status": 503}],
}
PRICES = {"input_per_million": 2.0, "output_per_million": 8.0}


@pytest.fixture
def finished(tmp_path: Path, emulator: Emulator) -> tuple[Path, Emulator, str]:
    """A run with every failure type, to the end."""
    emulator.policy = POLICY
    make_dataset(tmp_path / "input", KEYS)
    (tmp_path / "input" / "State0" / "School0" / "2020" / "notes.txt").write_text("x")
    path = write_config(tmp_path, emulator.url, batching={"batch_size": 20}, uploads=FILE_API)
    with path.open("a") as fh:
        fh.write(
            "[pricing]\nbatch_discount = 0.5\n"
            f'[pricing.models."gemini-2.5-flash"]\n'
            f"input_per_million = {PRICES['input_per_million']}\n"
            f"output_per_million = {PRICES['output_per_million']}\n"
        )
    result = run(load_config(path), until_idle=True, max_cycles=40, api_key=API_KEY)
    return path, emulator, result.run_id


def test_the_report_matches_the_log_and_the_ledger(finished: tuple[Path, Emulator, str]) -> None:
    path, emulator, run_id = finished
    config = load_config(path)
    store = open_store(config.paths.database)
    report = build(store, run_id, config)
    events = [r.event for r in store.read() if r.actor == f"run:{run_id}"]
    validated = [e for e in events if isinstance(e, RecordValidated)]
    failed = [e for e in events if isinstance(e, RecordFailed)]
    assert report.validated == len(validated) == len(KEYS) - 1
    assert report.failed == len(failed) == 3 + 6  # the poison page's 3, one each for 6 more
    assert report.processed == report.validated + report.failed
    assert Counter(f.error_type for f in report.failures) == Counter(e.error_type for e in failed)
    assert {f.error_type for f in report.failures} == {
        "invalid_json",
        "schema_violation",
        "error_line",
        "missing_line",
        "finish_safety",
        "finish_recitation",
        "finish_max_tokens",
    }
    poison = [f.attempt for f in report.failures if f.record_key == KEYS[0]]
    assert poison == [1, 2, 3] and report.dead_letters == [KEYS[0]]
    assert report.batches_ended == {"JOB_STATE_FAILED": 1}
    assert len(report.batches_completed) == len(report.batches_submitted) - 1
    assert report.upload_attempts_failed == 2 and report.uploads_abandoned == []
    assert [p for p, _ in report.rejected_inputs] == [
        str(config.paths.input_root / "State0/School0/2020/notes.txt")
    ]
    assert report.duration_seconds is not None and report.batch_turnaround_seconds
    # Tokens: exactly what the emulator billed.
    ledger = emulator.service.ledger()
    usage = report.usage["gemini-2.5-flash"]
    billed_total = sum(b.total_tokens for b in ledger)
    assert usage.prompt_tokens + usage.output_tokens == billed_total
    assert usage.results == len(ledger)
    # Cost, by hand: list price of the tokens, halved.
    expected = (usage.prompt_tokens * 2.0 + usage.output_tokens * 8.0) / 1e6 * 0.5
    assert report.spend is not None and report.spend.cost == pytest.approx(expected)
    wasted = (usage.failed_prompt_tokens * 2.0 + usage.failed_output_tokens * 8.0) / 1e6 * 0.5
    assert report.spend.wasted_cost == pytest.approx(wasted) and 0 < wasted < expected
    billed_failures = [b for b in ledger if b.outcome != "valid"]
    assert usage.failed_results == len(billed_failures)
    # The Markdown says the same, and can be produced again from the log.
    text = render(report)
    assert (
        f"Processed {report.processed} records. {report.validated} Success, {report.failed} Failed."
    ) in text
    assert f"| {KEYS[0]} | invalid_json |" in text and "| 3/3 |" in text
    assert f"- {KEYS[0]}: needs a human" in text
    written = (config.paths.reports_dir / f"{run_id}.md").read_text()
    assert written == text
    again = run_cli("--config", str(path), "report", "--run", run_id)
    assert again.code == 0 and again.out == text
    last = run_cli("--config", str(path), "report", "--last")
    assert last.out == text
    store.close()


def test_status_shows_the_last_run_and_the_spend(finished: tuple[Path, Emulator, str]) -> None:
    path, _, run_id = finished
    r = run_cli("--config", str(path), "status", "--json", "--scan")
    data = json.loads(r.out)
    assert data["last_run"]["run_id"] == run_id and data["last_run"]["outcome"] == "ok"
    assert data["dead_letters"] == 1 and data["written"] == len(KEYS) - 1
    assert data["pending"] == 0 and data["rejected_inputs"] == 1
    assert data["last_run"]["spend"]["cost"] > 0
    assert data["spend"]["cost"] == pytest.approx(data["last_run"]["spend"]["cost"])
    text = run_cli("--config", str(path), "status").out
    assert f"last run      {run_id}: ok" in text and "spend total" in text


def test_estimate_prices_pending_pages_from_history(finished: tuple[Path, Emulator, str]) -> None:
    path, _, _ = finished
    config = load_config(path)
    for n in (11, 12, 13):  # three new pages
        make_dataset(config.paths.input_root, [f"State0:School0:2020:{n}"])
    data = json.loads(run_cli("--config", str(path), "estimate", "--json").out)
    assert data["pages"] == 3 and "past results" in data["basis"]
    expected = (
        (
            round(data["prompt_tokens_per_page"] * 3) * 2.0
            + round(data["output_tokens_per_page"] * 3) * 8.0
        )
        / 1e6
        * 0.5
    )
    assert data["cost"] == pytest.approx(expected, rel=1e-3)
    text = run_cli("--config", str(path), "estimate").out
    assert "pending       3 pages" in text and "50% batch discount" in text


def test_json_logs_carry_run_batch_and_record_fields(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {
        "faults": [{"endpoint": "files.upload", "match": KEYS[0], "times": 1, "status": 503}]
    }
    make_dataset(tmp_path / "input", KEYS[:4])
    path = write_config(tmp_path, emulator.url, uploads=FILE_API)
    r = run_cli(
        "--config",
        str(path),
        "--log-format",
        "json",
        "run",
        "--until-idle",
        env={"E2E_GEMINI_KEY": API_KEY},
    )
    assert r.code == 0, r.err
    lines = [json.loads(line) for line in r.err.splitlines()]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    run_ids = {x.get("run_id") for x in lines}
    assert len(run_ids) == 1 and None not in run_ids
    assert any(x["message"].startswith("Batch Submitted") and x.get("batch_id") for x in lines)
    upload = [x for x in lines if x["logger"] == "commands.upload"]
    assert upload and upload[0]["record_key"] == KEYS[0] and upload[0]["attempt"] == 1
    assert API_KEY not in r.err + r.out


def test_verbosity_flags(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {"timing": {"pending_seconds": 60}}  # page 1 stays in flight
    make_dataset(tmp_path / "input", KEYS[:2])
    path = write_config(tmp_path, emulator.url, gemini={"context_previous_page": True})
    quiet = run_cli("--config", str(path), "-q", "run", env={"E2E_GEMINI_KEY": API_KEY})
    assert quiet.code == 0 and "INFO" not in quiet.err
    verbose = run_cli("--config", str(path), "-v", "run", env={"E2E_GEMINI_KEY": API_KEY})
    assert f"DEBUG commands.scan: Skipping {KEYS[0]} (in flight)" in verbose.err
    assert f"DEBUG commands.scan: Skipping {KEYS[1]} (dependency missing: {KEYS[0]}" in (
        verbose.err
    )


def _run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run with stderr on a pseudo-terminal; return what the terminal showed."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "commands", *args],
        cwd=ROOT,
        stderr=slave,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    os.close(slave)
    out = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    return out.decode(errors="replace")


def test_progress_bars_on_a_terminal_only(tmp_path: Path, emulator: Emulator) -> None:
    make_dataset(tmp_path / "input", KEYS)
    path = write_config(tmp_path, emulator.url, batching={"batch_size": 20}, uploads=FILE_API)
    env = {"E2E_GEMINI_KEY": API_KEY}
    shown = _run_in_terminal(["--config", str(path), "run", "--until-idle"], env)
    assert f"uploading {len(KEYS)} pages" in shown and "results of batches/" in shown
    make_dataset(tmp_path / "input", [f"State0:School1:2020:{n}" for n in (20, 21, 22)])
    piped = run_cli("--config", str(path), "run", "--until-idle", env=env)
    assert piped.code == 0 and "uploading" not in piped.err and "results of" not in piped.err
