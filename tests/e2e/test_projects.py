"""Quota per project through the real SDK over HTTP: two ``[[gemini.projects]]`` (two API keys)
against an emulator that scopes jobs and files by key and holds per-key limits. Every page is
written, each batch is created, polled, downloaded and deleted with its own project's key (the
emulator never sees a lookup under a foreign key), and two projects run twice the batches of one;
a project whose key the service holds back (429) leaves the other one going."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from commands.cli import cli
from commands.config import Config, load_config
from commands.worker.session import run
from eventlog.events import (
    BatchCompleted,
    BatchSubmissionDeferred,
    BatchSubmitted,
    FileUploaded,
)
from gemini_emulator import Emulator
from tests.pipeline import FILE_API, check_final_state, events, keys_for, make_dataset, write_config

KEY_A, KEY_B = "project-a-key-0123456789", "project-b-key-0123456789"
KEYS = keys_for(2, 2, 1, 6)  # 24 pages
#: Jobs run long enough that a cycle sees the limits, short enough for a quick test.
TIMING = {"pending_seconds": 0.3, "running_seconds": 0.3}


def projects_config(
    tmp_path: Path, url: str, projects: list[dict[str, object]], **batching: object
) -> Config:
    path = write_config(
        tmp_path,
        url,
        batching={"batch_size": 4, "max_active_batches": 1, **batching},
        uploads=FILE_API,
    )
    text = path.read_text()
    for p in projects:
        text += "[[gemini.projects]]\n" + "".join(
            f"{k} = {v!r}\n".replace("'", '"') for k, v in p.items()
        )
    path.write_text(text)
    return load_config(path)


@pytest.fixture
def keys_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("E2E_KEY_A", KEY_A)
    monkeypatch.setenv("E2E_KEY_B", KEY_B)
    monkeypatch.setenv("E2E_GEMINI_KEY", KEY_A)


TWO: list[dict[str, object]] = [
    {"name": "a", "api_key_env": "E2E_KEY_A"},
    {"name": "b", "api_key_env": "E2E_KEY_B"},
]


def first_cycle_batches(config: Config) -> int:
    run(config, max_cycles=1, loop=True, sleep=lambda s: time.sleep(0.05))
    return sum(isinstance(e, BatchSubmitted) for e in events(config))


def test_two_projects_each_use_their_own_key_and_double_the_capacity(
    tmp_path: Path, keys_env: None
) -> None:
    policy = {"timing": TIMING, "limits": [{"key": "*", "max_active_jobs": 1}]}
    # One project (the implicit default, today's api_key_env): one batch in flight at a time.
    with Emulator(policy, api_key=[KEY_A, KEY_B]) as emu:
        make_dataset(tmp_path / "one" / "input", KEYS)
        one = load_config(
            write_config(
                tmp_path / "one",
                emu.url,
                batching={"batch_size": 4, "max_active_batches": 1},
                uploads=FILE_API,
            )
        )
        assert first_cycle_batches(one) == 1
    # Two projects, each with its own key and its own max_active_batches.
    with Emulator(policy, api_key=[KEY_A, KEY_B]) as emu:
        (tmp_path / "two").mkdir()
        make_dataset(tmp_path / "two" / "input", KEYS)
        two = projects_config(tmp_path / "two", emu.url, TWO)
        assert first_cycle_batches(two) == 2

        run(two, until_idle=True, max_cycles=200, sleep=lambda s: time.sleep(0.05))

        assert check_final_state(two, emu, KEYS) == {"written": len(KEYS)}
        log = events(two)
        submitted = [e for e in log if isinstance(e, BatchSubmitted)]
        assert Counter(e.project for e in submitted) == {"a": 3, "b": 3}
        assert not [e for e in log if isinstance(e, BatchSubmissionDeferred)]  # never a 429
        assert sum(isinstance(e, BatchCompleted) for e in log) == len(submitted)
        assert {e.project for e in log if isinstance(e, FileUploaded)} == {"a", "b"}
        keys = httpx.get(f"{emu.url}/_emulator/keys").json()
        owner = {j["name"]: j["owner"] for j in keys["jobs"]}
        key_of = {"a": KEY_A, "b": KEY_B}
        assert all(owner[e.batch_id] == key_of[e.project] for e in submitted)
        # Nothing asked for under the other project's key: every poll, download, delete found
        # its batch or file under its own key.
        assert keys["foreign_lookups"] == 0
        for key in (KEY_A, KEY_B):
            assert keys["calls"][f"batches.get {key}"] >= 3
            assert keys["calls"][f"batches.delete {key}"] == 3

        status = CliRunner().invoke(cli, ["--config", str(two.source), "status"])
        assert status.exit_code == 0, status.output
        assert "projects      2" in status.output
        assert "  a  batches 0/1  enqueued tokens 0/no limit" in status.output


def test_a_project_held_by_its_quota_leaves_the_other_going(tmp_path: Path, keys_env: None) -> None:
    # The service gives project b's key no room at all: each create it tries answers 429.
    policy = {
        "timing": TIMING,
        "limits": [{"key": KEY_B, "max_active_jobs": 0}, {"key": "*", "max_active_jobs": 2}],
    }
    with Emulator(policy, api_key=[KEY_A, KEY_B]) as emu:
        make_dataset(tmp_path / "input", KEYS)
        config = projects_config(
            tmp_path,
            emu.url,
            [{**TWO[0], "max_active_batches": 2}, {**TWO[1], "max_active_batches": 3}],
            quota_backoff_seconds=3600,
        )
        run(config, until_idle=True, max_cycles=200, sleep=lambda s: time.sleep(0.05))

        assert check_final_state(config, emu, KEYS) == {"written": len(KEYS)}
        log = events(config)
        deferred = [e for e in log if isinstance(e, BatchSubmissionDeferred)]
        assert [(e.reason, e.project) for e in deferred] == [("quota", "b")]  # then held back
        submitted = [e for e in log if isinstance(e, BatchSubmitted)]
        assert {e.project for e in submitted} == {"a"} and len(submitted) == 6

        status = CliRunner().invoke(cli, ["--config", str(config.source), "status"])
        assert status.exit_code == 0, status.output
        assert "  b  batches 0/3  enqueued tokens 0/no limit  held back by the service's " in (
            status.output
        )
