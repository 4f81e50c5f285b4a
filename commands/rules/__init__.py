"""Pure decisions: functions from facts to events or verdicts, no I/O (tested without a socket).

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "abandoned",
    "admission",
    "cleanup",
    "clear_batch",
    "collect",
    "cost",
    "estimate",
    "leases",
    "poll",
    "progress",
    "reconcile",
    "reset_failures",
    "results",
    "retry",
    "runs",
    "scan",
    "stuck",
    "submit",
    "tokens",
    "transport",
    "uploads",
]
