"""Start-up: ``python -m commands --help`` and ``status``, against importing the libraries they
stand on (``python -c "import apsw, msgspec, pydantic, click"``). google-genai is imported only
where it is used. And a whole ``run --once`` with nothing to do (the emulator up, every page
written: the service asked, the tree scanned, the report written), against importing
google-genai alone; both again with no compiled bytecode (``-X pycache_prefix`` an empty folder,
``PYTHONDONTWRITEBYTECODE`` set: what every start paid before ``[tool.uv] compile-bytecode`` on a
machine that sets that variable).

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


def timed(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> float:
    """Median wall time of the command, in milliseconds."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
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
        *run_once(tmp),
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


def run_once(tmp: Path) -> list[dict]:
    """``run --once`` with nothing to do, compiled and not, against importing google-genai."""
    from commands.integrations.demo import png
    from gemini_emulator import Emulator

    work = tmp / "once"
    page = work / "input" / "S" / "School" / "2020" / "1.png"
    page.parent.mkdir(parents=True)
    page.write_bytes(png(8, 8, 1))
    out = []
    with Emulator(api_key="bench-key") as emu:
        (work / "c.toml").write_text(
            '[paths]\ninput_root = "input"\noutput_root = "output"\ndatabase = "data/log.db"\n'
            f'[gemini]\nbase_url = "{emu.url}"\napi_key_env = "BENCH_KEY"\n'
        )
        once = ("-m", "commands", "--config", str(work / "c.toml"), "-q", "run", "--once")
        key = {"BENCH_KEY": "bench-key"}
        subprocess.run(  # writes the page: every later run has nothing to do
            [sys.executable, *once], env={**os.environ, "PYTHONPATH": str(ROOT), **key}, check=True
        )
        empty = tmp / "no-pycache"
        cold = {"PYTHONDONTWRITEBYTECODE": "1"}
        for label, pre, env in (
            ("", (), key),
            (", no bytecode", ("-X", f"pycache_prefix={empty}"), {**key, **cold}),
        ):
            genai = timed(*pre, "-c", "import google.genai", env=env)
            ran = timed(*pre, *once, cwd=work, env=env)
            out.append(
                line(
                    f"run --once, nothing to do{label}",
                    ran,
                    "ms",
                    genai,
                    f"import google.genai{label}",
                    "(for information)",
                    higher_is_better=False,
                )
            )
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        run(Path(d))
