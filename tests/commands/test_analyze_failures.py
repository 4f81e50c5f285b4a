from __future__ import annotations

import csv
from pathlib import Path

from projections import open_store, queries
from tests.commands.conftest import invoke
from tests.conftest import file_digest, run_cli
from tests.scenario import B, C, failed_then_written


def test_summary_is_the_default(populated: Path) -> None:
    out = invoke(populated, "analyze-failures").output
    assert "failures logged        4" in out
    assert "records that failed    2" in out
    assert "records failing now    0" in out  # B was reset; C was written (its count is history)
    assert "schema_violation  2" in out


def test_by_error_type_state_and_school(populated: Path) -> None:
    out = invoke(populated, "analyze-failures", "--by-error-type").output
    assert "schema_violation  2         1" in out and "invalid_json      1         1" in out
    out = invoke(populated, "analyze-failures", "--by-state").output
    assert "California  3         1" in out and "Texas       1         1" in out
    out = invoke(populated, "analyze-failures", "--by-school").output
    assert "California  LincolnHigh  3" in out


def test_one_record_shows_status_count_and_attempts(populated: Path) -> None:
    out = invoke(populated, "analyze-failures", "--record-key", B).output
    assert f"{B}: reserved, 0/3 failures" in out
    assert "1/3" in out and "3/3" in out and "missing_line" in out
    out = invoke(populated, "analyze-failures", "--record-key", C).output
    assert f"{C}: written, 1/3 failures" in out


def test_an_unknown_record_is_a_one_line_error(populated: Path) -> None:
    result = invoke(populated, "analyze-failures", "--record-key", "Nowhere:X:2020:1")
    assert result.exit_code == 1 and "nothing about record" in result.output


def test_export_csv_writes_every_failure_row(populated: Path, tmp_path: Path) -> None:
    target = tmp_path / "failures.csv"
    result = invoke(populated, "analyze-failures", "--export-csv", str(target))
    assert result.exit_code == 0 and "wrote 4 failure row(s)" in result.output
    rows = list(csv.DictReader(target.open()))
    assert [r["record_key"] for r in rows].count(B) == 3
    assert {"seq", "state", "school", "year", "page", "error_type", "attempt"} <= set(rows[0])


def test_export_under_a_file_is_a_clear_error(populated: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke(populated, "analyze-failures", "--export-csv", str(blocker / "f.csv"))
    assert result.exit_code == 1 and "cannot write --export-csv" in result.output
    assert "Not a directory" in result.output


def test_export_to_a_missing_folder_is_a_clear_error_and_the_log_is_unchanged(
    populated: Path, tmp_path: Path
) -> None:
    before = file_digest(populated)
    result = invoke(
        populated,
        "analyze-failures",
        "--export-csv",
        str(tmp_path / "no" / "such" / "dir" / "f.csv"),
    )
    assert result.exit_code == 1
    assert "cannot write --export-csv" in result.output and "No such file" in result.output
    assert file_digest(populated) == before


def test_the_seed_script_takes_the_seed_flags(populated: Path, tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[paths]\ndatabase = "{populated}"\n')
    env = {"GEMINI_BATCHES_CONFIG": str(config)}
    for flags in (
        ["--summary"],
        ["--by-error-type"],
        ["--by-state"],
        ["--by-school"],
        ["--record-key", B],
        ["--export-csv", str(tmp_path / "x.csv")],
    ):
        r = run_cli(*flags, script="scripts/analyze_failures.py", env=env)
        assert r.code == 0, (flags, r.err)
    assert (tmp_path / "x.csv").exists()


def _failed_then_written(db: Path) -> Path:
    s = open_store(db, create=True)
    for actor, group in failed_then_written():
        s.append(group, actor=actor)
    s.close()
    return db


def test_failing_now_counts_only_pages_neither_written_nor_dead_lettered(db_path: Path) -> None:
    db = _failed_then_written(db_path)
    out = invoke(db, "analyze-failures", "--summary").output
    assert "failures logged        7" in out
    assert "records that failed    4" in out
    # Two of the four were written later and one is a dead letter (its own line): one is failing.
    assert "records failing now    1" in out, out
    assert "dead letters           1" in out
    # The same number as status's "retrying" line (the same rule).
    with open_store(db) as s:
        assert sum(n for _, n in queries.failing_by_count(s)) == 1
