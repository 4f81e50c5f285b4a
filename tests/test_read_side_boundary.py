"""The read side's boundary: SQL and apsw stay in ``eventlog/`` and ``projections/``.

Commands read through ``projections.queries``; the store's connection is private. ``bench/`` may
use apsw for raw-speed baselines, and tests may poke the database directly.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = [ROOT / "commands", ROOT / "scripts", ROOT / "replay.py"]


def _sources() -> list[Path]:
    out: list[Path] = []
    for place in OUTSIDE:
        out += [place] if place.is_file() else sorted(place.rglob("*.py"))
    return out


def test_no_module_outside_the_log_and_projections_imports_apsw() -> None:
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "apsw" or n.startswith("apsw.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_no_sql_select_in_commands() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for path in _sources()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"SELECT", line)
    ]
    assert found == []


def test_the_store_keeps_its_connection_private() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if re.search(r"\.(_?conn)\b", path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
