"""A run stopped (Ctrl+C) while a request file is being written on the file pool: the file that
thread finishes is deleted when the stage unwinds, not left beside the database (nothing sweeps
local request files later)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from commands.config import load_config
from commands.worker import request_files
from commands.worker.session import run
from gemini_emulator import Emulator
from tests.pipeline import API_KEY, keys_for, make_dataset, write_config


def test_a_request_file_half_written_when_the_run_stops_is_deleted(
    tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_dataset(tmp_path / "input", keys_for(1, 1, 1, 6))
    config = load_config(
        write_config(tmp_path, emulator.url, uploads={"image_transport": "inline"})
    )
    lines = request_files.LineMaker.__call__
    made: list[int] = []

    def slow_line(self: request_files.LineMaker, *args: Any) -> bytes | None:
        made.append(1)
        if len(made) == 2:  # the file is being written: the operator presses Ctrl+C
            assert threading.current_thread() is not threading.main_thread()
            signal.raise_signal(signal.SIGINT)
            time.sleep(0.3)  # the thread goes on writing meanwhile
        return lines(self, *args)

    monkeypatch.setattr(request_files.LineMaker, "__call__", slow_line)
    result = run(config, api_key=API_KEY)
    assert result.outcome == "interrupted" and len(made) >= 2
    left = sorted(p.name for p in config.paths.database.parent.glob(".requests-*"))
    assert left == [], left
