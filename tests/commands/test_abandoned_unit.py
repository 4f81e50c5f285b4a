"""Batches given up on and adopted late, in process (the fake port over the emulator's service,
a real store): two such batches holding the same records are looked at side by side, but one
result per record is adopted (the first wins), and its output is the one its event names."""

from __future__ import annotations

import hashlib
from pathlib import Path

from commands.gemini.requests import request_line
from commands.schema import PageExtraction
from commands.worker.abandoned import watch_abandoned
from commands.worker.context import Worker
from commands.worker.dataset import output_path
from eventlog.events import (
    BatchCleared,
    BatchSubmissionIntended,
    BatchSubmitted,
    RecordValidated,
    ResultDiscarded,
)
from gemini_emulator.service import Service
from tests.fakes import EmulatorPort, make_worker

KEYS = [f"Ohio:Lincoln:2020:{i}" for i in range(1, 301)]
MODEL = "gemini-2.5-flash"


def given_up(w: Worker, keys: list[str], n: int) -> str:
    """A batch of ``keys`` created on the service, logged as submitted, then cleared."""
    schema = PageExtraction.model_json_schema()
    body = b"".join(request_line(k, "Extract the page.", [], schema) for k in keys)
    name = f"gb-unit-{n:03d}"
    request = w.gateway.upload(body, mime_type="jsonl", display_name=f"{name}-requests")
    job = w.gateway.create_batch(model=MODEL, input_file=request.name, display_name=name)
    w.append([BatchSubmissionIntended(display_name=name, model=MODEL, record_keys=keys)])
    w.append([BatchSubmitted(batch_id=job.name, display_name=name, model=MODEL, record_keys=keys)])
    w.append([BatchCleared(batch_id=job.name, reason="given up on by the test")])
    return job.name


def test_two_batches_given_up_on_with_the_same_records_adopt_each_record_once(
    tmp_path: Path,
) -> None:
    w = make_worker(tmp_path, EmulatorPort(Service()), [])
    try:
        given_up(w, KEYS, 1)
        given_up(w, KEYS, 2)
        start = w.store.last_seq()

        w.pools.run(watch_abandoned(w))

        events = [r.event for r in w.store.read(after_seq=start)]
        validated = [e for e in events if isinstance(e, RecordValidated)]
        assert sorted(e.record_key for e in validated) == sorted(KEYS)  # each once
        discarded = [e for e in events if isinstance(e, ResultDiscarded)]
        assert sorted(e.record_key for e in discarded) == sorted(KEYS)  # the other, billed
        root = w.config.paths.output_root
        for e in validated:
            data = output_path(root, e.record_key).read_bytes()
            assert hashlib.sha256(data).hexdigest() == e.output_sha256
    finally:
        w.pools.close()
        w.store.close()
