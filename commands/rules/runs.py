"""A worker run's brackets in the log (pure, no I/O): ``RunStarted``, after a
``RunFinished(crashed)`` for each run that never finished; ``RunFinished`` with its outcome."""

from __future__ import annotations

from collections.abc import Sequence

from eventlog.events import Event, RunFinished, RunStarted

__all__ = ["MAX_MESSAGE", "finished", "started"]

#: The longest message a ``RunFinished`` carries.
MAX_MESSAGE = 500


def started(run_id: str, command: str, dead: Sequence[str]) -> list[Event]:
    """``RunStarted``, after a ``RunFinished(crashed)`` for each of the ``dead`` runs (unfinished
    runs nobody runs any more: the run lock is held, or their workers' leases lapsed)."""
    return [
        *(
            RunFinished(
                run_id=d,
                outcome="crashed",
                message=f"ended without finishing; noticed by run {run_id}",
            )
            for d in dead
        ),
        RunStarted(run_id=run_id, command=command),
    ]


def finished(run_id: str, outcome: str, message: str) -> RunFinished:
    """The run's end: ``ok``, ``interrupted`` (a signal), ``error`` (its message cut to
    :data:`MAX_MESSAGE` characters)."""
    return RunFinished(run_id=run_id, outcome=outcome, message=message[:MAX_MESSAGE])
