"""Several workers on one log: end-to-end pages/s with 1, 2 and 3 worker processes
(``[workers] mode = "shared"``) and 1 vs 2 ``[[gemini.projects]]``, against the emulator (over HTTP
with the real SDK) holding per-key limits: each key may have ``MAX_JOBS`` jobs running and each
job takes ``JOB_SECONDS`` on the service, so the service's limit per project sets the pace, as it
does for real. The log is SQLite, and PostgreSQL too when a server can be had (tests/postgres.py
starts a throwaway one, or ``$GB_TEST_POSTGRES_URL``).

    uv run python bench/bench_workers.py            # BENCH_WORKER_PAGES=360 by default
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from common import ROOT, line

from commands.integrations.demo import png
from gemini_emulator import Emulator
from tests.postgres import new_schema_url

PAGES = int(os.environ.get("BENCH_WORKER_PAGES", "360"))
STATES = 6
BATCH = 20
MAX_JOBS = 2
JOB_SECONDS = 1.0
KEYS = {"a": "bench-workers-key-a", "b": "bench-workers-key-b"}


def _dataset(root: Path) -> None:
    image = png(16, 16, 1)
    for i in range(PAGES):
        state, rest = divmod(i, PAGES // STATES)
        school, page = divmod(rest, 20)
        path = root / f"State{state}" / f"School{school}" / "2020" / f"{page + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)


def _config(tmp: Path, url: str, projects: int, database_url: str) -> Path:
    text = (
        '[paths]\ninput_root = "input"\noutput_root = "output"\ndatabase = "data/log.db"\n'
        f'reports_dir = "data/reports"\n[database]\nurl = "{database_url}"\n'
        f'[gemini]\nbase_url = "{url}"\napi_key_env = "BENCH_KEY_A"\n'
        f"[batching]\nbatch_size = {BATCH}\nmax_active_batches = {MAX_JOBS}\n"
        "poll_interval_seconds = 0.2\n"
        f'[workers]\nmode = "shared"\npartition_by = "state"\nlease_seconds = 20\n'
    )
    for name in list(KEYS)[:projects]:
        text += f'[[gemini.projects]]\nname = "{name}"\napi_key_env = "BENCH_KEY_{name.upper()}"\n'
    path = tmp / "c.toml"
    path.write_text(text)
    return path


def one_run(tmp: Path, workers: int, projects: int, database_url: str) -> float:
    _dataset(tmp / "input")
    policy = {
        "timing": {"pending_seconds": JOB_SECONDS / 2, "running_seconds": JOB_SECONDS / 2},
        "limits": [{"key": "*", "max_active_jobs": MAX_JOBS}],
    }
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **{f"BENCH_KEY_{n.upper()}": k for n, k in KEYS.items()},
    }
    with Emulator(policy, api_key=list(KEYS.values())) as emu:
        config = _config(tmp, emu.url, projects, database_url)
        command = [sys.executable, "-m", "commands", "--config", str(config), "run"]
        start = time.perf_counter()
        procs = [
            subprocess.Popen(
                [*command, "--until-idle", "--worker-id", f"w{i}"],
                cwd=tmp,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(workers)
        ]
        for p in procs:
            _, err = p.communicate(timeout=900)
            if p.returncode not in (0, 75):
                raise RuntimeError(f"worker exited {p.returncode}: {err[-2000:]}")
        wall = time.perf_counter() - start
    written = sum(1 for _ in (tmp / "output").rglob("*.json"))
    if written != PAGES:
        raise RuntimeError(f"{written} of {PAGES} pages written")
    return PAGES / wall


def _backends(stack: ExitStack) -> dict[str, str]:
    """The logs measured: SQLite, and a PostgreSQL server's URL when one can be had."""
    from tests.postgres import ENV_URL, NoServer, throwaway_server

    try:
        server = os.environ.get(ENV_URL) or stack.enter_context(throwaway_server())
    except NoServer as e:
        print(f"PostgreSQL: not measured ({e})", flush=True)
        return {"SQLite": ""}
    return {"SQLite": "", "PostgreSQL": server}


def main() -> list[dict]:
    out = []
    with ExitStack() as stack:
        for backend, server in _backends(stack).items():
            rates: dict[tuple[int, int], float] = {}
            for projects in (1, 2):
                for workers in (1, 2, 3):
                    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
                        url = new_schema_url(server) if server else ""
                        rates[workers, projects] = one_run(Path(d), workers, projects, url)
                    base = rates[1, 1]
                    out.append(
                        line(
                            f"{backend}: end to end, {PAGES} pages, {workers} worker(s), "
                            f"{projects} project(s) ({MAX_JOBS} jobs per key, {JOB_SECONDS:g} s "
                            "a job)",
                            rates[workers, projects],
                            "pages/s",
                            baseline=None if (workers, projects) == (1, 1) else base,
                            baseline_name="1 worker, 1 project",
                        )
                    )
    return out


if __name__ == "__main__":
    main()
