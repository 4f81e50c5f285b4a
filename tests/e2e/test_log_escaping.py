"""Log lines stay one line each whatever a name holds, and the bug message points at its
traceback where it is."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from commands.cli.app import EXIT_BUG, main
from commands.cli.logs import escape_controls
from gemini_emulator import Emulator
from tests.conftest import run_cli
from tests.pipeline import API_KEY, keys_for, make_dataset, write_config

HOSTILE = [
    "x\n2026-01-01 00:00:00,000 ERROR commands.run: forged line.png",
    "x\r\x1b[2Kred\x1b[31m.png",
    "x\u202egnp.exe",  # right-to-left override: hides the real ending
    "x\x07\x7f\x08.png",
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain é ü 北", "plain é ü 北"),
        ("a\nb", "a\\nb"),
        ("a\r\nb\tc", "a\\r\\nb\\tc"),
        ("\x1b[31m", "\\x1b[31m"),
        ("\u202e\u2028", "\\u202e\\u2028"),
    ],
)
def test_escape_controls(text: str, expected: str) -> None:
    assert escape_controls(text) == expected


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_names_with_control_characters_are_escaped_in_log_lines(
    tmp_path: Path, emulator: Emulator, fmt: str
) -> None:
    make_dataset(tmp_path / "input", keys_for(1, 1, 1, 2))
    folder = next((tmp_path / "input").glob("*/*/*"))
    for name in HOSTILE:
        (folder / name).write_bytes(b"not a page")
    config = write_config(tmp_path, emulator.url)
    r = run_cli(
        "--config", str(config), "--log-format", fmt, "-v", "run", "--until-idle",
        env={"E2E_GEMINI_KEY": API_KEY},
    )  # fmt: skip
    assert r.code == 0, r.err
    lines = r.err.splitlines()
    assert not any("forged line" in line and line.startswith("2026-01-01") for line in lines)
    assert not any(c in r.err for c in "\r\x1b\u202e\x07\x7f\x08")
    messages = [json.loads(line)["message"] for line in lines] if fmt == "json" else lines
    skipped = [m for m in messages if "Skipping" in m and str(folder) in m]
    assert len(skipped) == len(HOSTILE), messages
    for name in HOSTILE:
        assert sum(escape_controls(name) in m for m in skipped) == 1


def test_the_bug_line_says_the_traceback_follows(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    def broken() -> None:
        raise RuntimeError("a bug on purpose")

    with pytest.raises(SystemExit) as e:
        main([], command=broken)
    assert e.value.code == EXIT_BUG
    err = capsys.readouterr().err.splitlines()
    first = next(i for i, line in enumerate(err) if "internal error" in line)
    assert "traceback below" in err[first]
    assert err[first + 1].startswith("Traceback") and "RuntimeError: a bug on purpose" in err[-1]
