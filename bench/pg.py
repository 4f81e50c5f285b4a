"""The PostgreSQL server the benchmarks measure against: ``$GB_BENCH_POSTGRES_URL``, or a
throwaway one (``tests/postgres.py``: Debian's binaries, fsync on, as in production)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import common  # noqa: F401  (puts the project root on sys.path)


@contextlib.contextmanager
def server() -> Iterator[str | None]:
    """A server URL, or None (with the reason printed) when none can be had."""
    url = os.environ.get("GB_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    from tests.postgres import NoServer, throwaway_server

    try:
        with throwaway_server(fsync=True) as started:
            yield started
    except NoServer as e:
        print(f"(no PostgreSQL figures: {e})", flush=True)
        yield None
