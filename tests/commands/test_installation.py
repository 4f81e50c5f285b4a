"""The commands the tool suggests are typed the way its installation needs (issue 22, item 1).

Pasted as printed, ``python -m commands demo`` fails in a checkout (``No module named 'msgspec'``:
the packages are in the checkout's ``.venv``, reached by ``uv run``). One function decides the
prefix (:func:`commands.installation.command_prefix`); these tests hold it to the three ways the
tool is installed, on real folder trees, and run the CLI as a subprocess for ``--help``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from commands.installation import (
    Installation,
    command_prefix,
    detect,
    extra_install_command,
    suggest,
)
from tests.conftest import ROOT, run_cli


def _checkout(tmp_path: Path, name: str = "gemini-batches") -> Path:
    """A folder laid out as a checkout: pyproject.toml naming ``name``, the package, a .venv."""
    root = tmp_path / "checkout"
    (root / "commands").mkdir(parents=True)
    (root / ".venv").mkdir()
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "0.1.0"\n')
    return root


def test_a_checkout_run_by_uv_or_from_its_venv_is_a_uv_checkout(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    other = tmp_path / "python"
    by_venv = detect(root / "commands", interpreter=root / ".venv", environ={})
    by_uv = detect(root / "commands", interpreter=other, environ={"UV": "/usr/bin/uv"})
    assert by_venv == by_uv == Installation("uv-checkout", root)
    # Another interpreter (a checkout on PYTHONPATH), no uv: the plain form.
    assert detect(root / "commands", interpreter=other, environ={}).kind == "source"


def test_a_folder_naming_another_project_is_not_a_checkout(tmp_path: Path) -> None:
    root = _checkout(tmp_path, name="something-else")
    found = detect(root / "commands", interpreter=root / ".venv", environ={"UV": "uv"})
    assert found == Installation("source", root)


def test_the_package_in_site_packages_is_an_installed_package(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    (site / "commands").mkdir(parents=True)
    found = detect(site / "commands", interpreter=tmp_path, environ={"UV": "uv"})
    assert found == Installation("package", None)


def test_the_prefix_for_each_installation(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    uv = Installation("uv-checkout", root)
    inside, outside = root / "data", tmp_path / "elsewhere"
    assert command_prefix(uv, cwd=inside, environ={}) == "uv run python -m commands"
    assert command_prefix(uv, cwd=root, environ={}) == "uv run python -m commands"
    # uv finds the project from the current folder: from outside it the checkout is named.
    assert command_prefix(uv, cwd=outside, environ={}) == (
        f"uv run --project {root} python -m commands"
    )
    # ... unless $UV_PROJECT names it already.
    named = {"UV_PROJECT": str(root)}
    assert command_prefix(uv, cwd=outside, environ=named) == "uv run python -m commands"
    assert command_prefix(Installation("package", None)) == "gemini-batches"
    assert command_prefix(Installation("source", root)) == "python -m commands"


def test_a_checkout_path_with_a_space_is_quoted_for_the_shell(tmp_path: Path) -> None:
    root = tmp_path / "my checkout"
    prefix = command_prefix(Installation("uv-checkout", root), cwd=tmp_path, environ={})
    assert prefix == f"uv run --project '{root}' python -m commands"


def test_the_install_command_of_an_extra_for_each_installation(tmp_path: Path) -> None:
    root = _checkout(tmp_path)
    uv = Installation("uv-checkout", root)
    assert extra_install_command("dashboard", uv, cwd=root, environ={}) == (
        "uv sync --extra dashboard"
    )
    assert extra_install_command("dashboard", uv, cwd=tmp_path, environ={}) == (
        f"uv sync --project {root} --extra dashboard"
    )
    package = Installation("package", None)
    assert extra_install_command("postgres", package) == "pip install 'gemini-batches[postgres]'"
    source = Installation("source", root)
    assert extra_install_command("prefect", source) == f"pip install -e '{root}[prefect]'"


def test_suggest_types_each_canonical_command_with_the_prefix() -> None:
    text = "Start with:   python -m commands demo\nrun `python -m commands rebuild-projections`"
    assert suggest(text, "uv run python -m commands") == (
        "Start with:   uv run python -m commands demo\n"
        "run `uv run python -m commands rebuild-projections`"
    )
    assert suggest(text, "gemini-batches").count("gemini-batches ") == 2
    # Already typed, or a path to another interpreter: left as it is.
    for kept in ("uv run python -m commands status", "/usr/bin/python -m commands status"):
        assert suggest(kept, "gemini-batches") == kept


def _under_the_checkouts_venv() -> None:
    assert Path(sys.prefix).resolve() == (ROOT / ".venv").resolve(), (
        "run the suite as the README says (uv run pytest): these tests expect the checkout's .venv"
    )


def test_help_in_a_checkout_says_uv_run() -> None:
    """``--help`` run from the checkout by the checkout's .venv: its hints and examples work
    when pasted (``Start with: python -m commands demo`` did not)."""
    _under_the_checkouts_venv()
    top = run_cli("--help", cwd=ROOT)
    assert top.code == 0, top.err
    assert "Start with:   uv run python -m commands demo" in top.out
    assert "Then:         uv run python -m commands status" in top.out
    assert "Usage: uv run python -m commands [OPTIONS] COMMAND" in top.out
    status = run_cli("status", "--help", cwd=ROOT)
    assert "Example: uv run python -m commands status --json" in status.out
    reset = run_cli("reset-failures", "--help", cwd=ROOT)
    assert "Example: uv run python -m commands reset-failures --all --dry-run" in reset.out


def test_help_outside_the_checkout_names_it(tmp_path: Path) -> None:
    _under_the_checkouts_venv()
    r = run_cli("--help", cwd=tmp_path, env={"UV_PROJECT": ""})
    assert f"Start with:   uv run --project {ROOT} python -m commands demo" in r.out


@pytest.mark.parametrize("given", ["nosuchcommand", "status --nosuchflag"])
def test_a_usage_error_points_at_help_typed_the_same_way(given: str) -> None:
    _under_the_checkouts_venv()
    r = run_cli(*given.split(), cwd=ROOT)
    assert r.code == 2
    assert "(see: uv run python -m commands" in r.err


def test_an_error_line_types_the_command_it_suggests(populated: Path) -> None:
    """A core message writes ``python -m commands status``; the one line says it typed."""
    _under_the_checkouts_venv()
    r = run_cli("--db", str(populated), "clear-batch", "batches/nope", "--reason", "x", cwd=ROOT)
    assert r.code == 1
    assert r.err.strip().splitlines() == [
        "Error: no active batch or open submission named 'batches/nope' "
        "(see `uv run python -m commands status`)"
    ]


def test_the_console_script_in_a_checkout_points_at_help_typed_for_uv() -> None:
    """``uv run gemini-batches`` in a checkout: its hints are typed as every other one is there
    (a bare ``gemini-batches`` is not on a newcomer's PATH)."""
    _under_the_checkouts_venv()
    script = Path(sys.prefix) / "bin" / "gemini-batches"
    p = subprocess.run(
        [str(script), "status", "--nosuchflag"], cwd=ROOT, capture_output=True, text=True
    )
    assert p.returncode == 2
    assert "(see: uv run python -m commands status --help)" in p.stderr
