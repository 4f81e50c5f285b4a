"""The README's first command, exactly as an operator types it: ``python -m commands demo``."""

from __future__ import annotations

import json
from pathlib import Path

from commands.installation import command_prefix
from commands.integrations import demo
from commands.schema import PageExtraction
from tests.conftest import run_cli


def test_demo_runs_to_the_end_and_prints_status_and_report(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    done = run_cli("demo", "--dir", str(folder), cwd=tmp_path, timeout=120)
    assert done.code == 0, done.err[-3000:]

    config = folder / "gemini_batches.toml"
    after = run_cli("--config", str(config), "status", "--json", "--no-scan", cwd=tmp_path)
    assert after.code == 0, after.err
    status = json.loads(after.out)

    # Every page ended written or dead-lettered, the stray notes.txt was reported as bad input,
    # and nothing is left running.
    outputs = sorted((folder / "output").rglob("*.json"))
    assert status["active_batches"] == [] and status["in_flight"] == 0
    assert status["written"] == len(outputs) > 0
    assert status["dead_letters"] >= 1  # the poison page
    assert status["written"] + status["dead_letters"] == demo.page_count()
    assert status["rejected_inputs"] == 1
    for path in outputs:
        PageExtraction.model_validate_json(path.read_bytes())
    # The PDF document's pages were cut from it, sent and written as pages.
    state, school, year = demo.DOCUMENT
    document = folder / "output" / state / school / year
    assert sorted(p.name for p in document.iterdir()) == [
        f"{i}.json" for i in range(1, demo.DOCUMENT_PAGES + 1)
    ]

    # The final status screen and the report's path, as the README shows them.
    assert f"written       {status['written']} records" in done.out
    assert f"dead letters  {status['dead_letters']}" in done.out
    report_line = next(line for line in done.out.splitlines() if line.startswith("report: "))
    report = Path(report_line.removeprefix("report: "))
    assert report.is_file() and report.parent == folder / "data" / "reports"
    assert status["last_run"]["run_id"] in report.name
    # It ends by suggesting the operator commands and the dashboard over its own config, typed
    # the way this installation needs (tests/test_newcomer.py runs them as printed).
    prefix = command_prefix(cwd=tmp_path)
    assert done.out.rstrip().splitlines()[-2:] == [
        f"explore: {prefix} --config {config} analyze-failures --summary",
        f"dashboard: {prefix} --config {config} dashboard --open",
    ]
    assert "Batch summary" in report.read_text()
