"""The emulator as a program: the ways it refuses to start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def emulator_program(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gemini_emulator", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("held_by", ["listening", "bound"])
def test_a_port_in_use_is_one_line_and_exit_1(held_by: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        if held_by == "listening":
            s.listen()
        port = s.getsockname()[1]
        p = emulator_program("--port", str(port))
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        f"gemini emulator: cannot listen on 127.0.0.1:{port}: port in use"
    ]
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_a_port_out_of_range_is_one_line() -> None:
    p = emulator_program("--port", "70000")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "70000" in p.stderr
