"""``python -m gemini_emulator --port N --policy F`` as a real process."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_as_a_program_with_a_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps({"faults": [{"endpoint": "files.list", "calls": [1], "status": 503}]})
    )
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gemini_emulator", "--port", str(port), "--policy", str(policy)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert f"127.0.0.1:{port}" in proc.stdout.readline()
        c = genai.Client(
            api_key="k", http_options=types.HttpOptions(base_url=f"http://127.0.0.1:{port}")
        )
        with pytest.raises(errors.ServerError):
            list(c.files.list())
        f = c.files.upload(file=io.BytesIO(b"\x89PNG\r\n\x1a\n"), config={"mime_type": "image/png"})
        assert f.name.startswith("files/")
        ledger = httpx.get(f"http://127.0.0.1:{port}/_emulator/ledger").json()
        assert ledger == {"billed": [], "creates": {}}
        now = httpx.post(
            f"http://127.0.0.1:{port}/_emulator/advance", json={"seconds": 3600}
        ).json()["now"]
        assert now > time.time() + 3500
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_bad_policy_file_is_refused_with_its_name(tmp_path: Path) -> None:
    policy = tmp_path / "p.json"
    policy.write_text(json.dumps({"faults": [{"endpoint": "nope"}]}))
    p = subprocess.run(
        [sys.executable, "-m", "gemini_emulator", "--policy", str(policy)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 2 and str(policy) in p.stderr and "unknown endpoint" in p.stderr
