"""``verify`` folds the log into a scratch database on disk, a group of events at a time, so its
memory does not grow with the log; it names the first differing row of each table."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import apsw
import pytest

from eventlog.events import (
    BatchCompleted,
    BatchSubmissionIntended,
    BatchSubmitted,
    Event,
    FileDeleted,
    FileUploaded,
    RecordFailed,
    RecordValidated,
)
from eventlog.store import EventStore
from projections import differences, open_store, verify
from tests.backends import StoreFactory

PAGES = 100


def _batch(b: int) -> list[Event]:
    keys = [f"S{b % 5}:School{b}:2020:{p}" for p in range(PAGES)]
    files = [f"files/{b}-{p}" for p in range(PAGES)]
    name, batch = f"gb-{b}", f"batches/{b}"
    out: list[Event] = [
        FileUploaded(
            record_key=k, file_name=f, file_uri=f"u/{f}", mime_type="image/png", size_bytes=1
        )
        for k, f in zip(keys, files, strict=True)
    ]
    out += [
        BatchSubmissionIntended(display_name=name, model="m", record_keys=keys, files=files),
        BatchSubmitted(batch_id=batch, display_name=name, model="m", record_keys=keys),
    ]
    for p, key in enumerate(keys):
        if p % 10 == 3:
            out.append(RecordFailed(record_key=key, batch_id=batch, error_type="x", message="m"))
        else:
            out.append(RecordValidated(record_key=key, batch_id=batch, output_path=f"/o/{key}"))
    out.append(BatchCompleted(batch_id=batch, validated=90, failed=10))
    out += [FileDeleted(file_name=f) for f in files]
    return out


def _log(path: Path, batches: int) -> EventStore:
    store = open_store(path, create=True)
    for b in range(batches):
        store.append(_batch(b), actor="run:test")
    return store


def _peak(store: EventStore) -> int:
    tracemalloc.start()
    try:
        assert verify(store) is None
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_verify_memory_does_not_grow_with_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.verification as module

    monkeypatch.setattr(module, "GROUP", 1_000)
    small, large = _log(tmp_path / "n.db", 15), _log(tmp_path / "4n.db", 60)
    assert large.last_seq() > 4 * small.last_seq() - 100
    _peak(small)  # first-use allocations (caches of statements, handlers) out of the way
    peaks = (_peak(small), _peak(large))
    assert peaks[1] < 1.4 * peaks[0], peaks  # an in-memory fold grows about 4x
    small.close()
    large.close()


def test_the_scratch_database_is_a_file_beside_the_log_removed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import projections.verification as module

    store = _log(tmp_path / "data" / "log.db", 2)
    opened: list[Path] = []

    def spy(path: Path) -> apsw.Connection:
        opened.append(path)
        conn = real(path)
        assert conn.filename == str(path) and path.exists()  # on disk, not ":memory:"
        return conn

    real = module.connect_scratch
    monkeypatch.setattr(module, "connect_scratch", spy)
    assert verify(store) is None
    [path] = opened
    assert path.parent.parent == tmp_path / "data" and not path.parent.exists()
    store.close()


def test_verify_names_the_first_differing_row_of_each_table(store_factory: StoreFactory) -> None:
    store = store_factory()
    for b in range(3):
        store.append(_batch(b), actor="run:test")
    store_factory.backend.raw_execute(
        store_factory.location,
        "UPDATE projection_gate SET open = 1; "
        "UPDATE failure_counts SET count = 7 WHERE record_key = 'S1:School1:2020:3'; "
        "UPDATE failure_counts SET count = 8 WHERE record_key = 'S1:School1:2020:13'; "
        "DELETE FROM record_status WHERE record_key = 'S2:School2:2020:50'; "
        "UPDATE projection_gate SET open = 0;",
    )
    found = differences(store)
    assert [(d.table, d.key) for d in found] == [
        ("record_status", ["S2:School2:2020:50"]),
        ("failure_counts", ["S1:School1:2020:13"]),
    ]
    assert "missing from the live table" in found[0].describe()
    assert "differs: live" in found[1].describe() and ", 8, " in found[1].describe()
    assert verify(store) == found[0]
    assert store.last_seq() == 3 * len(_batch(0))  # the store still answers
