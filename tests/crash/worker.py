"""Test-only harness: the real CLI, with a hook that SIGKILLs the process the N-th time it
reaches the crash point named by $CRASH_AT, $SIGNAL_AT=N:SIGTERM sends itself a signal while its
N-th PostgreSQL statement waits for the server, $INTENT_AT=<point> appends another worker's
intent at that point, $STOP_AT=<point> (and $STOP_NTH) stops the process there with SIGSTOP,
and (for several workers) $SKIP_RENEWALS_AFTER=N:
after N lease rebalances holding a lease the worker stops renewing its leases but goes on
cycling, like one cut off from the log. Shipped code has no way to do either."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from commands.cli import main
from eventlog import crashpoints

POINT = os.environ.get("CRASH_AT", "")
NTH = int(os.environ.get("CRASH_NTH", "1"))
_seen = 0


INTENT_AT = os.environ.get("INTENT_AT", "")  # a point: another worker's intent appended there


def _another_workers_intent() -> None:
    """Append, from a connection of its own, an intent of another worker for the one project:
    it fills the project's room between this worker's admission and its own intent."""
    from commands.config import load_config
    from eventlog.events import BatchSubmissionIntended
    from projections import open_store

    config = load_config(Path(sys.argv[sys.argv.index("--config") + 1]))
    store = open_store(config.log_location)
    try:
        intent = BatchSubmissionIntended(
            display_name="gb-other-worker-001",
            model=config.gemini.model,
            record_keys=["Elsewhere:School:2020:1"],
            input_file="files/other-worker-request",
        )
        store.append([intent], actor="run:other-worker")
    finally:
        store.close()


STOP_AT = os.environ.get("STOP_AT", "")  # a point: the process stops itself there (SIGSTOP)
STOP_NTH = int(os.environ.get("STOP_NTH", "1"))
_stops = 0


def _hook(name: str) -> None:
    global _seen, INTENT_AT, _stops
    if name == STOP_AT:
        _stops += 1
        if _stops == STOP_NTH:
            os.kill(os.getpid(), signal.SIGSTOP)  # as a VM paused mid-transaction
    if name == INTENT_AT:
        INTENT_AT = ""  # once
        _another_workers_intent()
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

SIGNAL_AT = os.environ.get("SIGNAL_AT", "")  # "N:SIGTERM": N-th PostgreSQL wait of the run
if SIGNAL_AT:
    import psycopg

    from commands.worker import session

    _nth, _name = SIGNAL_AT.split(":")
    _waits = -(10**9)  # counted from the run's start
    _wait = psycopg.Connection.wait
    _start = session._start

    def _started(*args: object, **kwargs: object) -> None:
        global _waits
        _start(*args, **kwargs)  # type: ignore[arg-type]
        _waits = 0

    session._start = _started

    def _signalled_wait(
        self: psycopg.Connection, gen: Any, *args: object, **kwargs: object
    ) -> object:
        """A signal sent to this process while a statement is on the wire (the N-th wait for
        the server's answer since the run started, whatever the statement: a read, an append,
        a pipeline)."""
        global _waits
        _waits += 1
        if _waits != int(_nth):
            return _wait(self, gen, *args, **kwargs)  # type: ignore[arg-type]

        def sent_then_signalled() -> Any:
            try:
                first = next(gen)
            except StopIteration as stop:  # nothing to wait for after all
                os.kill(os.getpid(), getattr(signal, _name))
                return stop.value
            ready = yield first  # the statement is sent: now the signal comes
            os.kill(os.getpid(), getattr(signal, _name))
            while True:
                try:
                    ready = yield gen.send(ready)
                except StopIteration as stop:
                    return stop.value

        return _wait(self, sent_then_signalled(), *args, **kwargs)  # type: ignore[arg-type]

    psycopg.Connection.wait = _signalled_wait  # type: ignore[method-assign,assignment]

for point in (POINT, INTENT_AT, STOP_AT):
    if point and not (point in crashpoints.POINTS or point.startswith(crashpoints.APPEND_PREFIX)):
        raise SystemExit(f"unknown crash point {point!r}")
if POINT or INTENT_AT or STOP_AT:
    crashpoints.install(_hook)
main(sys.argv[1:], prog_name="worker")
