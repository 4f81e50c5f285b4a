"""Operator actions: each one appends its own event (who, what, why) and returns what it did.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "clear_batch",
    "migrate",
    "nuke",
    "reset_failures",
]
