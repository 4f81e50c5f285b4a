"""How this copy of the tool was installed, and so how its commands are typed: the one place that
decides the prefix of every command the tool suggests (``--help``, the demo's closing lines, an
error's hint) and how a missing optional extra (:data:`EXTRAS`) is installed.

* **A checkout run under uv** (``uv run`` sets ``$UV``; or the interpreter is the checkout's own
  ``.venv``): ``uv run python -m commands``, and ``uv run --project <checkout> python -m
  commands`` from a folder outside the checkout (uv finds the project from the current folder)
  unless ``$UV_PROJECT`` names it. An extra: ``uv sync --extra NAME``.
* **Installed as a package** (the ``commands`` package in a ``site-packages``): the console
  script ``gemini-batches``. An extra: ``pip install 'gemini-batches[NAME]'``.
* **Anything else** (a checkout on ``PYTHONPATH`` under some other Python): ``python -m
  commands``. An extra: ``pip install -e '<checkout>[NAME]'``.

A checkout is the folder holding the package when its ``pyproject.toml`` names this project.
Read-only: the environment, the interpreter's prefix and that one file are all it reads.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal, NamedTuple

#: The distribution's name (pyproject's ``[project] name``), which is also its console script.
PROJECT = "gemini-batches"
#: How the docstrings and messages write a command; :func:`suggest` retypes it.
CANONICAL = "python -m commands"
#: The ``commands`` package of this process.
PACKAGE_DIR = Path(__file__).resolve().parent
#: ``python -m commands`` not already typed for uv, nor after a path to some interpreter.
_CANONICAL_RE = re.compile(r"(?<!uv run )(?<![\w./\\-])python -m commands\b")

Kind = Literal["uv-checkout", "package", "source"]


class Installation(NamedTuple):
    kind: Kind
    #: The checkout (or the folder the package was imported from); None for a package.
    root: Path | None


@functools.cache
def checkout_root(package_dir: Path) -> Path | None:
    """The folder holding ``package_dir`` if its ``pyproject.toml`` names :data:`PROJECT` (read
    once per process: every help paragraph and error line asks)."""
    try:
        text = (package_dir.parent / "pyproject.toml").read_text(encoding="utf-8")
        name = tomllib.loads(text)["project"]["name"]
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return None
    return package_dir.parent if name == PROJECT else None


def detect(
    package_dir: Path = PACKAGE_DIR,
    *,
    interpreter: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Installation:
    """How the package at ``package_dir`` is installed; ``interpreter`` is the running one's
    prefix (default ``sys.prefix``), ``environ`` the environment (default ``os.environ``)."""
    environ = os.environ if environ is None else environ
    interpreter = Path(sys.prefix) if interpreter is None else interpreter
    root = checkout_root(package_dir)
    if root is not None:
        own_venv = interpreter.resolve() == (root / ".venv").resolve()
        return Installation("uv-checkout" if environ.get("UV") or own_venv else "source", root)
    if package_dir.parent.name in ("site-packages", "dist-packages"):
        return Installation("package", None)
    return Installation("source", package_dir.parent)


def _project_option(root: Path, cwd: Path | None, environ: Mapping[str, str] | None) -> str:
    """`` --project <root>`` unless uv finds the checkout by itself: the current folder is inside
    it, or ``$UV_PROJECT`` names it (or a folder inside it)."""
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    start = cwd / environ["UV_PROJECT"] if environ.get("UV_PROJECT") else cwd
    if start.resolve().is_relative_to(root.resolve()):
        return ""
    return f" --project {shlex.quote(str(root))}"


def command_prefix(
    installation: Installation | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """What a suggested command starts with here, to be pasted into a shell at ``cwd``
    (default: the current folder): see the module's docstring."""
    found = installation or detect(environ=environ)
    if found.kind == "package":
        return PROJECT
    if found.kind == "source" or found.root is None:
        return CANONICAL
    return f"uv run{_project_option(found.root, cwd, environ)} {CANONICAL}"


def extra_install_command(
    extra: str,
    installation: Installation | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The shell command that installs the optional extra ``extra`` for this installation."""
    found = installation or detect(environ=environ)
    if found.kind == "package" or found.root is None:
        return f"pip install {shlex.quote(f'{PROJECT}[{extra}]')}"
    if found.kind == "source":
        return f"pip install -e {shlex.quote(f'{found.root}[{extra}]')}"
    return f"uv sync{_project_option(found.root, cwd, environ)} --extra {extra}"


#: Each optional extra: what needs it, and the top-level modules it brings.
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "dashboard": ("the dashboard", ("datasette", "datasette_dashboards", "uvicorn")),
    "prefect": ("running under Prefect", ("prefect",)),
    "postgres": ("a PostgreSQL log ([database] url)", ("psycopg", "psycopg_binary")),
}


def missing_extra(error: ImportError) -> str | None:
    """The one line for an import that failed because an optional extra is not installed (the
    missing module is one of an extra's), with the command that installs it here; None when the
    module belongs to no extra (then it is a bug, not the operator's to install)."""
    top = (error.name or "").partition(".")[0]
    for extra, (what, modules) in EXTRAS.items():
        if top in modules:
            return (
                f"{what} needs the optional extra '{extra}' ({error}): "
                f"{extra_install_command(extra)}"
            )
    return None


def suggest(text: str, prefix: str | None = None) -> str:
    """``text`` with each command written the canonical way (``python -m commands ...``, as
    docstrings and messages write them) typed with ``prefix`` (default: :func:`command_prefix`).
    Give it canonical text only: ``uv run python -m commands`` is left alone, but a prefix with
    ``--project`` would be typed twice."""
    if CANONICAL not in text:
        return text
    prefix = command_prefix() if prefix is None else prefix
    return text if prefix == CANONICAL else _CANONICAL_RE.sub(prefix, text)
