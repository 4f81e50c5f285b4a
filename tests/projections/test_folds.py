"""The folds, pure: no database, just events into in-memory tables."""

from __future__ import annotations

from typing import Any

from eventlog.events import Event
from eventlog.store import Recorded
from projections import SPECS, MemoryTables, evolve
from tests.scenario import A, B, C, D, scenario


def _fold(groups: list[tuple[str, list[Event]]]) -> MemoryTables:
    tables = MemoryTables(SPECS)
    seq = 0
    for actor, group in groups:
        for event in group:
            seq += 1
            rec = Recorded(
                seq,
                f"2026-01-01T00:00:{seq:02d}.000000Z",
                type(event).__name__,
                event.stream(),
                actor,
                1,
                event,
                "",
            )
            evolve(tables, rec)
    return tables


def _table(t: MemoryTables, name: str) -> list[dict[str, Any]]:
    spec = t.specs[name]
    return [dict(zip(spec.columns, r, strict=True)) for r in t.rows(spec)]


def _status(t: MemoryTables) -> dict[str, str]:
    return {r["record_key"]: r["status"] for r in _table(t, "record_status")}


def _upto(n: int) -> MemoryTables:
    return _fold(scenario()[:n])


def test_submission_reserves_then_holds_records() -> None:
    t = _fold([scenario()[3]])  # intent + submitted
    assert [r["batch_id"] for r in _table(t, "inflight_records")] == ["batches/b1"] * 3
    assert _table(t, "submission_intents") == []
    assert _table(t, "active_batches")[0]["record_count"] == 3
    assert len(_table(t, "batch_record_keys")) == 3


def test_an_open_intent_reserves_records_without_a_batch() -> None:
    t = _fold(scenario())
    assert [(r["record_key"], r["batch_id"]) for r in _table(t, "inflight_records")] == [(B, None)]
    assert [r["display_name"] for r in _table(t, "submission_intents")] == ["gb-r2-2"]
    assert _status(t)[B] == "reserved"


def test_a_failed_batch_frees_its_records_without_counting_a_failure() -> None:
    t = _upto(6)
    assert _table(t, "active_batches") == []
    assert _table(t, "inflight_records") == []
    assert _table(t, "batch_record_keys") == []
    assert _table(t, "failure_counts") == []
    assert set(_status(t).values()) == {"pending"}


def test_results_write_fail_and_count() -> None:
    t = _upto(8)
    assert _status(t) == {A: "written", B: "failed", C: "failed", D: "written"}
    counts = {r["record_key"]: r["count"] for r in _table(t, "failure_counts")}
    assert counts == {B: 1, C: 1}
    assert _table(t, "active_batches") == [] and _table(t, "inflight_records") == []


def test_failures_climb_to_a_dead_letter_with_attempt_numbers_logged() -> None:
    t = _upto(12)
    assert _status(t)[B] == "dead_lettered"
    logs = [(r["record_key"], r["attempt"], r["error_type"]) for r in _table(t, "failure_logs")]
    assert [x for x in logs if x[0] == B] == [
        (B, 1, "schema_violation"),
        (B, 2, "schema_violation"),
        (B, 3, "missing_line"),
    ]
    b_row = next(r for r in _table(t, "failure_logs") if r["record_key"] == B)
    assert (b_row["state"], b_row["school"], b_row["year"], b_row["page"]) == (
        "California",
        "LincolnHigh",
        2023,
        2,
    )


def test_a_reset_clears_counts_and_revives_the_dead_letter_but_keeps_the_logs() -> None:
    t = _upto(14)
    assert _status(t)[B] == "pending"
    assert [r["record_key"] for r in _table(t, "failure_counts")] == [C]
    assert len(_table(t, "failure_logs")) == 4


def test_a_cleared_batch_frees_its_records() -> None:
    t = _upto(16)
    assert _table(t, "active_batches") == []
    assert _table(t, "inflight_records") == []
    assert _status(t)[B] == "pending"


def test_a_page_that_went_out_in_a_batch_has_no_upload_failures_left() -> None:
    """A failed request-file upload charges every page of it, inline ones too; those never get
    a FileUploaded of their own, so the batch that carried them clears the budget ("since its
    last success"); a page not in the batch keeps its count."""
    from eventlog.events import BatchSubmitted, UploadAbandoned

    charged: list[Event] = [
        UploadAbandoned(record_key=k, attempts=2, message="503") for k in (A, B)
    ]
    t = _fold([("run:r", charged)])
    assert {r["record_key"]: r["failed_attempts"] for r in _table(t, "upload_budget")} == {
        A: 2,
        B: 2,
    }
    submitted = BatchSubmitted(
        batch_id="batches/x", display_name="gb-x", model="m", record_keys=[A], transport="inline"
    )
    t = _fold([("run:r", [*charged, submitted])])
    assert [(r["record_key"], r["failed_attempts"]) for r in _table(t, "upload_budget")] == [(B, 2)]
