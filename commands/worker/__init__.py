"""The worker: a run's session, the cycle's steps and their I/O (dataset, uploads, results).

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "cleanup",
    "collect",
    "context",
    "cycle",
    "dataset",
    "estimator",
    "leases",
    "outputs",
    "progress",
    "request_files",
    "runlock",
    "runlog",
    "scan",
    "session",
    "upload",
]
