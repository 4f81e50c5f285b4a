"""Different batches' calls run side by side, through the real SDK and the emulator (its timeline
of every call's span): the polls, downloads and job deletes of several batches overlap each
other; so do their creates, once a cycle's first create (alone) went through. Structure, not
speed: each call is slowed down so overlapping calls are seen overlapping."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest

from commands.config import Config, load_config
from commands.errors import GatewayError
from commands.worker.session import run
from eventlog.events import BatchSubmissionIntended, BatchSubmitted
from gemini_emulator import Emulator
from tests.e2e.test_transport import line_bytes
from tests.pipeline import (
    API_KEY,
    check_final_state,
    events,
    keys_for,
    make_dataset,
    write_config,
)

KEYS = keys_for(1, 1, 1, 12)  # six batches of two
SLOW = ("batches.create", "batches.get", "files.download", "batches.delete")

Span = tuple[str, float, float]


def spans(emulator: Emulator) -> list[Span]:
    got = httpx.get(f"{emulator.url}/_emulator/timeline").json()
    return [(name, start, end) for name, start, end in got]


def overlapping(calls: list[Span]) -> int:
    """How many pairs of ``calls`` were in flight at the same moment."""
    return sum(
        1
        for i, (_, s1, e1) in enumerate(calls)
        for _, s2, e2 in calls[i + 1 :]
        if s1 < e2 and s2 < e1
    )


def test_the_calls_of_different_batches_overlap(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {"faults": [{"endpoint": e, "delay": 0.15} for e in SLOW]}
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(
        write_config(tmp_path, emulator.url, batching={"batch_size": 2, "max_active_batches": 6})
    )

    run(config, max_cycles=1, api_key=API_KEY)  # six batches submitted
    creates = sorted((c for c in spans(emulator) if c[0] == "batches.create"), key=lambda c: c[1])
    assert len(creates) == 6
    first, rest = creates[0], creates[1:]
    assert all(first[2] <= later[1] for later in rest)  # the cycle's first create went alone
    assert overlapping(rest) > 0  # then creates of different batches side by side

    run(config, max_cycles=1, api_key=API_KEY)  # all six polled, collected, their jobs deleted
    calls = spans(emulator)
    for endpoint in ("batches.get", "files.download", "batches.delete"):
        of_it = [c for c in calls if c[0] == endpoint]
        assert len(of_it) == 6, endpoint
        assert overlapping(of_it) >= 3, endpoint
    assert check_final_state(config, emulator, KEYS) == {"written": len(KEYS)}


@pytest.mark.parametrize("cut", ["chunks", "request_files"])
def test_a_cycles_first_create_goes_alone_even_when_a_later_batch_is_ready_first(
    tmp_path: Path, emulator: Emulator, cut: str
) -> None:
    """The first batch's request file uploads slowly; the later ones are ready before it, and
    still wait: a quota storm or a refusal would stop the project before they were created.
    The six batches are six chunks (the admission waits for the first before the next), or one
    chunk cut into six request files by bytes (their creates wait for the first)."""
    slow_first = {"endpoint": "files.upload", "match": "gb-*-001-requests", "delay": 0.5}
    emulator.policy = {"faults": [slow_first]}
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(write_config(tmp_path, emulator.url))
    line = line_bytes(tmp_path, config, KEYS[0])
    batching = {"batch_size": 2 if cut == "chunks" else 12, "max_active_batches": 6}
    uploads = {"image_transport": "inline", "max_request_file_bytes": 2 * line + line // 2}
    config = load_config(write_config(tmp_path, emulator.url, batching=batching, uploads=uploads))

    run(config, max_cycles=1, api_key=API_KEY)

    creates = sorted((c for c in spans(emulator) if c[0] == "batches.create"), key=lambda c: c[1])
    assert len(creates) == 6 and all(creates[0][2] <= later[1] for later in creates[1:])
    submitted = [e for e in events(config) if isinstance(e, BatchSubmitted)]
    assert submitted[0].display_name.endswith("-001")


def test_after_a_quota_answer_to_the_first_create_no_other_chunk_is_even_prepared(
    tmp_path: Path, emulator: Emulator
) -> None:
    """A 429 on the cycle's first create holds the project back: the next chunks' images are
    not uploaded meanwhile (they would wait on the File API for nothing)."""
    emulator.policy = {"faults": [{"endpoint": "batches.create", "status": 429, "times": 1}]}
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(
        write_config(
            tmp_path,
            emulator.url,
            batching={"batch_size": 2, "max_active_batches": 6},
            uploads={"image_transport": "file_api"},
        )
    )

    run(config, max_cycles=1, api_key=API_KEY)

    uploads = emulator.policy.calls("files.upload")
    assert uploads == 2 + 1  # the first chunk's two images and its request file, nothing more
    assert sum(emulator.service.creates.values()) == 0


def one_chunk_cut_in_six(tmp_path: Path, emulator: Emulator) -> Config:
    """Twelve pages in one chunk, cut by bytes into six request files of two lines."""
    make_dataset(tmp_path / "input", KEYS)
    config = load_config(write_config(tmp_path, emulator.url))
    line = line_bytes(tmp_path, config, KEYS[0])
    batching = {"batch_size": 12, "max_active_batches": 6}
    uploads = {"image_transport": "inline", "max_request_file_bytes": 2 * line + line // 2}
    return load_config(write_config(tmp_path, emulator.url, batching=batching, uploads=uploads))


def test_a_refusal_that_stops_the_run_makes_no_other_create(
    tmp_path: Path, emulator: Emulator
) -> None:
    """A 404 to the first create (the model's name): the run stops with one error, and none of
    the chunk's other request files is created."""
    emulator.policy = {"faults": [{"endpoint": "batches.create", "status": 404}]}
    config = one_chunk_cut_in_six(tmp_path, emulator)
    with pytest.raises(GatewayError, match="model"):
        run(config, max_cycles=1, api_key=API_KEY)
    assert len([c for c in spans(emulator) if c[0] == "batches.create"]) == 1
    assert len([e for e in events(config) if isinstance(e, BatchSubmissionIntended)]) == 1


def test_when_the_first_never_reaches_its_create_the_next_create_still_goes_alone(
    tmp_path: Path, emulator: Emulator
) -> None:
    """The first request file is refused by the File API (its pages wait); of the others, the
    first create goes alone, and only once it went through do the rest overlap."""
    refused = {"endpoint": "files.upload", "match": "gb-*-001-requests", "status": 400}
    slow = {"endpoint": "batches.create", "delay": 0.15}
    emulator.policy = {"faults": [refused, slow]}
    config = one_chunk_cut_in_six(tmp_path, emulator)
    run(config, max_cycles=1, api_key=API_KEY)
    creates = sorted((c for c in spans(emulator) if c[0] == "batches.create"), key=lambda c: c[1])
    assert len(creates) == 5
    assert all(creates[0][2] <= later[1] for later in creates[1:])
    assert overlapping(creates[1:]) > 0
