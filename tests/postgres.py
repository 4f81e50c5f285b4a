"""A throwaway PostgreSQL server for the tests, one per session.

``$GB_TEST_POSTGRES_URL`` (a database the tests may fill with schemas) is used when set; else a
server is started from Debian's ``postgresql`` binaries (``/usr/lib/postgresql/*/bin``) in a
temporary directory (``initdb`` and ``postgres`` refuse root: as root they run as the
``postgres`` user through ``runuser``), on a free port of 127.0.0.1, and stopped at the end.

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

import pytest

ENV_URL = "GB_TEST_POSTGRES_URL"


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
    data, port = top / "data", _free_port()
    ctl = [*run_as, str(binaries / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [*run_as, str(binaries / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"],
            check=True,
            capture_output=True,
            text=True,
        )
        options = f"-p {port} -k {top} -c listen_addresses=127.0.0.1"
        options += "" if fsync else " -c fsync=off"
        subprocess.run(
            [*ctl, "-l", str(top / "log"), "-o", options, "-w", "start"],
            check=True,
            capture_output=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError) as e:
        shutil.rmtree(top, ignore_errors=True)
        detail = getattr(e, "stderr", "") or str(e)
        raise NoServer(f"cannot start one in {top}: {detail.strip()[:300]}") from e
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*ctl, "-m", "fast", "-w", "stop"], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def new_schema_url(server_url: str) -> str:
    """A fresh, empty schema on the server, as a URL whose connections use it (one per test)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in server_url else "?"
    return f"{server_url}{sep}options=-csearch_path%3D{name}"
