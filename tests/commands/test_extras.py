"""A missing optional extra is one line and exit 1, naming the install command (issue 22, item 2).

Installed without an extra, ``dashboard`` printed "internal error (a bug)" with a traceback
(``No module named 'uvicorn'``) and exited 70. Here the CLI runs as a real subprocess in which the
extra's modules cannot be imported: a finder put first on ``sys.meta_path`` refuses them, as an
environment without the extra would, then ``python -m commands`` runs as usual.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, Result
from tests.pipeline import write_config

#: Refuses the modules named in argv[1] (comma-separated), then runs ``python -m commands``.
WITHOUT = """
import runpy, sys

blocked = set(sys.argv[1].split(","))

class Missing:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Missing())
del sys.argv[1]
runpy.run_module("commands", run_name="__main__", alter_sys=True)
"""


def run_without(modules: str, *args: str, cwd: Path = ROOT) -> Result:
    p = subprocess.run(
        [sys.executable, "-c", WITHOUT, modules, *args],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def _one_line(r: Result, expected: str) -> None:
    assert r.code == 1, r.err
    assert r.err.splitlines() == [expected]
    assert "Traceback" not in r.out + r.err


@pytest.mark.parametrize("modules", ["uvicorn", "datasette,datasette_dashboards,uvicorn"])
def test_dashboard_without_its_extra(populated: Path, modules: str) -> None:
    r = run_without(modules, "--db", str(populated), "dashboard", "--port", "1")
    missing = modules.split(",")[0]
    _one_line(
        r,
        f"Error: the dashboard needs the optional extra 'dashboard' (No module named "
        f"'{missing}'): uv sync --extra dashboard",
    )


def test_prefect_without_its_extra(populated: Path) -> None:
    for command in ("prefect-run", "prefect-serve"):
        r = run_without("prefect", "--db", str(populated), command)
        _one_line(
            r,
            "Error: running under Prefect needs the optional extra 'prefect' (No module named "
            "'prefect'): uv sync --extra prefect",
        )


def test_postgresql_without_its_extra(tmp_path: Path) -> None:
    config = write_config(
        tmp_path, "http://127.0.0.1:9", database={"url": "postgresql://gb@127.0.0.1:9/gb"}
    )
    r = run_without("psycopg", "--config", str(config), "status", "--no-scan")
    _one_line(
        r,
        "Error: a PostgreSQL log ([database] url) needs the optional extra 'postgres' (No module "
        "named 'psycopg'): uv sync --extra postgres",
    )


def test_outside_the_checkout_the_install_command_names_it(populated: Path, tmp_path: Path) -> None:
    r = run_without("uvicorn", "--db", str(populated), "dashboard", cwd=tmp_path)
    assert r.code == 1
    assert r.err.rstrip().endswith(f"uv sync --project {ROOT} --extra dashboard"), r.err


def test_a_missing_module_of_no_extra_is_still_a_bug(populated: Path) -> None:
    """Only an extra's modules are an operator's to install: any other is reported as a bug."""
    r = run_without("pydantic", "--db", str(populated), "status", "--no-scan")
    assert r.code == 70
    assert "internal error (a bug)" in r.err and "No module named 'pydantic'" in r.err
