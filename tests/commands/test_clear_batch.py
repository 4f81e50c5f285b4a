from __future__ import annotations

from pathlib import Path

from eventlog.events import BatchCleared
from projections import open_store, verify
from tests.commands.conftest import invoke
from tests.conftest import file_digest
from tests.reads import scalar
from tests.scenario import B, scenario


def _db_with_active_batch(db: Path) -> None:
    s = open_store(db, create=True)
    for actor, group in scenario()[:15]:  # b5 is active, holding B
        s.append(group, actor=actor)
    s.close()


def test_clear_batch_appends_the_clear_and_frees_its_records(db_path: Path) -> None:
    _db_with_active_batch(db_path)
    result = invoke(
        db_path,
        "clear-batch",
        "batches/b5",
        "--reason",
        "stuck 3 days",
        env={"GEMINI_BATCHES_ACTOR": "bob@ops"},
    )
    assert result.exit_code == 0, result.output
    assert "cleared batch batches/b5: 1 record(s) freed" in result.output
    s = open_store(db_path)
    last = list(s.read())[-1]
    assert last.event == BatchCleared(batch_id="batches/b5", reason="stuck 3 days")
    assert last.actor == "operator:bob@ops clear-batch"
    assert scalar(s, "SELECT count(*) FROM active_batches") == 0
    assert scalar(s, "SELECT count(*) FROM inflight_records") == 0
    assert scalar(s, "SELECT status FROM record_status WHERE record_key = ?", (B,)) == "pending"
    assert verify(s) is None
    s.close()


def test_clear_batch_also_gives_up_an_open_submission_intent(populated: Path) -> None:
    result = invoke(populated, "clear-batch", "gb-r2-2")
    assert result.exit_code == 0 and "cleared intent gb-r2-2: 1 record(s) freed" in result.output
    s = open_store(populated)
    assert scalar(s, "SELECT count(*) FROM submission_intents") == 0
    s.close()


def test_an_unknown_batch_is_a_one_line_error_and_nothing_is_appended(populated: Path) -> None:
    before = file_digest(populated)
    result = invoke(populated, "clear-batch", "batches/nope")
    assert result.exit_code == 1
    assert "no active batch or open submission named 'batches/nope'" in result.output
    assert file_digest(populated) == before
