"""``replay.py``'s text fits the terminal: tables wider than it turn into one block per row, long
values are cut with "..."; ``--json`` keeps every value whole. Run as a real program, with stdout
a pipe (100 columns), ``COLUMNS`` set, and a real pseudo-terminal of a given size."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from eventlog.events import BatchSubmissionIntended, BatchSubmitted, RecordFailed
from projections import open_store
from tests.conftest import ROOT, run_cli
from tests.scenario import scenario

#: A page whose school has a long name (the key rule allows it), and a failure with a long message.
LONG = f"California:{'Lincoln' * 30}High:2023:7"
MESSAGE = "the model answered " + "not JSON, " * 40 + "end"


@pytest.fixture
def wide_log(db_path: Path) -> Path:
    """The scenario, then a batch holding LONG (event ``HELD``) whose page fails (the last)."""
    s = open_store(db_path, create=True)
    for actor, group in scenario():
        s.append(group, actor=actor)
    s.append(
        [
            BatchSubmissionIntended(display_name="gb-long", model="m", record_keys=[LONG]),
            BatchSubmitted(
                batch_id="batches/long", display_name="gb-long", model="m", record_keys=[LONG]
            ),
        ],
        actor="run:r3",
    )
    s.append(
        [RecordFailed(record_key=LONG, batch_id="batches/long", error_type="x", message=MESSAGE)],
        actor="run:r3",
    )
    s.close()
    return db_path


HELD = 39  # the BatchSubmitted of LONG: it is in flight, its batch active


def _lines_fit(text: str, width: int) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} line(s) over {width} columns, e.g. {long[0]!r}"


@pytest.mark.parametrize(
    "args",
    [
        ["--until", str(HELD)],
        ["--until", "10"],  # an active batch of the scenario: the widest view
        [],
        ["--record", LONG],
        ["--record", "California:LincolnHigh:2023:2"],
    ],
)
def test_every_line_fits_100_columns_when_stdout_is_not_a_terminal(
    wide_log: Path, args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    r = run_cli("--db", str(wide_log), *args, script="replay.py")
    assert r.code == 0, r.err
    _lines_fit(r.out, 100)
    assert len(r.out.splitlines()) > 3


def test_columns_narrows_it_and_the_values_are_cut_not_dropped(wide_log: Path) -> None:
    r = run_cli(
        "--db", str(wide_log), "--until", str(HELD), script="replay.py", env={"COLUMNS": "60"}
    )
    assert r.code == 0, r.err
    _lines_fit(r.out, 60)
    assert "batches/long" in r.out and LONG[:20] in r.out and "..." in r.out


def test_a_real_terminal_sets_the_width(wide_log: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 72, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "GEMINI_BATCHES_CONFIG")}
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "replay.py"), "--db", str(wide_log), "--record", LONG],
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert p.wait(timeout=60) == 0, p.stderr.read() if p.stderr else ""
    out = b"".join(chunks).decode().replace("\r\n", "\n")
    _lines_fit(out, 72)
    assert "RecordFailed" in out and "message=the model" in out


def test_json_keeps_every_value_whole(wide_log: Path) -> None:
    r = run_cli("--db", str(wide_log), "--until", str(HELD), "--json", script="replay.py")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    assert LONG in [row["record_key"] for row in shown["inflight"]]
    r = run_cli("--db", str(wide_log), "--record", LONG, "--json", script="replay.py")
    history = json.loads(r.out)["history"]
    assert history[-1]["event"]["message"] == MESSAGE
    r = run_cli("--db", str(wide_log), "--json", script="replay.py")
    assert LONG in [row["record_key"] for row in json.loads(r.out)["failures"]]
