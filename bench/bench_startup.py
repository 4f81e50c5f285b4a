"""Start-up: ``python -m commands --help`` and ``status``, against importing the libraries they
stand on (``python -c "import apsw, msgspec, pydantic, click"``). google-genai is imported only
where it is used.

    uv run --group bench python bench/bench_startup.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import ROOT, line, median_time

from eventlog.events import RunStarted
from projections import open_store

RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "15"))
PYDANTIC_FLOOR = """
import apsw, msgspec, click
from pydantic import BaseModel
class Section(BaseModel):
    x: int = 1
Section()
"""


def timed(*args: str, cwd: Path = ROOT) -> float:
    """Median wall time of the command, in milliseconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return 1000 * median_time(
        lambda: subprocess.run(
            [sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, check=True
        ),
        repeats=RUNS,
    )


def run(tmp: Path) -> list[dict]:
    store = open_store(tmp / "data" / "gemini_batches.db", create=True)
    store.append([RunStarted(run_id="r")], actor="run:r")
    store.close()
    base = timed("-c", "import apsw, msgspec, pydantic, click")
    # The floor of any config validated by pydantic (DESIGN.md): ``import pydantic`` is lazy, so
    # the baseline above never loads the model machinery; one model defined and validated does.
    floor = timed("-c", PYDANTIC_FLOOR)
    helped = timed("-m", "commands", "--help")
    status = timed(
        "-m",
        "commands",
        "--db",
        str(tmp / "data" / "gemini_batches.db"),
        "status",
        "--no-scan",
        cwd=tmp,
    )
    return [
        line(
            "one pydantic model defined and validated (the floor of a pydantic config)",
            floor,
            "ms",
            base,
            "import apsw, msgspec, pydantic, click",
            "(for information)",
            higher_is_better=False,
        ),
        line(
            "python -m commands --help",
            helped,
            "ms",
            base,
            "import apsw, msgspec, pydantic, click",
            "<= 2x",
            higher_is_better=False,
        ),
        line(
            "python -m commands status",
            status,
            "ms",
            base,
            "import apsw, msgspec, pydantic, click",
            "<= 2x",
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
