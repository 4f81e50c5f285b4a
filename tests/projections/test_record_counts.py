"""``record_counts`` is ``record_status`` counted by status, after every group of any valid life
of the pipeline (kept incrementally; the rebuild's equality is the property of
``test_incremental_equals_rebuild.py``), and ``status``'s counts read it."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from eventlog.events import Event
from projections import open_store, queries
from tests.strategies import event_groups

BY_STATUS = "SELECT status, count(*) FROM record_status GROUP BY status ORDER BY status"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=event_groups())
def test_record_counts_are_record_status_counted(groups: list[list[Event]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "gb.db", create=True)
        try:
            for group in groups:
                store.append(group, actor="prop")
                counted = store.query("SELECT status, records FROM record_counts ORDER BY status")
                assert counted == store.query(BY_STATUS)
                c = queries.status_counts(store)
                by_status = dict(counted)
                assert (c.written, c.dead_letters) == (
                    by_status.get("written", 0),
                    by_status.get("dead_lettered", 0),
                )
        finally:
            store.close()
