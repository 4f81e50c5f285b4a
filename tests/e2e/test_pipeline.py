"""The whole pipeline through the real SDK and the emulator, with every fault type."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from commands.config import load_config
from commands.errors import ConfigError
from commands.worker.session import run
from eventlog.events import BatchFailed, BatchSubmissionAbandoned, BatchSubmitted, UploadAbandoned
from gemini_emulator import Emulator
from projections import open_store
from tests.conftest import run_cli
from tests.pipeline import (
    API_KEY,
    FILE_API,
    check_final_state,
    keys_for,
    make_dataset,
    write_config,
)

KEYS = keys_for(states=2, schools=3, years=2, pages=18)  # 216 pages
POISON = {
    KEYS[7]: "schema_violation",
    KEYS[50]: "invalid_json",
    KEYS[120]: "error_line",
    KEYS[200]: "safety",
}
FLAKY = {
    KEYS[3]: "invalid_json",
    KEYS[30]: "schema_violation",
    KEYS[60]: "error_line",
    KEYS[90]: "missing_line",
    KEYS[110]: "safety",
    KEYS[140]: "recitation",
    KEYS[170]: "max_tokens",
}

FAULTS: dict[str, Any] = {
    "seed": 5,
    "timing": {"pending_seconds": 0.05, "running_seconds": 0.05},
    "records": [
        *({"match": k, "outcome": o} for k, o in POISON.items()),
        *(
            {"match": k, "outcome": o, "times": 2 if o == "schema_violation" else 1}
            for k, o in FLAKY.items()
        ),
    ],
    "jobs": [
        {"nth": 2, "outcome": "FAILED"},
        {"nth": 5, "outcome": "CANCELLED"},
        {"nth": 7, "outcome": "EXPIRED"},
    ],
    "faults": [
        {"endpoint": "files.upload", "calls": [5, 17, 40], "status": 503},
        {"endpoint": "files.upload", "calls": [23], "status": 429},
        {"endpoint": "files.upload", "match": KEYS[11], "times": 3, "status": 500},
        {"endpoint": "files.upload", "every": 10, "delay": 0.01},
        {"endpoint": "batches.get", "calls": [3, 4], "status": 503},
        {"endpoint": "batches.get", "calls": [10], "status": 429},
        {"endpoint": "batches.get", "calls": [12], "delay": 1.5},
        {"endpoint": "batches.create", "calls": [3], "status": 503},
        {"endpoint": "batches.create", "calls": [6], "status": 503, "after": True},
        {"endpoint": "files.download", "calls": [2], "status": 500},
    ],
}


def test_216_pages_with_every_fault_end_written_or_dead_lettered(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.policy = FAULTS
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(
        write_config(
            tmp_path, emulator.url, network={"request_timeout_seconds": 1}, uploads=FILE_API
        )
    )
    with caplog.at_level(logging.INFO):
        result = run(config, until_idle=True, max_cycles=80, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    outcome = check_final_state(config, emulator, KEYS)
    assert outcome == {"written": len(KEYS) - len(POISON), "dead_lettered": len(POISON)}

    store = open_store(config.paths.database)
    events = [r.event for r in store.read()]
    failed_states = sorted(e.state for e in events if isinstance(e, BatchFailed))
    assert failed_states == ["JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_FAILED"]
    # The create whose answer was lost was adopted by display name, not created again.
    abandoned = [e for e in events if isinstance(e, BatchSubmissionAbandoned)]
    assert [e.error_type for e in abandoned] == ["not_created"]  # the 503 before creating
    names = [e.display_name for e in events if isinstance(e, BatchSubmitted)]
    assert len(names) == len(set(names)) == sum(emulator.service.creates.values()) - 0
    assert [e.record_key for e in events if isinstance(e, UploadAbandoned)] == [KEYS[11]]
    errors = dict(store.query("SELECT error_type, count(*) FROM failure_logs GROUP BY error_type"))
    assert set(errors) >= {
        "schema_violation",
        "invalid_json",
        "error_line",
        "missing_line",
        "finish_safety",
        "finish_recitation",
        "finish_max_tokens",
    }
    store.close()
    assert "Batch Submitted" in caplog.text and "Batch Complete" in caplog.text
    assert API_KEY not in caplog.text
    r = run_cli("--config", str(config.source), "rebuild-projections", "--verify")
    assert r.code == 0, r.err


def test_an_unreadable_previous_output_defers_the_page_with_a_warning_naming_it(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """With context_previous_page, page 2's prompt carries page 1's output: if that file is
    gone or not text, page 2 waits (a WARNING naming the file, the run goes on) and goes out
    once the file is readable again."""
    keys = keys_for(states=1, schools=1, years=1, pages=2)
    make_dataset(tmp_path / "input", keys[:1])
    config = load_config(
        write_config(tmp_path, emulator.url, gemini={"context_previous_page": True})
    )
    assert run(config, until_idle=True, max_cycles=40, api_key=API_KEY).last.idle
    first = config.paths.output_root / Path(*keys[0].split(":")[:3]) / "1.json"
    good = first.read_bytes()
    first.write_bytes(b"\xff\xfe not text")
    make_dataset(tmp_path / "input", keys[1:])  # page 2 arrives: its prompt needs page 1's output
    with caplog.at_level(logging.WARNING):
        run(config, max_cycles=3, api_key=API_KEY)
    assert len(emulator.service.jobs) == 1  # page 2 never went out
    warnings = {
        r.getMessage() for r in caplog.records if "previous page's output" in r.getMessage()
    }
    assert warnings and all(
        keys[1] in w and str(first) in w and "checked again next cycle" in w for w in warnings
    )
    first.write_bytes(good)
    result = run(config, until_idle=True, max_cycles=40, api_key=API_KEY)
    assert result.last.idle
    check_final_state(config, emulator, keys)


def test_previous_page_context_orders_pages_and_rides_in_the_prompt(
    tmp_path: Path, emulator: Emulator
) -> None:
    keys = keys_for(states=1, schools=2, years=1, pages=4)
    make_dataset(tmp_path / "input", keys)
    config = load_config(
        write_config(tmp_path, emulator.url, gemini={"context_previous_page": True})
    )
    result = run(config, until_idle=True, max_cycles=40, api_key=API_KEY)
    assert result.last.idle
    check_final_state(config, emulator, keys)
    jobs = sorted(emulator.service.jobs.values(), key=lambda j: j.created)
    # Each job holds only pages whose previous page was already written: one page per school.
    assert [sorted(k.rsplit(":", 1)[1] for k, _ in j.requests) for j in jobs] == [
        ["1", "1"],
        ["2", "2"],
        ["3", "3"],
        ["4", "4"],
    ]
    for job in jobs:
        for key, request in job.requests:
            texts = [p.get("text", "") for p in request["contents"][0]["parts"]]
            page = int(key.rsplit(":", 1)[1])
            if page == 1:
                assert len(texts) == 2  # the prompt and the image
            else:
                prev = key.rsplit(":", 1)[0] + f":{page - 1}"
                written = (
                    config.paths.output_root / Path(*prev.split(":")[:3]) / f"{page - 1}.json"
                ).read_text()
                assert f"({prev}):\n{written}" in texts[1]


def test_the_schema_is_one_source_of_truth(tmp_path: Path, emulator: Emulator) -> None:
    (tmp_path / "myschema.py").write_text(
        "from pydantic import BaseModel\n"
        "class Receipt(BaseModel):\n"
        "    shop: str\n"
        "    total_cents: int\n"
    )
    keys = keys_for(1, 1, 1, 3)
    make_dataset(tmp_path / "input", keys)
    config = load_config(
        write_config(tmp_path, emulator.url, gemini={"output_schema": "myschema:Receipt"})
    )
    run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    [job] = emulator.service.jobs.values()
    sent = job.requests[0][1]["generationConfig"]["responseJsonSchema"]
    assert sent["required"] == ["shop", "total_cents"]
    out = json.loads((config.paths.output_root / "State0/School0/2020/1.json").read_text())
    assert set(out) == {"shop", "total_cents"}


@pytest.mark.parametrize(
    ("gemini", "message"),
    [
        ({"output_schema": "no_such_module:Thing"}, "[gemini] output_schema: cannot import"),
        ({"output_schema": "json:dumps"}, "is not a pydantic model class"),
        ({"output_schema": "commands.schema:Nope"}, "has no 'Nope'"),
    ],
)
def test_a_schema_that_cannot_be_used_is_refused_naming_the_key(
    tmp_path: Path, gemini: dict[str, str], message: str
) -> None:
    config = load_config(write_config(tmp_path, "http://127.0.0.1:9", gemini=gemini))
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(config, api_key="k")
    assert not config.paths.database.exists()


def test_a_missing_api_key_stops_before_any_work(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    r = run_cli("--config", str(config), "run", "--once", env={"E2E_GEMINI_KEY": ""})
    assert r.code == 1 and r.err.startswith(
        "Error: no API key: set the environment variable E2E_GEMINI_KEY"
    )
    assert r.err.count("\n") == 1
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[batching]\nbatch_sise = 3\n", "[batching] batch_sise: unknown key"),
        (
            "[uploads]\nupload_concurrency = 'many'\n",
            "[uploads] upload_concurrency: Input should be a valid integer",
        ),
    ],
)
def test_a_bad_config_is_refused_by_run_naming_the_key(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = tmp_path / "c.toml"
    config.write_text(toml)
    r = run_cli("--config", str(config), "run", env={"GEMINI_API_KEY": "k"})
    assert r.code == 1 and message in r.err and str(config) in r.err


def test_a_second_run_while_one_holds_the_lock_exits_with_a_message(
    tmp_path: Path, emulator: Emulator
) -> None:
    from commands.worker.runlock import RunLock

    make_dataset(tmp_path / "input", keys_for(1, 1, 1, 2))
    path = write_config(tmp_path, emulator.url)
    config = load_config(path)
    with RunLock(config.paths.database).acquire():
        r = run_cli("--config", str(path), "run", env={"E2E_GEMINI_KEY": API_KEY})
    assert r.code == 1 and "another run holds the lock" in r.err and "pid" in r.err
