"""Image transport through the real SDK and the emulator: inline (base64 in the request line),
File API, and ``auto`` choosing by size; request files cut by bytes; images too big for either."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import pytest

from commands.config import Config, load_config
from commands.gemini.port import GeminiPort
from commands.integrations.demo import png
from commands.pages import Page
from commands.schema import PageExtraction, response_json_schema
from commands.views.report import build, render
from commands.worker.context import Worker
from commands.worker.request_files import LineMaker
from commands.worker.session import run
from eventlog.events import BatchSubmissionIntended, BatchSubmitted, InputRejected
from gemini_emulator import Emulator
from projections import open_store
from projections.replay import replay_for_views, view
from tests.pipeline import API_KEY, check_final_state, events, keys_for, make_dataset, write_config

KEYS = keys_for(1, 2, 1, 6)  # 12 pages
#: Pages whose image is bigger than INLINE_MAX (so ``auto`` uploads them).
BIG, BIG_IMAGE, INLINE_MAX = KEYS[::4], png(800, 800, 3), 200
CLEAN = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}


def image_path(root: Path, key: str) -> Path:
    state, school, year, page = key.split(":")
    return root / "input" / state / school / year / f"{page}.png"


def setup(
    tmp_path: Path,
    emulator: Emulator,
    keys: list[str],
    big: list[str],
    policy: dict[str, Any] | None = None,
    **uploads: Any,
) -> Config:
    emulator.policy = policy or CLEAN
    make_dataset(tmp_path / "input", keys)
    for key in big:
        image_path(tmp_path, key).write_bytes(BIG_IMAGE)
    return load_config(
        write_config(tmp_path, emulator.url, batching={"batch_size": 10}, uploads=uploads)
    )


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("mode", "inline_max", "expected_batches"),
    [
        ("auto", INLINE_MAX, ["mixed", "inline"]),
        ("inline", 4 * 1024**2, ["inline", "inline"]),
        ("file_api", INLINE_MAX, ["file_api", "file_api"]),
    ],
)
def test_each_transport_end_to_end_with_mixed_image_sizes(
    tmp_path: Path, emulator: Emulator, mode: str, inline_max: int, expected_batches: list[str]
) -> None:
    config = setup(
        tmp_path,
        emulator,
        KEYS,
        BIG,
        image_transport=mode,
        inline_image_max_bytes=inline_max,
    )
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}

    # The model saw each page's own image, sent the way the mode and its size say.
    def way(key: str) -> str:
        if mode == "inline" or (mode == "auto" and key not in BIG):
            return "inline"
        return "file_api"

    ledger = emulator.service.ledger()
    assert {b.key: b.transport for b in ledger} == {k: way(k) for k in KEYS}
    assert {b.key: b.image_sha256 for b in ledger} == {
        k: sha(image_path(tmp_path, k)) for k in KEYS
    }
    # File API uploads: one request file per batch, and only the images that went by file.
    by_file = sum(way(k) == "file_api" for k in KEYS)
    submitted = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert emulator.policy.calls("files.upload") == len(submitted) + by_file
    assert [e.transport for e in submitted] == expected_batches
    intents = [e for e in events(config) if isinstance(e, BatchSubmissionIntended)]
    assert [e.transport for e in intents] == expected_batches
    assert all(len(e.files) == sum(way(k) == "file_api" for k in e.record_keys) for e in intents)
    # The run report says which transport each batch used.
    store = open_store(config.paths.database)
    report = build(store, result.run_id, config)
    store.close()
    assert report.batch_transports == Counter(expected_batches)
    shown = ", ".join(f"{n} {t}" for t, n in sorted(Counter(expected_batches).items()))
    assert f"- Image transport: {shown}\n" in render(report)


def line_bytes(tmp_path: Path, config: Config, key: str) -> int:
    """The size of ``key``'s inline request line, as the worker encodes it."""
    store = open_store(tmp_path / "probe.db", create=True)
    try:
        worker = Worker(config, store, cast(GeminiPort, None), "probe", PageExtraction)
        state, school, year, page = key.split(":")
        path = str(image_path(tmp_path, key))
        make = LineMaker(worker.config, response_json_schema(worker.schema), {}, {})
        line = make(Page(key, state, school, year, page, path, "image/png"), None)
        assert line is not None
        return len(line)
    finally:
        store.close()


