"""SIGKILL ``clear-batch ID --cancel`` right after the service cancelled the job and before the
clear is appended (a real subprocess): the log still holds the batch as active, the next run's
poll sees it CANCELLED and frees its records, and every page is written in the end."""

from __future__ import annotations

import signal
from pathlib import Path

from commands.config import load_config
from eventlog.events import BatchCleared, BatchSubmitted
from gemini_emulator import Emulator
from tests.conftest import file_digest
from tests.crash.test_kill_and_restart import worker
from tests.pipeline import API_KEY, check_final_state, events, keys_for, make_dataset, write_config

KEYS = keys_for(1, 1, 2, 3)


def test_a_crash_after_the_service_cancel_is_resolved_by_the_next_run(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {"timing": {"pending_seconds": 3600}}  # the jobs stay alive
    make_dataset(tmp_path / "input", KEYS)
    config_path = write_config(tmp_path, emulator.url, batching={"batch_size": 3})
    assert worker(config_path, "run", "--once").returncode == 0
    config = load_config(config_path)
    first, second = [e.batch_id for e in events(config) if isinstance(e, BatchSubmitted)]
    before = file_digest(config.paths.database)

    killed = worker(config_path, "clear-batch", first, "--cancel", crash_at="after_service_cancel")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-1500:]
    job = emulator.service.get_batch(API_KEY, first.removeprefix("batches/"))
    assert "CANCELLED" in str(job.state)  # cancelled there...
    assert file_digest(config.paths.database) == before  # ...and nothing recorded here
    assert not [e for e in events(config) if isinstance(e, BatchCleared)]

    emulator.policy = {"timing": {"pending_seconds": 0.1}}
    emulator.service.advance(7200)
    final = worker(config_path, "run", "--until-idle")
    assert final.returncode == 0, final.stderr[-1500:]
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    # The CANCELLED job freed its records: they went out again in a new batch.
    resubmitted = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert len(resubmitted) >= 3 and {first, second} <= {e.batch_id for e in resubmitted}
