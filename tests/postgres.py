"""A throwaway PostgreSQL server for the tests, one per session (under pytest-xdist, one per
worker: each its own directory and port, so no test shares a server with another worker's).

``$GB_TEST_POSTGRES_URL`` (a database the tests may fill with schemas; under pytest-xdist each
worker makes and uses a database of its own next to it, :func:`worker_database`) is used when
set; else a server is started from Debian's ``postgresql`` binaries
(``/usr/lib/postgresql/*/bin``) in a temporary directory (``initdb`` and ``postgres`` refuse
root: as root they run as the ``postgres`` user through ``runuser``), on a free port of
127.0.0.1, and stopped at the end.

When no server can be had, the PostgreSQL tests skip with the reason, except under ``CI=1``
(``.ci/run``), where they fail: CI must not pass silently without PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV_URL = "GB_TEST_POSTGRES_URL"
#: Ports tried before a server that cannot bind one is given up.
PORT_ATTEMPTS = 3


class NoServer(Exception):
    """No PostgreSQL server can be started or reached here."""


def unavailable(reason: str) -> None:
    """Skip (fail under CI=1) a test that needs PostgreSQL."""
    message = f"no PostgreSQL server for the tests: {reason}"
    if os.environ.get("CI") == "1":
        pytest.fail(message + " (CI=1: .ci/run installs Debian's postgresql)", pytrace=False)
    pytest.skip(message + f"; install Debian's postgresql or set ${ENV_URL}")


def bin_dir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4])
    )
    if not found:
        raise NoServer("no /usr/lib/postgresql/*/bin/initdb (Debian's postgresql package)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_server(*, fsync: bool = False) -> Iterator[str]:
    """Start a server in a temporary directory; yield its URL; stop it and remove the files.
    (``fsync=False`` for tests: durability is not what they check.)"""
    binaries = bin_dir()
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    owner = None
    if as_root:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as e:
            raise NoServer("running as root and there is no postgres user") from e
        run_as = ["runuser", "-u", "postgres", "--"]
    top = Path(tempfile.mkdtemp(prefix="gb-pg-"))
    if owner is not None:
        os.chown(top, owner.pw_uid, owner.pw_gid)
    data = top / "data"
    ctl = [*run_as, str(binaries / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*run_as, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            text=True,
        )
        # The free port is released before the server binds it: under pytest-xdist another
        # worker (its own server, an emulator) may take it first, so a bind failure retries.
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = _free_port()
            options = f"-p {port} -k {top} -c listen_addresses=127.0.0.1"
            options += "" if fsync else " -c fsync=off"
            started = subprocess.run(
                [*ctl, "-l", str(top / "log"), "-o", options, "-w", "start"],
                capture_output=True,
                text=True,
            )
            if started.returncode == 0:
                break
            log = top / "log"
            in_use = log.exists() and "could not bind" in log.read_text()
            if not in_use or attempt == PORT_ATTEMPTS:
                started.check_returncode()
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(top, ignore_errors=True)
        detail = getattr(e, "stderr", "") or str(e)
        raise NoServer(f"cannot start one in {top}: {detail.strip()[:300]}") from e
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def worker_database(url: str, worker: str) -> str:
    """``url`` with its database replaced by ``<database>_<worker>``, created when missing: the
    pytest-xdist workers sharing ``$GB_TEST_POSTGRES_URL`` each get a database of their own (an
    append holds a database-wide lock, which a test of another worker must not meet)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'postgres'}_{worker}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as e:
        raise NoServer(
            f"cannot make database {name} for pytest-xdist worker {worker} on ${ENV_URL} ({e}); "
            "grant CREATEDB, or run with -n 0"
        ) from e
    return urlunsplit(parts._replace(path=f"/{name}"))


def new_schema_url(server_url: str) -> str:
    """A fresh, empty schema on the server, as a URL whose connections use it (one per test)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{name}"
