"""``python -m gemini_emulator --port N --policy F`` as a real process."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest
from google import genai
from google.genai import errors, types

from gemini_emulator import spawn
from tests.conftest import ROOT


def test_runs_as_a_program_with_a_policy_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps({"faults": [{"endpoint": "files.list", "calls": [1], "status": 503}]})
    )
    with spawn(policy) as url:  # python -m gemini_emulator --port 0 --policy F
        assert url.startswith("http://127.0.0.1:")
        c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url))
        with pytest.raises(errors.ServerError):
            list(c.files.list())
        f = c.files.upload(file=io.BytesIO(b"\x89PNG\r\n\x1a\n"), config={"mime_type": "image/png"})
        assert f.name is not None and f.name.startswith("files/")
        ledger = httpx.get(f"{url}/_emulator/ledger").json()
        assert ledger == {"billed": [], "creates": {}}
        calls = httpx.get(f"{url}/_emulator/calls").json()  # every request answered, by endpoint
        assert calls == {"files.list": 1, "files.upload": 1, "files.upload_bytes": 1}
        # Each API call's span, in the order they ended (admin calls are not in it).
        timeline = httpx.get(f"{url}/_emulator/timeline").json()
        assert [name for name, _, _ in timeline] == ["files.list", "upload", "upload"]
        assert all(start <= end for _, start, end in timeline)
        assert timeline[0][2] <= timeline[1][1] <= timeline[1][2] <= timeline[2][1]
        now = httpx.post(f"{url}/_emulator/advance", json={"seconds": 3600}).json()["now"]
        assert now > time.time() + 3500


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
