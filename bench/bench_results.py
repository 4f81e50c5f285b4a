"""Processing a 100k-line result file (parse, validate against the schema, write outputs durably,
append events), against a plain loop that parses each line and writes each output with the same
durability, one file after another (temporary file, fsync, rename, folder fsync), as the
worker did before its flushes ran in parallel (commands/worker/outputs.py). Memory is measured
in a fresh process on a 1M-line file: it must stay flat.

    uv run --group bench python bench/bench_results.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from common import ROOT, line, median_time

from commands.config import Config, parse_config
from commands.gemini.port import RemoteBatch, RemoteFile
from commands.schema import PageExtraction
from commands.worker.collect import BatchRef, collect
from commands.worker.context import Worker
from eventlog.events import BatchSubmissionIntended, BatchSubmitted
from gemini_emulator.schema_fill import fill
from projections import open_store

LINES = int(os.environ.get("BENCH_RESULTS_LINES", "100000"))
MEMORY_LINES = int(os.environ.get("BENCH_RESULTS_MEMORY_LINES", "1000000"))


def key(i: int) -> str:
    return f"State{i // 100_000}:School{(i // 1000) % 100}:{2000 + (i // 100) % 10}:{i % 100 + 1}"


def write_results(path: Path, n: int) -> None:
    schema = PageExtraction.model_json_schema()
    with path.open("w") as fh:
        for i in range(n):
            text = json.dumps(fill(schema, key(i)))
            fh.write(
                json.dumps(
                    {
                        "key": key(i),
                        "response": {
                            "candidates": [
                                {
                                    "content": {"role": "model", "parts": [{"text": text}]},
                                    "finishReason": "STOP",
                                }
                            ],
                            "usageMetadata": {
                                "promptTokenCount": 600,
                                "candidatesTokenCount": 300,
                                "totalTokenCount": 900,
                            },
                        },
                    }
                )
                + "\n"
            )


class LocalResults:
    """A Gemini port whose one result file is already on this disk (the download is not what
    this benchmark measures); collecting makes no other call."""

    def __init__(self, source: Path) -> None:
        self.source = source

    def download_to(self, file_name: str, destination: Path) -> None:
        shutil.copyfile(self.source, destination)

    def close(self) -> None:
        pass

    def upload(
        self, source: Path | bytes, *, mime_type: str, display_name: str, retry: bool = False
    ) -> RemoteFile:
        raise NotImplementedError("collecting uploads nothing")

    def get_file(self, name: str) -> RemoteFile:
        raise NotImplementedError("collecting reads no file's state")

    def delete_file(self, name: str) -> bool:
        raise NotImplementedError("collecting deletes nothing")

    def list_files(self) -> list[RemoteFile]:
        raise NotImplementedError("collecting lists nothing")

    def check_access(self) -> None:
        pass

    def create_batch(self, *, model: str, input_file: str, display_name: str) -> RemoteBatch:
        raise NotImplementedError("collecting creates nothing")

    def get_batch(self, name: str) -> RemoteBatch:
        raise NotImplementedError("collecting is handed the batch")

    def find_batches(self, display_name: str, *, created_after: str = "") -> list[RemoteBatch]:
        raise NotImplementedError("collecting is handed the batch")

    def cancel_batch(self, name: str) -> None:
        raise NotImplementedError("collecting cancels nothing")

    def delete_batch(self, name: str) -> bool:
        raise NotImplementedError("collecting deletes no job")


def prepare(tmp: Path, n: int) -> tuple[Worker, BatchRef]:
    config: Config = parse_config(
        {"paths": {"output_root": "out", "database": "db/log.db"}}, tmp / "c.toml"
    )
    store = open_store(config.paths.database, create=True)
    keys = [key(i) for i in range(n)]
    store.append(
        [BatchSubmissionIntended(display_name="gb", model="m", record_keys=keys)], actor="run:bench"
    )
    [rec] = store.append(
        [BatchSubmitted(batch_id="batches/b", display_name="gb", model="m", record_keys=keys)],
        actor="run:bench",
    )
    worker = Worker(config, store, LocalResults(tmp / "results.jsonl"), "bench", PageExtraction)
    return worker, BatchRef("batches/b", "m", rec.seq, rec.ts)


def plain(tmp: Path) -> None:
    """Parse each line and write its output as durably as ours: temp file, fsync, rename."""
    out = tmp / "plain"
    folders: set[Path] = set()
    with (tmp / "results.jsonl").open("rb") as fh:
        for raw in fh:
            line_ = msgspec.json.decode(raw)
            text = line_["response"]["candidates"][0]["content"]["parts"][0]["text"]
            path = out.joinpath(*line_["key"].split(":")).with_suffix(".json")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_path = path.with_name(f".{path.name}.tmp")
            with tmp_path.open("wb") as o:
                o.write(text.encode())
                o.flush()
                os.fsync(o.fileno())
            os.replace(tmp_path, path)
            folders.add(path.parent)
    for folder in folders:
        fd = os.open(folder, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)


PREPARE = """
import sys
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
import bench_results as b
worker, batch = b.prepare(Path({tmp!r}), {n})
print(batch.submitted_seq, batch.submitted_at)
"""

# A fresh process that only processes: its peak memory is the processing's.
MEMORY_PROBE = """
import sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from pathlib import Path
import bench_results as b
tmp = Path({tmp!r})
config = b.parse_config({{"paths": {{"output_root": "out", "database": "db/log.db"}}}},
                        tmp / "c.toml")
