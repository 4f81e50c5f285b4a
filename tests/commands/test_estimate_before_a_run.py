"""``estimate`` before the first run: the cost before you submit, from the dataset alone
(issue 22, item 3: it said "database not found").

The CLI runs as a subprocess on a dataset and a config whose database does not exist yet; the
estimate is the one an empty log gives, its basis says no results are in a log yet, and nothing
is created.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from projections import open_store
from tests.conftest import run_cli
from tests.pipeline import keys_for, make_dataset, write_config


def _setup(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "input", keys_for(1, 2, 1, 3))
    return write_config(tmp_path, "http://127.0.0.1:9")


def _json(config: Path, cwd: Path) -> dict[str, Any]:
    r = run_cli("--config", str(config), "estimate", "--json", cwd=cwd)
    assert r.code == 0, r.err
    result: dict[str, Any] = json.loads(r.out)
    return result


def test_estimate_without_a_database_prices_the_dataset_and_creates_nothing(
    tmp_path: Path,
) -> None:
    config = _setup(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = run_cli("--config", str(config), "estimate", cwd=tmp_path)
    assert r.code == 0, r.err
    assert "pending       6 pages" in r.out
    assert "no results in a log yet" in r.out and "no database at " in r.out
    assert "estimate      $" in r.out
    # Read-only: no database, no folder for it, nothing else either.
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "data").exists()


def test_without_a_database_the_figures_are_an_empty_logs(tmp_path: Path) -> None:
    config = _setup(tmp_path)
    alone = _json(config, tmp_path)
    open_store(tmp_path / "data" / "gemini_batches.db", create=True).close()
    empty = _json(config, tmp_path)
    assert "no results in a log yet" in alone.pop("basis")
    assert "no past results of" in empty.pop("basis")
    assert alone == empty
    assert alone["pages"] == 6 and alone["cost"] > 0