def test_a_chunk_is_cut_into_request_files_by_bytes(tmp_path: Path, emulator: Emulator) -> None:
    keys = KEYS[:6]  # one chunk (batch_size 10), lines of one size
    config = setup(tmp_path, emulator, keys, [], image_transport="inline")
    line = line_bytes(tmp_path, config, keys[0])
    config = load_config(
        write_config(
            tmp_path,
            emulator.url,
            batching={"batch_size": 10},
            uploads={"image_transport": "inline", "max_request_file_bytes": 3 * line + line // 2},
        )
    )
    submitted_per_cycle: list[int] = []
    result = run(
        config,
        until_idle=True,
        max_cycles=20,
        api_key=API_KEY,
        on_cycle=lambda n, summary: submitted_per_cycle.append(summary.submitted),
    )
    assert result.outcome == "ok" and result.last.idle
    assert check_final_state(config, emulator, keys) == {"written": len(keys)}
    submitted = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert [e.record_keys for e in submitted] == [keys[:3], keys[3:]]
    assert submitted_per_cycle[0] == 2  # both from the first cycle's one chunk
    # No image went through the File API: the two uploads are the two request files.
    assert emulator.policy.calls("files.upload") == 2


@pytest.mark.parametrize("limit", ["inline_image_max_bytes", "max_request_file_bytes"])
def test_an_image_too_big_to_go_inline_is_rejected_with_its_size(
    tmp_path: Path, emulator: Emulator, limit: str
) -> None:
    keys, big = KEYS[:4], [KEYS[1]]
    config = setup(tmp_path, emulator, keys, big, image_transport="inline")
    small_line = line_bytes(tmp_path, config, keys[0])
    if limit == "inline_image_max_bytes":
        uploads, reason = {limit: INLINE_MAX}, f"({len(BIG_IMAGE)} > {INLINE_MAX} bytes, [uploads]"
    else:  # the big image's base64 alone is more than a request file may hold
        request_max = small_line + 100
        uploads = {limit: request_max}
        encoded = 4 * ((len(BIG_IMAGE) + 2) // 3)
        assert encoded > request_max
        reason = f"({len(BIG_IMAGE)} bytes, {encoded} as base64 > {request_max}, {limit}"
    config = load_config(
        write_config(
            tmp_path,
            emulator.url,
            batching={"batch_size": 10},
            uploads={"image_transport": "inline", **uploads},
        )
    )
    result = run(config, until_idle=True, max_cycles=20, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    rejected = [e for e in events(config) if isinstance(e, InputRejected)]
    assert [e.path for e in rejected] == [str(image_path(tmp_path, big[0]))]  # once
    assert rejected[0].reason.startswith("too big to send inline ") and reason in rejected[0].reason
    written = [k for k in keys if k not in big]
    assert check_final_state(config, emulator, written) == {"written": len(written)}
    # Request files only, no image (with room for one line a file, one batch a page).
    batches = sum(isinstance(e, BatchSubmitted) for e in events(config))
    assert batches == (1 if limit == "inline_image_max_bytes" else len(written))
    assert emulator.policy.calls("files.upload") == batches


def test_an_invalid_inline_line_is_a_per_line_error_recorded_as_a_failure(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = KEYS[:5]
    bad_mime, bad_base64 = keys[1], keys[3]
    config = setup(tmp_path, emulator, keys, [], image_transport="inline")
    import commands.worker.request_files as cycle

    real = cycle.inline_part

    def damaged(page: Page, data: bytes | None = None) -> dict[str, Any]:
        part = real(page, data)
        if page.key == bad_mime:
            part["inlineData"]["mimeType"] = "text/plain"
        elif page.key == bad_base64:
            part["inlineData"]["data"] = "not base64 at all!"
        return part

    monkeypatch.setattr(cycle, "inline_part", damaged)
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    assert result.outcome == "ok" and result.last.idle
    outcome = check_final_state(config, emulator, keys)
    assert outcome == {"written": 3, "dead_lettered": 2}
    store = open_store(config.paths.database)
    logs = Counter(
        (key, kind, "400 INVALID_ARGUMENT" in message)
        for key, kind, message in store.query(
            "SELECT record_key, error_type, message FROM failure_logs"
        )
    )
    store.close()
    retries = config.batching.max_retries
    assert logs == {
        (bad_mime, "error_line", True): retries,
        (bad_base64, "error_line", True): retries,
    }
    # Neither bad line was billed; the good ones were, once each.
    assert sorted(b.key for b in emulator.service.ledger()) == sorted(
        k for k in keys if k not in (bad_mime, bad_base64)
    )


def test_replay_shows_each_active_batch_transport(tmp_path: Path, emulator: Emulator) -> None:
    config = setup(
        tmp_path,
        emulator,
        KEYS[:4],
        [KEYS[0]],
        policy={"timing": {"pending_seconds": 3600, "running_seconds": 1}},
        image_transport="auto",
        inline_image_max_bytes=INLINE_MAX,
    )
    run(config, max_cycles=1, api_key=API_KEY)
    store = open_store(config.paths.database)
    rows = view(replay_for_views(store, store.last_seq()), "active-batches")
    store.close()
    assert [r["transport"] for r in rows] == ["mixed"]


def test_the_request_file_upload_follows_the_upload_policy(
    tmp_path: Path, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Three 503s on the request file: attempts 1-3 with backoff, the pages wait a cycle, then
    the fourth upload makes the batch; the API retry policy (4 attempts) is not what applies."""
    keys = KEYS[:3]  # inline: every upload is a request file
    faults = [{"endpoint": "files.upload", "calls": [1, 2, 3], "status": 503}]
    config = setup(
        tmp_path, emulator, keys, [], policy={**CLEAN, "faults": faults}, image_transport="inline"
    )
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(0.02)

    with caplog.at_level(logging.WARNING):
        result = run(config, until_idle=True, max_cycles=40, api_key=API_KEY, sleep=sleep)
    assert result.outcome == "ok" and result.last.idle
    assert check_final_state(config, emulator, keys) == {"written": len(keys)}
    failed = [r.getMessage() for r in caplog.records if "-requests failed (attempt" in r.message]
    assert [m.split("(attempt ")[1][:3] for m in failed] == ["1/3", "2/3", "3/3"]
    assert any("Cannot upload the request file of" in r.message for r in caplog.records)
    backoff = config.uploads.upload_retry_backoff_seconds
    assert sleeps[:2] == [backoff, 2 * backoff]
    assert emulator.policy.calls("files.upload") == 4  # inline images: request files only
