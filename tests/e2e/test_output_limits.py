"""Answers cut at the output limit, through the real SDK and the emulator: a page whose answer
needs more output tokens than the limit sent is recorded ``finish_max_tokens`` with the hint,
and each retry asks for twice the limit (the emulator sees every request's ``maxOutputTokens``)
until the answer fits: written, with no request repeated as it was."""

from __future__ import annotations

from pathlib import Path

from commands.config import load_config
from commands.worker.session import run
from eventlog.events import RecordFailed
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config

KEYS = keys_for(1, 1, 1, 6)
LONG = KEYS[2]  # its answer takes 20,000 output tokens


def test_a_cut_answer_is_retried_with_a_doubled_limit_until_it_fits(
    tmp_path: Path, emulator: Emulator
) -> None:
    emulator.policy = {
        "timing": {"pending_seconds": 0.0, "running_seconds": 0.05},
        "records": [{"match": LONG, "output_tokens": 20_000}],
    }
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(
        write_config(
            tmp_path,
            emulator.url,
            batching={"batch_size": 10, "max_retries": 3},
            gemini={"max_output_tokens": 8192, "temperature": 0.0, "media_resolution": "low"},
        )
    )
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok"
    limits = emulator.service.output_limits
    assert limits[LONG] == [8192, 16384, 32768]
    assert all(limits[k] == [8192] for k in KEYS if k != LONG), limits
    resolutions = emulator.service.media_resolutions
    assert {r for k in KEYS for r in resolutions[k]} == {"MEDIA_RESOLUTION_LOW"}
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}
    store = open_store(config.log_location)
    try:
        failures = [r.event for r in store.read() if isinstance(r.event, RecordFailed)]
    finally:
        store.close()
    assert [(f.record_key, f.error_type) for f in failures] == [(LONG, "finish_max_tokens")] * 2
    assert all("raise [gemini] max_output_tokens" in f.message for f in failures)
