"""``clear-batch ID --cancel`` cancels the job on the service too (real SDK, real process);
without it the message says the job may still run."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.config import load_config
from eventlog.events import BatchCleared, BatchSubmitted
from gemini_emulator import Emulator
from tests.conftest import file_digest, run_cli
from tests.pipeline import API_KEY, check_final_state, events, keys_for, make_dataset, write_config

KEYS = keys_for(1, 1, 2, 3)
ENV = {"E2E_GEMINI_KEY": API_KEY}


def submitted(tmp_path: Path, emulator: Emulator) -> tuple[Path, list[str]]:
    emulator.policy = {"timing": {"pending_seconds": 3600}}  # the jobs stay alive
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url, batching={"batch_size": 3})
    assert run_cli("--config", str(config), "run", "--once", env=ENV).code == 0
    ids = [e.batch_id for e in events(load_config(config)) if isinstance(e, BatchSubmitted)]
    assert len(ids) == 2
    return config, ids


def state_of(emulator: Emulator, batch_id: str) -> str:
    return str(emulator.service.get_batch(API_KEY, batch_id.removeprefix("batches/")).state)


def test_clear_batch_cancel_cancels_the_job_on_the_service(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, (first, second) = submitted(tmp_path, emulator)
    r = run_cli("--config", str(config), "clear-batch", first, "--cancel", env=ENV)
    assert r.code == 0, r.err
    assert f"cleared batch {first}: 3 record(s) freed" in r.out
    assert f"cancelled {first} on the service" in r.out
    assert "CANCELLED" in state_of(emulator, first)
    assert "CANCELLED" not in state_of(emulator, second)  # only the one named
    cleared = [e for e in events(load_config(config)) if isinstance(e, BatchCleared)]
    assert [c.batch_id for c in cleared] == [first]
    # The freed records are submitted again and everything is written in the end.
    emulator.policy = {"timing": {"pending_seconds": 0.1}}
    emulator.service.advance(7200)
    r = run_cli("--config", str(config), "run", "--until-idle", env=ENV)
    assert r.code == 0, r.err
    assert check_final_state(load_config(config), emulator, KEYS) == {"written": len(KEYS)}


def test_clear_batch_without_cancel_says_the_job_may_still_run(
    tmp_path: Path, emulator: Emulator
) -> None:
    config, (first, _) = submitted(tmp_path, emulator)
    r = run_cli("--config", str(config), "clear-batch", first, env=ENV)
    assert r.code == 0, r.err
    assert "may still run" in r.out and "first-result rule" in r.out and "--cancel" in r.out
    assert "CANCELLED" not in state_of(emulator, first)
    assert emulator.policy.calls("batches.cancel") == 0


@pytest.mark.parametrize("name", ["batches/nope", "gb-unknown", ""])
def test_cancel_of_an_unknown_batch_changes_nothing(
    tmp_path: Path, emulator: Emulator, name: str
) -> None:
    config, (first, _) = submitted(tmp_path, emulator)
    db = load_config(config).paths.database
    before = file_digest(db)
    r = run_cli("--config", str(config), "clear-batch", name, "--cancel", env=ENV)
    assert r.code == 1 and "Traceback" not in r.err
    assert emulator.policy.calls("batches.cancel") == 0 and file_digest(db) == before
    assert "CANCELLED" not in state_of(emulator, first)


def test_a_failed_cancel_clears_nothing(tmp_path: Path, emulator: Emulator) -> None:
    config, (first, _) = submitted(tmp_path, emulator)
    emulator.policy = {
        "timing": {"pending_seconds": 3600},
        "faults": [{"endpoint": "batches.cancel", "status": 403}],
    }
    db = load_config(config).paths.database
    before = file_digest(db)
    r = run_cli("--config", str(config), "clear-batch", first, "--cancel", env=ENV)
    assert r.code == 1 and f"cannot cancel {first}" in r.err and "nothing was cleared" in r.err
    assert len([x for x in r.err.splitlines() if x.startswith("Error:")]) == 1, r.err
    assert file_digest(db) == before


def test_cancel_uses_the_key_of_the_batchs_own_project(tmp_path: Path) -> None:
    """With two ``[[gemini.projects]]`` the job lives under its project's key: --cancel asks
    the service with that key (under the other it would not be found), whichever comes first."""
    from tests.e2e.test_projects import KEY_A, KEY_B, TWO, projects_config

    env = {"E2E_KEY_A": KEY_A, "E2E_KEY_B": KEY_B, "E2E_GEMINI_KEY": KEY_A}
    policy = {"timing": {"pending_seconds": 3600}}
    with Emulator(policy, api_key=[KEY_A, KEY_B]) as emu:
        make_dataset(tmp_path / "input", KEYS)
        config = projects_config(tmp_path, emu.url, TWO, batch_size=3)
        source = str(config.source)
        assert run_cli("--config", source, "run", "--once", env=env).code == 0
        project_of = {
            e.batch_id: e.project for e in events(config) if isinstance(e, BatchSubmitted)
        }
        assert sorted(project_of.values()) == ["a", "b"]
        [in_b] = [b for b, p in project_of.items() if p == "b"]
        r = run_cli("--config", source, "clear-batch", in_b, "--cancel", env=env)
        assert r.code == 0, r.err
        assert f"cancelled {in_b} on the service" in r.out
        job = emu.service.get_batch(KEY_B, in_b.removeprefix("batches/"))
        assert "CANCELLED" in str(job.state)
        assert [e.batch_id for e in events(config) if isinstance(e, BatchCleared)] == [in_b]
        # Its key gone from the environment: one line naming the project's variable, no clear.
        [in_a] = [b for b, p in project_of.items() if p == "a"]
        r = run_cli(
            "--config", source, "clear-batch", in_a, "--cancel", env={**env, "E2E_KEY_A": ""}
        )
        assert r.code == 1 and "E2E_KEY_A" in r.err and "Traceback" not in r.err
        assert [e.batch_id for e in events(config) if isinstance(e, BatchCleared)] == [in_b]
