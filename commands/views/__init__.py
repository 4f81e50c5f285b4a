"""Read-only views over the projections: status, run reports, estimates, failure analysis.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "analyze_failures",
    "estimate",
    "progress",
    "report",
    "status",
]
