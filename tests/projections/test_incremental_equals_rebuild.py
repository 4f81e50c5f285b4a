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

#: Examples per backend: PostgreSQL's are slower (a fresh schema and its DDL each), so fewer.
EXAMPLES = {"sqlite": 120, "postgresql": 40}


def test_incremental_projections_equal_a_rebuild_after_every_group(backend: Backend) -> None:
    @settings(
        max_examples=EXAMPLES[backend.name],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(groups=event_groups())
    def check(groups: list[list[Event]]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = backend.open(backend.new_location(Path(tmp)), create=True)
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

    check()