store = b.open_store(config.paths.database)
worker = b.Worker(config, store, b.LocalResults(tmp / "results.jsonl"), "bench", b.PageExtraction)
batch = b.BatchRef("batches/b", "m", {seq}, {at!r})
start = time.perf_counter()
remote = b.RemoteBatch("batches/b", "gb", "JOB_STATE_SUCCEEDED", "files/x")
worker.pools.run(b.collect(worker, batch, remote))
took = time.perf_counter() - start
from common import peak_rss_mib
print(int(peak_rss_mib()), round(took, 1))
"""


def run(tmp: Path) -> list[dict]:
    write_results(tmp / "results.jsonl", LINES)
    remote = RemoteBatch("batches/b", "gb", "JOB_STATE_SUCCEEDED", "files/x")
    state: dict[str, tuple[Worker, BatchRef]] = {}

    def setup_ours() -> None:
        for p in ("db", "out"):
            shutil.rmtree(tmp / p, ignore_errors=True)
        state["w"] = prepare(tmp, LINES)

    def ours() -> None:
        worker, batch = state["w"]
        worker.pools.run(collect(worker, batch, remote))
        worker.pools.close()
        worker.store.close()

    t_ours = median_time(ours, setup=setup_ours)
    t_plain = median_time(
        lambda: plain(tmp), setup=lambda: shutil.rmtree(tmp / "plain", ignore_errors=True)
    )
    out = [
        line(
            f"process a {LINES:,}-line result file",
            LINES / t_ours,
            "lines/s",
            LINES / t_plain,
            "plain parse + one-fsync-per-file loop",
            ">= 0.3x",
        )
    ]
    # Memory on a 1M-line file, in a fresh process.
    big = tmp / "big"
    big.mkdir()
    write_results(big / "results.jsonl", MEMORY_LINES)
    start = time.perf_counter()
    where = {"root": str(ROOT), "bench": str(ROOT / "bench"), "tmp": str(big)}
    prepared = subprocess.run(
        [sys.executable, "-c", PREPARE.format(**where, n=MEMORY_LINES)],
        capture_output=True,
        text=True,
        check=True,
    )
    seq, at = prepared.stdout.split()
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE.format(**where, seq=int(seq), at=at)],
        capture_output=True,
        text=True,
        check=True,
    )
    rss, took = done.stdout.split()
    print(
        f"({MEMORY_LINES:,} lines processed in {took} s, "
        f"{time.perf_counter() - start:.0f} s with setup)",
        flush=True,
    )
    out.append(
        line(
            f"peak memory processing {MEMORY_LINES:,} lines",
            float(rss),
            "MiB",
            None,
            "",
            "<= 200 MiB",
            higher_is_better=False,
        )
    )
    return out


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as d:
        run(Path(d))
