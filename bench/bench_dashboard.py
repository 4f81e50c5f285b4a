"""The operator's views on a months-long job's log (``dashboard_log``: 1M pages, about 3M events,
139 days): ``status`` (the CLI, no scan), every canned query and every card's query through
Datasette, and the dashboard page as a browser loads it (the HTML, then every card's JSON, six
at a time), against a target of 1 s each.

    uv run python bench/bench_dashboard.py                    # builds the log (~2 min)
    BENCH_DASHBOARD_DB=/tmp/big.db uv run python bench/bench_dashboard.py   # reuse one

Run by hand; not part of run_all.py (the build alone is two minutes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from common import REPEATS, ROOT, line, median_time
from dashboard_log import build

from commands.config import Config, load_config
from commands.integrations import dashboard
from projections import open_store

PAGES = int(os.environ.get("BENCH_DASHBOARD_PAGES", "1000000"))
TARGET = 1.0
DB = "bench"
#: A record of the log (``workload.key(7)``, which failed), for the queries that take one.
RECORD = "State0:School0:2000:8"


def _config(tmp: Path, db: Path) -> Path:
    path = tmp / "bench.toml"
    path.write_text(
        f'[paths]\ninput_root = "{tmp}/input"\noutput_root = "{tmp}/output"\n'
        f'database = "{db}"\nreports_dir = "{tmp}/reports"\n'
        '[gemini]\nmodel = "gemini-2.5-flash"\n'
    )
    return path


def _status(config: Path) -> list[dict]:
    cmd = [sys.executable, "-m", "commands", "--config", str(config), "status", "--no-scan"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def once(*extra: str) -> None:
        subprocess.run([*cmd, *extra], env=env, check=True, capture_output=True)

    return [
        line("status (CLI, no scan)", median_time(once), "s", target=f"< {TARGET:g} s"),
        line("status --json (CLI)", median_time(lambda: once("--json")), "s", target="< 1 s"),
    ]


def _through_datasette(config: Config, paths: dict[str, str]) -> dict[str, tuple[int, float]]:
    """(HTTP status, median seconds) of each path, through Datasette's own client."""

    async def main() -> dict[str, tuple[int, float]]:
        ds = dashboard.make_datasette(config)
        await ds.invoke_startup()
        out = {}
        for name, path in paths.items():
            times, code = [], 0
            for _ in range(max(1, REPEATS // 2 + 1)):
                start = time.perf_counter()
                r = await ds.client.get(path)
                times.append(time.perf_counter() - start)
                code = r.status_code
            out[name] = (code, sorted(times)[len(times) // 2])
        return out

    return asyncio.run(main())


def _queries(config: Config) -> list[dict]:
    key = urllib.parse.quote(RECORD)
    canned = {
        f"canned query {q.name}": f"/{DB}/{q.name}.json?_shape=objects&record_key={key}"
        for q in dashboard.queries_of(config)
    }
    cards = {
        f"card query {name}": f"/{DB}.json?_shape=objects&sql={urllib.parse.quote(c['query'])}"
        for name, c in dashboard.charts(config, DB).items()
    }
    pages = {"home page /": "/", f"database page /{DB}": f"/{DB}"}
    out = []
    for name, (code, seconds) in _through_datasette(config, {**canned, **cards, **pages}).items():
        out.append(line(f"{name} (HTTP {code})", seconds, "s", target=f"< {TARGET:g} s"))
    return out


def _page(config: Path, cfg: Config) -> list[dict]:
    """The dashboard page as a browser loads it: the HTML, then every card's JSON, six at a
    time (a browser's connections per host), through a served dashboard."""
    sys.path.insert(0, str(ROOT))
    from tests.commands.dashboard_helpers import served

    urls = [
        f"/{DB}.json?_shape=objects&sql={urllib.parse.quote(c['query'])}"
        for c in dashboard.charts(cfg, DB).values()
    ]

    def get(url: str) -> int:
        with urllib.request.urlopen(url, timeout=60) as r:
            r.read()
            return int(r.status)

    with served(config) as base, concurrent.futures.ThreadPoolExecutor(6) as pool:

        def load() -> None:
            assert get(f"{base}/-/dashboards/{dashboard.SLUG}") == 200
            assert all(c == 200 for c in pool.map(get, [base + u for u in urls]))

        seconds = median_time(load)
        drawn = _chromium(base, config.parent)
    out = [
        line(
            f"dashboard page, HTML and its {len(urls)} cards' JSON (6 at a time)",
            seconds,
            "s",
            target=f"< {TARGET:g} s",
        )
    ]
    if drawn is not None:
        empty = config.parent / "empty" / f"{DB}.db"
        empty.parent.mkdir()
        open_store(empty, create=True).close()
        with served(_config(empty.parent, empty)) as base:
            baseline = _chromium(base, empty.parent)
        out.append(
            line(
                "dashboard page drawn in headless Chromium (--dump-dom, start-up included)",
                drawn,
                "s",
                baseline,
                "the same page on an empty log",
                "(for information)",
            )
        )
    return out


def _chromium(base: str, tmp: Path) -> float | None:
    """Wall time of headless Chromium loading and drawing the page (None: no Chromium)."""
    from tests.commands.browser import CHROMIUM, headless

    if not Path(CHROMIUM).exists():
        return None
    page = f"{base}/-/dashboards/{dashboard.SLUG}"

    def draw() -> None:
        done = headless(CHROMIUM, tmp / "profile", "--dump-dom", page, size="1280,2900")
        assert done.returncode == 0 and "role-mark" in done.stdout

    return median_time(draw)


def run(tmp: Path) -> list[dict]:
    db = Path(os.environ.get("BENCH_DASHBOARD_DB") or tmp / f"{DB}.db")
    if not db.exists():
        start = time.perf_counter()
        events = build(db, PAGES)
        print(f"(built {PAGES:,} pages, {events:,} events in {time.perf_counter() - start:.0f} s)")
    print(f"(log: {db}, {db.stat().st_size / 2**30:.2f} GiB)", flush=True)
    link = tmp / f"{DB}.db"
    if link != db:
        link.symlink_to(db)  # Datasette names the database after its file: /bench
    config = _config(tmp, link)
    cfg = load_config(config)
    return [*_status(config), *_queries(cfg), *_page(config, cfg)]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        run(Path(d))
