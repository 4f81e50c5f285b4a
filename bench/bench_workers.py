"""Several workers on one log: end-to-end pages/s with 1, 2 and 3 worker processes
(``[workers] mode = "shared"``) and 1 vs 2 ``[[gemini.projects]]``, against the emulator (over HTTP
with the real SDK) holding per-key limits: each key may have ``MAX_JOBS`` jobs running and each
job takes ``JOB_SECONDS`` on the service, so the service's limit per project sets the pace, as it
does for real. The log is SQLite, and PostgreSQL too when a server can be had (tests/postgres.py
starts a throwaway one, or ``$GB_TEST_POSTGRES_URL``).

    uv run python bench/bench_workers.py            # BENCH_WORKER_PAGES=360 by default

Two settings (``BENCH_WORKER_SETTINGS``, default both): ``limits`` (360 pages, each key 2 jobs of
1 s: the service's limit sets the pace) and ``50ms`` (600 pages, every call answered after 50 ms,
each key 10 jobs of 0.2 s: room in the keys, so the workers' own pace shows). Beside each figure,
the batches each worker submitted (from the log).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, line

from commands.integrations.demo import png
from eventlog.actors import run_actor
from eventlog.events import BatchSubmitted, LeaseRenewed
from gemini_emulator import Emulator
from gemini_emulator.policy import ENDPOINTS
from projections import open_store
from tests.postgres import new_schema_url

STATES = 6
BATCH = 20
KEYS = {"a": "bench-workers-key-a", "b": "bench-workers-key-b"}


@dataclass(frozen=True)
class Setting:
    name: str
    pages: int
    max_jobs: int  # per key, on the service, and the config's per-project limit
    job_seconds: float
    latency: float  # every call answered after this long

    def describe(self) -> str:
        pace = f", {self.latency * 1000:.0f} ms a call" if self.latency else ""
        return f"{self.max_jobs} jobs per key, {self.job_seconds:g} s a job{pace}"


SETTINGS = {
    "limits": Setting("limits", int(os.environ.get("BENCH_WORKER_PAGES", "360")), 2, 1.0, 0.0),
    "50ms": Setting("50ms", 600, 10, 0.2, 0.05),
}


def _dataset(root: Path, pages: int) -> None:
    image = png(16, 16, 1)
    for i in range(pages):
        state, rest = divmod(i, pages // STATES)
        school, page = divmod(rest, 20)
        path = root / f"State{state}" / f"School{school}" / "2020" / f"{page + 1}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)


def _config(tmp: Path, url: str, projects: int, database_url: str, max_jobs: int) -> Path:
    text = (
        '[paths]\ninput_root = "input"\noutput_root = "output"\ndatabase = "data/log.db"\n'
        f'reports_dir = "data/reports"\n[database]\nurl = "{database_url}"\n'
        f'[gemini]\nbase_url = "{url}"\napi_key_env = "BENCH_KEY_A"\n'
        f"[batching]\nbatch_size = {BATCH}\nmax_active_batches = {max_jobs}\n"
        "poll_interval_seconds = 0.2\n"
        f'[workers]\nmode = "shared"\npartition_by = "state"\nlease_seconds = 20\n'
    )
    for name in list(KEYS)[:projects]:
        text += f'[[gemini.projects]]\nname = "{name}"\napi_key_env = "BENCH_KEY_{name.upper()}"\n'
    path = tmp / "c.toml"
    path.write_text(text)
    return path


def one_run(
    tmp: Path, setting: Setting, workers: int, projects: int, database_url: str
) -> tuple[float, dict[str, int]]:
    """Pages/s, and the batches each worker submitted."""
    _dataset(tmp / "input", setting.pages)
    half = setting.job_seconds / 2
    policy: dict = {
        "timing": {"pending_seconds": half, "running_seconds": half},
        "limits": [{"key": "*", "max_active_jobs": setting.max_jobs}],
    }
    if setting.latency:
        policy["faults"] = [{"endpoint": e, "delay": setting.latency} for e in ENDPOINTS]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **{f"BENCH_KEY_{n.upper()}": k for n, k in KEYS.items()},
    }
    with Emulator(policy, api_key=list(KEYS.values())) as emu:
        config = _config(tmp, emu.url, projects, database_url, setting.max_jobs)
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
    if written != setting.pages:
        raise RuntimeError(f"{written} of {setting.pages} pages written")
    return setting.pages / wall, _submitted_by_worker(database_url or str(tmp / "data/log.db"))


def _submitted_by_worker(location: str) -> dict[str, int]:
    """Batches created (``BatchSubmitted``) per worker, from the log."""
    store = open_store(location, write=False)
    try:
        runs: dict[str, str] = {}
        counts: Counter[str] = Counter()
        for rec in store.read():
            e = rec.event
            if isinstance(e, LeaseRenewed):
                runs[run_actor(e.run_id)] = e.worker
            elif isinstance(e, BatchSubmitted):
                counts[runs.get(rec.actor, rec.actor)] += 1
    finally:
        store.close()
    return dict(sorted(counts.items()))


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
    chosen = os.environ.get("BENCH_WORKER_SETTINGS", ",".join(SETTINGS)).split(",")
    with ExitStack() as stack:
        for backend, server in _backends(stack).items():
            for setting in (SETTINGS[name] for name in chosen):
                out += _table(backend, server, setting)
    return out


def _table(backend: str, server: str, setting: Setting) -> list[dict]:
    """1, 2 and 3 workers with 1 and 2 projects; ratios to 1 worker with as many projects."""
    out, rates = [], {}
    for projects in (1, 2):
        for workers in (1, 2, 3):
            with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
                url = new_schema_url(server) if server else ""
                rate, batches = one_run(Path(d), setting, workers, projects, url)
            rates[workers, projects] = rate
            out.append(
                line(
                    f"{backend}: {setting.pages} pages, {workers} worker(s), {projects} "
                    f"project(s) ({setting.describe()})",
                    rate,
                    "pages/s",
                    baseline=None if workers == 1 else rates[1, projects],
                    baseline_name=f"1 worker, {projects} project(s)",
                )
            )
            print(f"  batches submitted per worker: {batches}", flush=True)
    return out


if __name__ == "__main__":
    main()
