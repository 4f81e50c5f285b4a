"""Ways in from outside: the demo on the emulator, the Prefect flow and the dashboard.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "dashboard",
    "dashboard_charts",
    "demo",
    "prefect_flow",
]
