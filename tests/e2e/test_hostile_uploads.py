"""Uploads that cannot succeed by retrying, and files that change while they are uploaded,
through the real SDK and the emulator: ``run --until-idle`` ends, the page is given up on
(``UploadGivenUp``, with the reason) or checked again next cycle, and every other page is written.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path
from typing import Any

from commands.actions.reset_failures import reset_failures
from commands.config import Config, load_config
from commands.integrations.demo import png
from commands.worker.session import run
from eventlog.events import (
    FailuresReset,
    FileUploaded,
    ResetFilter,
    UploadAbandoned,
    UploadFailed,
    UploadGivenUp,
    UploadGivenUpCleared,
)
from gemini_emulator import Emulator
from projections import open_store
from tests.pipeline import (
    API_KEY,
    FILE_API,
    check_final_state,
    events,
    keys_for,
    make_dataset,
    write_config,
)

KEYS = keys_for(1, 1, 1, 6)
CLEAN = {"timing": {"pending_seconds": 0.0, "running_seconds": 0.05}}


def setup(
    tmp_path: Path,
    emulator: Emulator,
    faults: list[dict[str, Any]],
    keys: list[str] = KEYS,
    **uploads: Any,
) -> Config:
    emulator.policy = {**CLEAN, "faults": faults}
    make_dataset(tmp_path / "input", keys)
    return load_config(write_config(tmp_path, emulator.url, uploads={**FILE_API, **uploads}))


def image_path(tmp_path: Path, key: str) -> Path:
    state, school, year, page = key.split(":")
    return tmp_path / "input" / state / school / year / f"{page}.png"


def written(config: Config, keys: list[str]) -> set[str]:
    from commands.worker.dataset import output_path

    return {k for k in keys if output_path(config.paths.output_root, k).exists()}


def test_a_persistent_5xx_spends_the_budget_then_the_page_is_given_up_and_the_run_ends(
    tmp_path: Path, emulator: Emulator
) -> None:
    bad = KEYS[2]
    config = setup(
        tmp_path,
        emulator,
        [{"endpoint": "files.upload", "match": bad, "status": 503}],
        max_upload_attempts=7,
    )

    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    assert written(config, KEYS) == set(KEYS) - {bad}
    log = events(config)
    given = [e for e in log if isinstance(e, UploadGivenUp)]
    # 3 attempts a cycle (upload_retry_attempts): after 3 cycles, 9 >= 7 and it is given up.
    assert [(e.record_key, e.attempts) for e in given] == [(bad, 9)]
    assert (
        "503" in given[0].reason and given[0].size_bytes == image_path(tmp_path, bad).stat().st_size
    )
    failed = [e for e in log if isinstance(e, UploadFailed) and e.record_key == bad]
    assert len(failed) == 9 and emulator.service.policy.calls("files.upload") >= 9
    # A second run does not try the page again: the log does not grow with its uploads.
    before = len(log)
    again = run(config, until_idle=True, max_cycles=5, api_key=API_KEY)
    assert again.last.idle
    tail = events(config)[before:]
    assert not [e for e in tail if isinstance(e, (UploadFailed, UploadAbandoned))]


def test_a_4xx_upload_is_given_up_at_once_and_reset_failures_lets_it_go_again(
    tmp_path: Path, emulator: Emulator
) -> None:
    bad = KEYS[4]
    config = setup(
        tmp_path,
        emulator,
        [
            {
                "endpoint": "files.upload",
                "match": bad,
                "status": 400,
                "times": 1,
                "message": "Unsupported file.",
            }
        ],
    )

    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    assert written(config, KEYS) == set(KEYS) - {bad}
    given = [e for e in events(config) if isinstance(e, UploadGivenUp)]
    assert [(e.record_key, e.attempts) for e in given] == [(bad, 1)]
    assert "refused" in given[0].reason and "Unsupported file." in given[0].reason

    store = open_store(config.paths.database)
    try:
        matched = reset_failures(store, ResetFilter(all=True), actor="operator:test")
    finally:
        store.close()
    assert [(m.record_key, m.last_error_type) for m in matched] == [(bad, "upload_given_up")]
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    assert result.last.idle and written(config, KEYS) == set(KEYS)
    assert any(isinstance(e, FailuresReset) for e in events(config))
    check_final_state(config, emulator, KEYS)


def test_a_given_up_page_whose_file_changes_is_tried_again(
    tmp_path: Path, emulator: Emulator
) -> None:
    bad = KEYS[1]
    config = setup(
        tmp_path,
        emulator,
        [{"endpoint": "files.upload", "match": bad, "status": 400, "times": 1}],
    )
    run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    assert written(config, KEYS) == set(KEYS) - {bad}

    image_path(tmp_path, bad).write_bytes(png(9, 9, 2))  # the operator replaces the file
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)

    assert result.last.idle and written(config, KEYS) == set(KEYS)
    cleared = [e for e in events(config) if isinstance(e, UploadGivenUpCleared)]
    assert [e.record_key for e in cleared] == [bad]
    check_final_state(config, emulator, KEYS)


def test_a_request_file_upload_that_always_fails_does_not_wedge_the_run(
    tmp_path: Path, emulator: Emulator
) -> None:
    config = setup(
        tmp_path,
        emulator,
        [{"endpoint": "files.upload", "match": "gb-*-requests", "status": 500}],
        max_upload_attempts=6,
    )

    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    given = {e.record_key for e in events(config) if isinstance(e, UploadGivenUp)}
    assert given == set(KEYS)  # every page's budget went on its request file
    assert sum(emulator.service.creates.values()) == 0


def test_a_file_replaced_between_the_check_and_its_upload_is_not_sent_this_cycle(
    tmp_path: Path, emulator: Emulator
) -> None:
    first, changed = KEYS[0], KEYS[3]
    # The first upload is slow; meanwhile another page's file is replaced (other bytes, size).
    config = setup(
        tmp_path,
        emulator,
        [{"endpoint": "files.upload", "match": first, "times": 1, "delay": 0.6}],
        upload_concurrency=1,
    )
    new_image = png(12, 12, 5)

    def replace() -> None:
        deadline = time.monotonic() + 10
        while emulator.service.policy.calls("files.upload") < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        image_path(tmp_path, changed).write_bytes(new_image)

    thread = threading.Thread(target=replace)
    thread.start()
    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    thread.join()

    assert result.outcome == "ok" and result.last.idle
    assert written(config, KEYS) == set(KEYS)
    log = events(config)
    failed = [e for e in log if isinstance(e, UploadFailed) and e.record_key == changed]
    assert [e.error_type for e in failed] == ["file_changed"]
    # What was uploaded is the new file, whole: never a mix, never the old bytes.
    uploads = [e for e in log if isinstance(e, FileUploaded) and e.record_key == changed]
    assert [e.size_bytes for e in uploads] == [len(new_image)]
    billed = {b.key: b.image_sha256 for b in emulator.service.billed}
    assert billed[changed] == hashlib.sha256(new_image).hexdigest()
    check_final_state(config, emulator, KEYS)


def test_a_file_truncated_before_its_inline_line_is_written_waits_and_is_rejected(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Inline: the line is made from bytes read once; a file emptied after the check is not
    sent, and the next cycle's check rejects it (an empty file); the others are written."""
    import commands.worker.images as images_module

    emptied = KEYS[5]
    config = setup(tmp_path, emulator, [], image_transport="inline")
    real = images_module._route

    def check_then_truncate(w: Any, pages: list[Any], stamps: Any, probes: Any) -> Any:
        out = real(w, pages, stamps, probes)
        if any(p.key == emptied for p in pages):
            image_path(tmp_path, emptied).write_bytes(b"")
        return out

    images_module._route = check_then_truncate
    try:
        result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)
    finally:
        images_module._route = real

    assert result.outcome == "ok" and result.last.idle
    assert written(config, KEYS) == set(KEYS) - {emptied}
    store = open_store(config.paths.database)
    try:
        rejected = dict(store.query("SELECT path, reason FROM rejected_inputs"))
    finally:
        store.close()
    assert rejected == {str(image_path(tmp_path, emptied)): "empty file (0 bytes)"}


