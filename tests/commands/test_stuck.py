"""What may be stuck (pure): each kind marked only past its threshold, oldest first, and the
same marks in ``status``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from commands.cli.render import status_text
from commands.config import Config
from commands.rules.stuck import marks
from commands.views.status import status
from eventlog.events import BatchSubmissionIntended
from projections import open_store

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_each_kind_is_marked_only_past_its_threshold_oldest_first() -> None:
    found = marks(
        NOW,
        batches=[
            ("batches/old", "JOB_STATE_RUNNING", "2026-12-05T11:00:00.000000Z"),  # 25 h: marked
            ("batches/new", "JOB_STATE_RUNNING", "2026-12-05T13:00:00.000000Z"),  # 23 h: not
        ],
        intents=[("gb-1", "2026-12-06T10:30:00.000000Z"), ("gb-2", "2026-12-06T11:30:00.000000Z")],
        holds=[("default", "2026-12-06T10:00:00.000000Z")],
        lapsed_workers=[("w2", "2026-12-06T11:58:00.000000Z")],
        last_event_at="2026-12-06T10:45:00.000000Z",
    )
    assert [(m.kind, m.name, m.age_hours) for m in found] == [
        ("batch", "batches/old", 25.0),
        ("quota hold", "default", 2.0),
        ("intent", "gb-1", 1.5),
        ("log", "last event", 1.25),
        ("worker", "w2", 0.03),
    ]
    assert found[0].why == "JOB_STATE_RUNNING for over 24 h"


def quiet_since(
    last_event_at: str, intents: list[tuple[str, str]], minutes: float = 60
) -> list[str]:
    found = marks(
        NOW,
        batches=[],
        intents=intents,
        holds=[],
        lapsed_workers=[],
        last_event_at=last_event_at,
        minutes=minutes,
    )
    return [m.kind for m in found]


def test_a_quiet_log_is_marked_only_while_work_is_outstanding() -> None:
    long_ago = "2026-12-01T00:00:00.000000Z"
    assert quiet_since(long_ago, []) == []  # an idle job is not stuck
    waiting = [("gb", "2026-12-06T11:59:00.000000Z")]
    assert quiet_since(long_ago, waiting) == ["log"]
    assert quiet_since("2026-12-06T11:00:00.000000Z", waiting, minutes=600) == []


def test_status_marks_an_open_intent_past_the_threshold(tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    store = open_store(db, create=True)
    try:
        store.append(
            [BatchSubmissionIntended(display_name="gb-x", model="m", record_keys=["S:Sc:2020:1"])],
            actor="run:r1",
        )
        quiet = status(store, Config(), scan=False)
        marked = status(store, Config(), scan=False, stuck_after=0)
    finally:
        store.close()
    assert quiet.stuck == []
    assert [(m.kind, m.name) for m in marked.stuck] == [("intent", "gb-x"), ("log", "last event")]
    text = status_text(marked)
    assert "stuck?        2 thing(s) older than their threshold" in text
    assert "  intent gb-x: since " in text
