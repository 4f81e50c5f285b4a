from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from eventlog.events import FailuresReset, ResetFilter
from projections import open_store, queries, verify
from tests.commands.conftest import invoke
from tests.conftest import file_digest, run_cli
from tests.scenario import DEAD, FAILING, WRITTEN_1, WRITTEN_2, C, failed_then_written


def _more_failures(db: Path) -> None:
    """Add failing records across states, schools and years."""
    from eventlog.events import RecordFailed

    keys = [
        "California:LincolnHigh:2019:1",
        "California:Roosevelt:2021:1",
        "Texas:Alamo:2022:5",
        "Nevada:Reno:2020:2",
    ]
    s = open_store(db)
    s.append(
        [
            RecordFailed(record_key=k, batch_id="batches/x", error_type="invalid_json", message="m")
            for k in keys
        ],
        actor="run:t",
    )
    s.close()


def _counts(db: Path) -> set[str]:
    s = open_store(db)
    keys = {r[0] for r in s.query("SELECT record_key FROM failure_counts")}
    s.close()
    return keys


def test_reset_by_state_school_and_years_appends_one_event_with_filter_keys_and_who(
    populated: Path,
) -> None:
    _more_failures(populated)
    result = invoke(
        populated,
        "reset-failures",
        "--states",
        "California",
        "Texas",
        "--schools",
        "LincolnHigh",
        "Alamo",
        "--year-start",
        "2020",
        "--year-end",
        "2023",
        env={"GEMINI_BATCHES_ACTOR": "alice@ops"},
    )
    assert result.exit_code == 0, result.output
    assert "reset failure counts of 2 record(s)" in result.output
    assert _counts(populated) == {
        "California:LincolnHigh:2019:1",
        "California:Roosevelt:2021:1",
        "Nevada:Reno:2020:2",
    }
    s = open_store(populated)
    last = list(s.read())[-1]
    assert last.actor == "operator:alice@ops reset-failures"
    assert last.event == FailuresReset(
        filter=ResetFilter(
            states=["California", "Texas"],
            schools=["LincolnHigh", "Alamo"],
            year_start=2020,
            year_end=2023,
        ),
        record_keys=[C, "Texas:Alamo:2022:5"],
    )
    assert verify(s) is None
    s.close()


def test_dry_run_lists_and_changes_nothing(populated: Path) -> None:
    _more_failures(populated)
    before = file_digest(populated)
    result = invoke(populated, "reset-failures", "--all", "--dry-run")
    assert result.exit_code == 0
    assert "would reset 5 record(s) matching --all" in result.output
    assert "Nevada:Reno:2020:2" in result.output and "1/3" in result.output
    assert file_digest(populated) == before


def test_all_resets_every_count_and_the_records_become_candidates(populated: Path) -> None:
    _more_failures(populated)
    assert invoke(populated, "reset-failures", "--all").exit_code == 0
    assert _counts(populated) == set()


def test_a_filter_matching_nothing_is_an_error_and_appends_nothing(populated: Path) -> None:
    before = file_digest(populated)
    result = invoke(populated, "reset-failures", "--states", "Atlantis")
    assert result.exit_code == 1
    assert "no failure counts match --states Atlantis" in result.output
    assert file_digest(populated) == before


def test_contradictory_or_empty_filters_are_refused(populated: Path) -> None:
    assert "nothing selected" in invoke(populated, "reset-failures").output
    assert (
        "cannot be combined" in invoke(populated, "reset-failures", "--all", "--states", "X").output
    )
    assert (
        "is after --year-end"
        in invoke(populated, "reset-failures", "--year-start", "2024", "--year-end", "2020").output
    )


def test_a_huge_reset_is_split_into_events_in_one_transaction(db_path: Path) -> None:
    from eventlog.events import RecordFailed

    s = open_store(db_path, create=True)
    keys = [f"S:X:2020:{i}" for i in range(12_000)]
    s.append(
        [RecordFailed(record_key=k, batch_id="b", error_type="e", message="m") for k in keys],
        actor="run",
    )
    s.close()
    assert invoke(db_path, "reset-failures", "--all").exit_code == 0
    s = open_store(db_path)
    resets = [r for r in s.read() if r.type == "FailuresReset"]
    assert len(resets) == 3 and len({r.ts for r in resets}) == 1
    assert sum(len(cast(FailuresReset, r.event).record_keys) for r in resets) == 12_000
    s.close()


def test_the_seed_script_takes_the_seed_flags(populated: Path, tmp_path: Path) -> None:
    _more_failures(populated)
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\n')
    env = {"GEMINI_BATCHES_CONFIG": str(config)}
    r = run_cli(
        "--states",
        "California",
        "--schools",
        "LincolnHigh",
        "Roosevelt",
        "--year-start",
        "2019",
        "--year-end",
        "2021",
        "--dry-run",
        script="scripts/clear_failure_counts.py",
        env=env,
    )
    assert r.code == 0, r.err
    assert "would reset 2 record(s)" in r.out
    r = run_cli("--all", script="scripts/clear_failure_counts.py", env=env)
    assert r.code == 0 and "reset failure counts of 5" in r.out
    # --db is taken too (issue 22): it reads the database just reset, where nothing is left.
    r = run_cli("--all", "--db", str(populated), script="scripts/clear_failure_counts.py")
    assert r.code == 1 and "no failure counts match --all" in r.err, r.err