def test_a_key_the_http_layer_cannot_carry_goes_under_a_safe_ascii_name(
    tmp_path: Path, emulator: Emulator
) -> None:
    keys = ["Zürich:Schüle\u2028X:2020:1", "東京:学校:2020:1", "Ohio:Lincoln:2020:1"]
    config = setup(tmp_path, emulator, [], keys=keys)

    result = run(config, until_idle=True, max_cycles=30, api_key=API_KEY)

    assert result.outcome == "ok" and result.last.idle
    assert written(config, keys) == set(keys)
    names = set(emulator.service.uploaded)
    assert "Ohio:Lincoln:2020:1" in names
    assert all(n.isascii() and n.isprintable() for n in names), names
    # Our log keeps the real keys.
    assert {e.record_key for e in events(config) if isinstance(e, FileUploaded)} == set(keys)


def test_a_request_file_truncated_under_the_sdk_upload_fails_at_once_instead_of_spinning(
    tmp_path: Path, emulator: Emulator
) -> None:
    from commands.errors import GatewayError
    from commands.gemini.sdk import Gateway

    emulator.policy = {"faults": [{"endpoint": "files.upload", "delay": 0.4}]}
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"x" * 100_000)
    gateway = Gateway(api_key=API_KEY, base_url=emulator.url, timeout_seconds=5)
    timer = threading.Timer(0.1, lambda: path.write_bytes(b"x" * 10))
    timer.start()
    started = time.monotonic()
    try:
        gateway.upload(path, mime_type="jsonl", display_name="gb-x-001-requests")
    except GatewayError as e:
        error = e
    else:
        raise AssertionError("the upload of a truncated file succeeded")
    finally:
        timer.join()
        gateway.close()
    assert time.monotonic() - started < 3  # one answer, no loop of empty chunks
    assert not error.transient and "changed while it was uploaded" in str(error)
    assert emulator.service.policy.calls("files.upload_bytes") <= 1
