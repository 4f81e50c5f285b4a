"""Test-only harness: the real CLI, with a hook that SIGKILLs the process the N-th time it
reaches the crash point named by $CRASH_AT, and (for several workers) $SKIP_RENEWALS_AFTER=N:
after N lease rebalances holding a lease the worker stops renewing its leases but goes on
cycling, like one cut off from the log. Shipped code has no way to do either."""

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


SKIP_AFTER = int(os.environ.get("SKIP_RENEWALS_AFTER", "0"))
if SKIP_AFTER:
    from commands.worker.leases import LeaseKeeper

    _rebalance = LeaseKeeper.rebalance
    _rebalances = 0

    def _cut_off(self: LeaseKeeper, *args: object, **kwargs: object) -> object:
        global _rebalances
        if _rebalances >= SKIP_AFTER:
            return []
        recorded = _rebalance(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.held:  # counted once the worker holds a lease
            _rebalances += 1
        return recorded

    LeaseKeeper.rebalance = _cut_off  # type: ignore[method-assign,assignment]

if POINT:
    known = POINT in crashpoints.POINTS or POINT.startswith(crashpoints.APPEND_PREFIX)
    if not known:
        raise SystemExit(f"unknown crash point {POINT!r}")
    crashpoints.install(_hook)
main(sys.argv[1:], prog_name="worker")
