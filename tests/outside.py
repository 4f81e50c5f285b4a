"""Writes to the database from outside the store, as an operator with the ``sqlite3`` shell would.

Always from another process: two SQLite libraries in one process (Python's ``sqlite3`` beside
apsw's own SQLite) do not see each other's POSIX locks, so closing the ``sqlite3`` connection
checkpoints and deletes the ``-wal`` file under a store that is still open
(https://www.sqlite.org/howtocorrupt.html#multiple_copies_of_sqlite_linked_into_the_same_application),
which the store then rightly refuses to write past (``WalLost``).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_SCRIPT = (
    "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()"
)


def outside_executescript(db: Path, script: str) -> None:
    """Run ``script`` on ``db`` through Python's ``sqlite3`` in a separate process."""
    subprocess.run([sys.executable, "-c", _SCRIPT, str(db), script], check=True)
