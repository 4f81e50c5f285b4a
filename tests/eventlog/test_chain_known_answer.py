"""The hash chain pinned: literal hashes for fixed rows, and a row edited with its own hash
recomputed is caught at the next row."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from eventlog.chain import GENESIS_HASH, chain_hash
from projections import open_store
from tests.conftest import run_cli

ROW1 = "91cc3de4bf20d9a669b7c44ccb414a903fd2e14b7f638a6f16ce5914915ce455"
ROW2 = "df27e50d45267b5a0adfbe2e8be0f2fabbfd15adba8ceb5611d12a2e5cb05569"


def test_chain_hash_known_answer() -> None:
    a = chain_hash(
        GENESIS_HASH, 1, "2026-01-01T00:00:00.000000Z", "RunStarted", "run:r1", "run:r1", 1,
        '{"run_id":"r1"}',
    )  # fmt: skip
    b = chain_hash(
        a, 2, "2026-01-01T00:00:01.000000Z", "RunFinished", "run:r1", "run:r1", 1,
        '{"run_id":"r1","outcome":"ok"}',
    )  # fmt: skip
    assert (a, b) == (ROW1, ROW2)
    # The second row's hash depends on the first's: a chain, not a list of row hashes.
    assert chain_hash("1" * 64, 2, "2026-01-01T00:00:01.000000Z", "RunFinished", "run:r1",
                      "run:r1", 1, '{"run_id":"r1","outcome":"ok"}') != ROW2  # fmt: skip


@pytest.mark.parametrize("k", [1, 2, 5])
def test_a_row_edited_with_its_own_hash_recomputed_breaks_at_the_next_row(
    populated: Path, k: int
) -> None:
    store = open_store(populated)
    rows = list(store.read_raw())
    store.close()
    prev = GENESIS_HASH if k == 1 else rows[k - 2].hash
    r = rows[k - 1]
    payload = r.payload + " "  # still JSON, different bytes
    forged = chain_hash(prev, r.seq, r.ts, r.type, r.stream, r.actor, r.version, payload)
    conn = apsw.Connection(str(populated))
    conn.execute("DROP TRIGGER events_refuse_update")  # what an attacker with the file can do
    conn.execute("UPDATE events SET payload = ?, hash = ? WHERE seq = ?", (payload, forged, k))
    conn.close()
    store = open_store(populated)
    found = store.verify_chain()
    store.close()
    assert found is not None and found.seq == k + 1, found
    cli = run_cli("--db", str(populated), "--verify-chain", script="replay.py")
    assert cli.code != 0 and str(k + 1) in cli.out + cli.err, cli
