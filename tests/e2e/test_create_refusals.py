"""Creates that cannot succeed by retrying, through the real SDK and the emulator: a persistent 4xx
on ``batches.create`` counts a failure of each page (dead-lettered after ``max_retries``,
``reset-failures`` brings it back), a page refused again goes in a batch of its own so the others
are written, and creates the service keeps leaving unanswered back off like a quota hold.
``run --until-idle`` ends every time, after a bounded number of creates.

Measured before this change (6 pages, one batch of 6, 15 cycles): each case made one create a
cycle for ever (15 creates, 3 events a cycle), never idle, and no page was ever written.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from commands.actions.reset_failures import reset_failures
from commands.cli import cli
from commands.config import Config
from commands.worker.dataset import output_path
from commands.worker.session import run
from eventlog.events import (
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmitted,
    FailuresReset,
    RecordDeadLettered,
    RecordFailed,
    ResetFilter,
)
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import API_KEY, check_final_state, configured, events, keys_for

KEYS = keys_for(1, 1, 1, 6)
TIMING = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}
#: No SDK retries: each create attempt is one call the emulator counts.
ONE_TRY = {"api_retry_attempts": 1}


def setup(
    tmp_path: Path, emulator: Emulator, faults: list[dict[str, Any]], **batching: Any
) -> Config:
    return configured(
        tmp_path,
        emulator,
        {**TIMING, "faults": faults},
        KEYS,
        6,
        batching={"batch_size": 6, **batching},
        network=ONE_TRY,
    )


def written(config: Config) -> set[str]:
    return {k for k in KEYS if output_path(config.paths.output_root, k).exists()}


def creates(emulator: Emulator) -> int:
    return emulator.service.policy.calls("batches.create")


def test_a_persistent_400_on_create_dead_letters_the_pages_and_the_run_ends(
    tmp_path: Path, emulator: Emulator
) -> None:
    fault = {
        "endpoint": "batches.create",
        "status": 400,
        "message": "Request contains an invalid argument.",
    }
    config = setup(tmp_path, emulator, [fault])

    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    assert written(config) == set()
    log = events(config)
    failed = [e for e in log if isinstance(e, RecordFailed)]
    assert {e.error_type for e in failed} == {"batch_create_refused"}
    assert all("Request contains an invalid argument." in e.message for e in failed)
    # max_retries 3: every page failed exactly 3 times, then was dead-lettered.
    assert Counter(e.record_key for e in failed) == dict.fromkeys(KEYS, 3)
    assert sorted(e.record_key for e in log if isinstance(e, RecordDeadLettered)) == sorted(KEYS)
    # The batch of 6 twice (a refusal may be a fluke), then each page alone: 2 + 6 creates.
    assert creates(emulator) == 8
    abandoned = [e for e in log if isinstance(e, BatchSubmissionAbandoned)]
    assert len(abandoned) == 8 and {e.error_type for e in abandoned} == {"http_400"}
    assert not emulator.service.jobs

    # A second run does nothing: the log does not grow with creates.
    before = len(log)
    again = run(config, until_idle=True, max_cycles=5, api_key=API_KEY)
    assert again.last.idle and again.cycles == 1 and creates(emulator) == 8
    assert not [e for e in events(config)[before:] if isinstance(e, RecordFailed)]

    # The service is fixed; reset-failures brings the pages back and they are written.
    emulator.policy = TIMING
    store = open_store(config.paths.database)
    try:
        matched = reset_failures(store, ResetFilter(all=True), actor="operator:test")
    finally:
        store.close()
    assert {(m.record_key, m.last_error_type) for m in matched} == {
        (k, "batch_create_refused") for k in KEYS
    }
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    assert result.last.idle and written(config) == set(KEYS)
    assert any(isinstance(e, FailuresReset) for e in events(config))
    check_final_state(config, emulator, KEYS)


def test_a_400_only_for_batches_holding_one_page_isolates_it_and_writes_the_rest(
    tmp_path: Path, emulator: Emulator
) -> None:
    bad = KEYS[2]
    fault = {"endpoint": "batches.create", "record": bad, "status": 400, "message": "Bad image."}
    config = setup(tmp_path, emulator, [fault])

    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    assert written(config) == set(KEYS) - {bad}
    log = events(config)
    failed = Counter(e.record_key for e in log if isinstance(e, RecordFailed))
    # The good pages failed twice (refused with the bad one), then went alone and were written.
    assert failed == {**dict.fromkeys(set(KEYS) - {bad}, 2), bad: 3}
    assert [e.record_key for e in log if isinstance(e, RecordDeadLettered)] == [bad]
    submitted = [e for e in log if isinstance(e, BatchSubmitted)]
    assert sorted(k for e in submitted for k in e.record_keys) == sorted(set(KEYS) - {bad})
    assert all(len(e.record_keys) == 1 for e in submitted)
    # The batch of 6 refused twice; 5 good pages alone; the bad page alone once more.
    assert creates(emulator) == 2 + 5 + 1
    status = CliRunner().invoke(cli, ["--config", str(config.source), "status", "--no-scan"])
    assert status.exit_code == 0 and "dead letters" in status.output

    # The service takes the page now; reset-failures brings it back and it is written.
    store = open_store(config.paths.database)
    try:
        matched = reset_failures(store, ResetFilter(all=True), actor="operator:test")
    finally:
        store.close()
    assert (bad, 3, "batch_create_refused") in {
        (m.record_key, m.count, m.last_error_type) for m in matched
    }
    emulator.policy = TIMING
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    assert result.last.idle and written(config) == set(KEYS)
    check_final_state(config, emulator, KEYS)


def test_a_persistent_503_on_create_backs_off_never_dead_letters_and_the_run_ends(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        [{"endpoint": "batches.create", "status": 503}],
        quota_backoff_seconds=0.05,
        quota_backoff_max_seconds=5,
    )

    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.stalled and not result.last.idle
    assert result.cycles < 60 and result.last.held_back == len(KEYS)
    assert "unanswered" in result.last.hold
    log = events(config)
    assert not [e for e in log if isinstance(e, RecordFailed | RecordDeadLettered)]
    deferred = [e for e in log if isinstance(e, BatchSubmissionDeferred)]
    assert [e.reason for e in deferred] == ["service_unavailable"] * 6
    assert [e.halvings for e in deferred] == [1, 2, 3, 4, 5, 6]
    # The first unanswered create found absent is abandoned as before; each later one is
    # deferred, and the creates wait: 2 + 5 creates, the sixth deferral ends the run.
    abandoned = [e for e in log if isinstance(e, BatchSubmissionAbandoned)]
    assert [e.error_type for e in abandoned] == ["not_created"]
    assert creates(emulator) == 7
    store = open_store(config.paths.database)
    try:
        assert store.query_one("SELECT count(*) FROM inflight_records") == (0,)
    finally:
        store.close()

    # While the hold is in force (1.6 s after the sixth deferral) a new run ends at once, with
    # one line and exit 75, and creates nothing; once its window has passed the pages go.
    emulator.policy = TIMING  # the service recovers (a new policy: its call counts start at 0)
    cli_run = CliRunner().invoke(
        cli,
        ["--config", str(config.source), "run", "--until-idle"],
        env={"E2E_GEMINI_KEY": API_KEY},
    )
    assert cli_run.exit_code == 75, cli_run.output
    line = f"{len(KEYS)} page(s) held back: held back by the service leaving its creates unanswered"
    assert line in cli_run.output and creates(emulator) == 0
    status = CliRunner().invoke(cli, ["--config", str(config.source), "status", "--no-scan"])
    assert "held back by the service leaving its creates unanswered since" in status.output
    time.sleep(1.7)
    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)
    assert result.last.idle and written(config) == set(KEYS)
    check_final_state(config, emulator, KEYS)


def test_a_create_refused_for_the_key_or_the_model_stops_the_run_and_fails_no_page(
    tmp_path: Path, emulator: Emulator
) -> None:
    """403 (a key revoked mid-run) and 404 (a model the service does not know): no page can cure
    them, so none counts a failure: the run stops with one line naming the key's variable and
    the model, exit 1; once fixed, the next run writes every page."""
    for code in (403, 404):
        config = setup(
            tmp_path / str(code),
            emulator,
            [{"endpoint": "batches.create", "status": code, "message": "Permission denied."}],
        )
        cli_run = CliRunner().invoke(
            cli,
            ["--config", str(config.source), "run", "--until-idle"],
            env={"E2E_GEMINI_KEY": API_KEY},
        )
        assert cli_run.exit_code == 1, cli_run.output
        [line] = [x for x in cli_run.output.splitlines() if x.startswith("Error: ")]
        assert "refused to create" in line and "$E2E_GEMINI_KEY" in line, line
        assert config.gemini.model in line and "no page counted a failure" in line
        log = events(config)
        assert not [e for e in log if isinstance(e, RecordFailed | RecordDeadLettered)]
        assert [type(e) for e in log if isinstance(e, BatchSubmissionAbandoned)] == [
            BatchSubmissionAbandoned
        ]
        assert creates(emulator) == 1  # one create, then the run stopped
    emulator.policy = TIMING
    # The service takes creates again: the last dataset's pages are all written.
    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)
    assert result.last.idle and written(config) == set(KEYS)
    check_final_state(config, emulator, KEYS)


def test_an_outage_ends_run_until_idle_after_ten_blind_cycles_and_nothing_is_lost(
    tmp_path: Path, emulator: Emulator
) -> None:
    """The service stops answering about batches (every get and list a 503) while a batch is in
    flight: ``run --until-idle`` ends after 10 cycles in which it answered nothing, with one line
    and exit 75, instead of cycling for ever; the batch stays in the log, and once the service
    is back the next run collects it."""
    config = setup(tmp_path, emulator, [])
    first = run(config, max_cycles=1, api_key=API_KEY)
    assert first.last.active == 1
    outage = [
        {"endpoint": endpoint, "status": 503}
        for endpoint in ("batches.get", "batches.list", "files.list")
    ]
    emulator.policy = {**TIMING, "faults": outage}
    cli_run = CliRunner().invoke(
        cli,
        ["--config", str(config.source), "run", "--until-idle"],
        env={"E2E_GEMINI_KEY": API_KEY},
    )
    assert cli_run.exit_code == 75, cli_run.output
    assert "the service answered nothing about batches for 10 cycles" in cli_run.output
    assert "1 batch(es) and 0 open submission(s) wait in the log" in cli_run.output
    assert emulator.service.policy.calls("batches.get") == 10  # one poll a cycle, 10 cycles
    assert not [e for e in events(config) if isinstance(e, RecordFailed | RecordDeadLettered)]
    emulator.policy = TIMING
    result = run(config, until_idle=True, max_cycles=60, api_key=API_KEY)
    assert result.last.idle and written(config) == set(KEYS)
    check_final_state(config, emulator, KEYS)
