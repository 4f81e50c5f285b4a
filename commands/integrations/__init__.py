"""Ways in from outside: the demo (a synthetic dataset on the emulator) and the Prefect flow.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "demo",
    "prefect_flow",
]
