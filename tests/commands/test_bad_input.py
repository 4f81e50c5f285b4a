"""Bad input, through the real program: a one-line error, a non-zero exit, no traceback, and the
database file byte-for-byte unchanged."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from eventlog.schema import SCHEMA_VERSION
from projections import open_store
from tests.conftest import file_digest, run_cli
from tests.scenario import scenario


def _populate(db: Path) -> None:
    s = open_store(db, create=True)
    for actor, group in scenario():
        s.append(group, actor=actor)
    s.close()


def _empty(db: Path) -> None:
    db.write_bytes(b"")


def _garbage(db: Path) -> None:
    db.write_bytes(b"\x00\x01 definitely not sqlite " * 200)


def _corrupt(db: Path) -> None:
    _populate(db)
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xee" * (4096 - 100)  # smash the first page's b-tree
    db.write_bytes(bytes(data))


def _foreign(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()


def _newer(db: Path) -> None:
    _populate(db)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()


CASES: list[tuple[str, Callable[[Path], None] | None, list[str], str]] = [
    ("missing db", None, ["status"], "database not found"),
    ("empty db", _empty, ["status"], "database file is empty (0 bytes)"),
    ("not sqlite", _garbage, ["analyze-failures"], "not a usable SQLite database"),
    ("corrupt", _corrupt, ["status"], "not a usable SQLite database"),
    ("foreign db", _foreign, ["reset-failures", "--all"], "not a gemini-batches database"),
    ("newer schema", _newer, ["status"], "written by a newer version of this tool"),
    ("unknown flag", _populate, ["status", "--frobnicate"], "No such option '--frobnicate'"),
    ("unknown command", _populate, ["explode"], "No such command 'explode'"),
    (
        "bad flag value",
        _populate,
        ["reset-failures", "--year-start", "soon"],
        "'soon' is not a valid integer",
    ),
    (
        "year past 64 bits",
        _populate,
        ["reset-failures", "--year-start", "99999999999999999999"],
        "--year-start 99999999999999999999 is not a year: a year is 0 to 9223372036854775807",
    ),
    (
        "filter matches nothing",
        _populate,
        ["reset-failures", "--states", "Atlantis"],
        "no failure counts match --states Atlantis",
    ),
    ("unknown batch", _populate, ["clear-batch", "batches/zzz"], "no active batch"),
    (
        "unwritable csv",
        _populate,
        ["analyze-failures", "--export-csv", "/proc/nope/f.csv"],
        "cannot write --export-csv /proc/nope/f.csv",
    ),
    ("nuke without a flag", _populate, ["nuke"], "exactly one of --dry-run or --confirm"),
]


@pytest.mark.parametrize(
    ("make", "args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_one_line_nonzero_and_changes_nothing(
    db_path: Path, make: Callable[[Path], None] | None, args: list[str], message: str
) -> None:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if make is not None:
        make(db_path)
    before = file_digest(db_path) if db_path.exists() else None
    r = run_cli("--db", str(db_path), *args)
    assert r.code != 0
    assert r.err.startswith("Error: ") and r.err.count("\n") == 1, r.err
    assert message in r.err
    assert "Traceback" not in r.err + r.out
    if before is None:
        assert not db_path.exists()
    else:
        assert file_digest(db_path) == before


REPLAY_CASES = [
    (["--until", "0"], "before the first event"),
    (["--until", "100000"], "in the future"),
    (["--until", "1999-01-01T00:00:00Z"], "before the first event"),
    (["--until", "2999-01-01T00:00:00Z"], "in the future"),
    (["--show", "everything"], "Invalid value for '--show'"),
    (["--bogus"], "No such option '--bogus'"),
]


@pytest.mark.parametrize(("args", "message"), REPLAY_CASES)
def test_replay_bad_input_is_one_line_and_changes_nothing(
    db_path: Path, args: list[str], message: str
) -> None:
    _populate(db_path)
    before = file_digest(db_path)
    r = run_cli("--db", str(db_path), *args, script="replay.py")
    assert r.code != 0 and r.err.count("\n") == 1 and message in r.err, r.err
    assert file_digest(db_path) == before


def test_replay_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    r = run_cli("--db", str(tmp_path / "none.db"), script="replay.py")
    assert r.code == 1 and r.err.startswith("Error: database not found")
    assert not (tmp_path / "none.db").exists()


SCHEMAS = {
    "callable_field": (
        "from collections.abc import Callable\nfrom pydantic import BaseModel\n\n"
        "class Page(BaseModel):\n    text: str\n    hook: Callable[[int], int]\n",
        "'badschema:Page' cannot produce a JSON schema (PydanticInvalidForJsonSchema: Cannot "
        "generate a JsonSchema for core_schema.CallableSchema)",
    ),
    "raises": (
        "from pydantic import BaseModel\n\nclass Page(BaseModel):\n    text: str\n\n"
        "    @classmethod\n    def model_json_schema(cls, *a, **k):\n"
        "        raise RuntimeError('no schema today\\nsecond line')\n",
        "'badschema:Page' cannot produce a JSON schema (RuntimeError: no schema today)",
    ),
}


@pytest.mark.parametrize("kind", sorted(SCHEMAS))
@pytest.mark.parametrize("command", [["run", "--once"], ["run", "--until-idle"], ["estimate"]])
def test_a_schema_without_a_json_schema_is_refused_before_the_run_starts(
    tmp_path: Path, populated: Path, kind: str, command: list[str]
) -> None:
    source, message = SCHEMAS[kind]
    (tmp_path / "badschema.py").write_text(source)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[paths]\ndatabase = "{populated}"\ninput_root = "in"\noutput_root = "out"\n'
        '[gemini]\noutput_schema = "badschema:Page"\napi_key_env = "K"\n'
    )
    (tmp_path / "in/S/X/2020").mkdir(parents=True)
    (tmp_path / "in/S/X/2020/1.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    before = file_digest(populated)
    r = run_cli("--config", str(config), *command, env={"K": "secret"})
    assert r.code == 1, r.err
    assert r.err == f"Error: [gemini] output_schema: {message}\n"
    assert file_digest(populated) == before  # no RunStarted, nothing else either
    assert not (tmp_path / "out").exists()
