"""Property: for any valid life of the pipeline, the projections kept incrementally inside each
append transaction equal the ones rebuilt from the log, at the end and after every group."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from eventlog.events import Event
from projections import fold, memory_rows, rebuild, snapshot_rows, verify
from tests.backends import Backend
from tests.strategies import event_groups


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=event_groups())
def test_incremental_projections_equal_a_rebuild_after_every_group(
    backend: Backend, groups: list[list[Event]]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = backend.open(Path(tmp) / "p.db", create=True)
        captures = []
        for group in groups:
            store.append(group, actor="prop")
            captures.append((store.last_seq(), snapshot_rows(store)))
        for seq, live in captures:
            folded = fold(store.read(until_seq=seq))
            assert folded.last == seq
            assert memory_rows(folded.tables) == live
        assert verify(store) is None
        final = snapshot_rows(store)
        rebuild(store)
        assert snapshot_rows(store) == final
        store.close()
