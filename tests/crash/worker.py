"""Test-only harness: the real CLI, with a hook that SIGKILLs the process the N-th time it
reaches the crash point named by $CRASH_AT. Shipped code has no way to do this."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.cli import main
from eventlog import crashpoints

POINT = os.environ.get("CRASH_AT", "")
NTH = int(os.environ.get("CRASH_NTH", "1"))
_seen = 0


def _hook(name: str) -> None:
    global _seen
    if name == POINT:
        _seen += 1
        if _seen == NTH:
            os.kill(os.getpid(), signal.SIGKILL)


if POINT:
    known = POINT in crashpoints.POINTS or POINT.startswith(crashpoints.APPEND_PREFIX)
    if not known:
        raise SystemExit(f"unknown crash point {POINT!r}")
    crashpoints.install(_hook)
main(sys.argv[1:], prog_name="worker")