def _rows(db: Path) -> dict[str, tuple[object, ...]]:
    s = open_store(db)
    rows = {r[0]: tuple(r) for r in s.query("SELECT * FROM failure_counts")}
    s.close()
    return rows


def test_states_alone_resets_that_state_and_leaves_every_other_count_untouched(
    populated: Path,
) -> None:
    _more_failures(populated)
    _more_failures(populated)  # two failures each: the counts differ from the populated one
    before = _rows(populated)
    others = {k: v for k, v in before.items() if not k.startswith("California:")}
    assert {k.split(":")[0] for k in others} == {"Texas", "Nevada"}
    assert len(before) - len(others) >= 2  # California has rows to reset
    result = invoke(populated, "reset-failures", "--states", "California")
    assert result.exit_code == 0, result.output
    assert f"reset failure counts of {len(before) - len(others)} record(s)" in result.output
    assert _rows(populated) == others  # every other state's rows, counts and all, unchanged
    s = open_store(populated)
    last = list(s.read())[-1].event
    assert isinstance(last, FailuresReset)
    assert last.filter == ResetFilter(states=["California"])
    assert all(k.startswith("California:") for k in last.record_keys)
    assert verify(s) is None
    s.close()


def test_dry_run_says_how_many_of_the_pages_it_would_reset_are_already_written(
    db_path: Path,
) -> None:
    s = open_store(db_path, create=True)
    for actor, group in failed_then_written():
        s.append(group, actor=actor)
    s.close()
    before = file_digest(db_path)
    result = invoke(db_path, "reset-failures", "--all", "--dry-run")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "would reset 4 record(s) matching --all" in out
    assert "2 of them already written" in out, out
    # The table tells them apart: each row says where its page stands.
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("Ohio")}
    assert {k: r[-1] for k, r in rows.items()} == {
        WRITTEN_1: "written",
        WRITTEN_2: "written",
        FAILING: "failed",
        DEAD: "dead_lettered",
    }
    assert file_digest(db_path) == before
    # The reset itself says it too; the written pages stay written (their counts were history).
    result = invoke(db_path, "reset-failures", "--all")
    assert "reset failure counts of 4 record(s) matching --all" in result.output
    assert "2 of them already written" in result.output
    s = open_store(db_path)
    assert queries.status_of(s, WRITTEN_1) == "written"
    assert verify(s) is None
    s.close()


def _give_up_uploads(db: Path, keys: list[str]) -> None:
    """Pages whose uploads failed until they were given up on (no failure count of their own),
    and one page per state whose upload failed once (a count of the budget, not given up)."""
    from eventlog.events import UploadAbandoned, UploadGivenUp

    s = open_store(db)
    for key in keys:
        s.append(
            [
                UploadAbandoned(record_key=key, attempts=3, message="503"),
                UploadGivenUp(record_key=key, path=f"{key}.png", attempts=3, reason="403"),
            ],
            actor="run:t",
        )
    s.close()


def _budget(db: Path) -> dict[str, tuple[int, int]]:
    """upload_budget: record key -> (failed attempts, given up)."""
    s = open_store(db)
    rows = {
        k: (n, g)
        for k, n, g in s.query("SELECT record_key, failed_attempts, given_up FROM upload_budget")
    }
    s.close()
    return rows


GIVEN_UP = {
    "California:LincolnHigh:2022:3": "California",
    "California:Roosevelt:2019:1": "California",
    "Texas:Alamo:2022:9": "Texas",
    "Nevada:Reno:2022:4": "Nevada",
}


@pytest.mark.parametrize(
    ("flags", "cleared"),
    [
        (
            ["--states", "California"],
            {"California:LincolnHigh:2022:3", "California:Roosevelt:2019:1"},
        ),
        (["--states", "Texas"], {"Texas:Alamo:2022:9"}),
        (["--schools", "Roosevelt"], {"California:Roosevelt:2019:1"}),
        (
            ["--year-start", "2020"],
            {"California:LincolnHigh:2022:3", "Texas:Alamo:2022:9", "Nevada:Reno:2022:4"},
        ),
        (["--states", "California", "--year-end", "2020"], {"California:Roosevelt:2019:1"}),
    ],
)
def test_the_filter_is_applied_to_given_up_uploads_in_every_state(
    populated: Path, flags: list[str], cleared: set[str]
) -> None:
    _more_failures(populated)
    _give_up_uploads(populated, list(GIVEN_UP))
    budget_before = _budget(populated)
    counts_before = _counts(populated)
    dry = invoke(populated, "reset-failures", *flags, "--dry-run")
    assert dry.exit_code == 0, dry.output
    listed = {line.split()[0] for line in dry.output.splitlines() if "upload_given_up" in line}
    assert listed == cleared
    result = invoke(populated, "reset-failures", *flags)
    assert result.exit_code == 0, result.output
    after = _budget(populated)
    # Only the filtered pages' given-up uploads are cleared; every other row is as it was.
    assert set(budget_before) - set(after) == cleared
    assert {k: v for k, v in budget_before.items() if k not in cleared} == after
    # The failure counts: those the filter selects go, the rest stay.
    s = open_store(populated)
    reset = cast(FailuresReset, list(s.read())[-1].event)
    assert cleared <= set(reset.record_keys)
    assert _counts(populated) == counts_before - set(reset.record_keys)
    # The fold of the log agrees with the live tables (replay agrees with the reset).
    assert verify(s) is None
    s.close()
