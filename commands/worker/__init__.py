"""The worker: a run's session, the cycle's stages and their I/O (one module a stage).

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "abandoned",
    "admission",
    "cleanup",
    "collect",
    "context",
    "create",
    "cycle",
    "dataset",
    "documents",
    "estimator",
    "images",
    "leases",
    "outputs",
    "poll",
    "pools",
    "progress",
    "reconcile",
    "request_files",
    "runlock",
    "runlog",
    "scan",
    "session",
    "submit",
    "summary",
    "upload",
    "walk",
]
