"""The Gemini boundary: the port the worker calls, and the google-genai adapter behind it.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "port",
    "sdk",
]
