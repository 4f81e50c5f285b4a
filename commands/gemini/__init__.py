"""The Gemini boundary: the port, the request-line wire format and the google-genai adapter.

Its public modules are listed in ``__all__``; none is imported here, so importing the package
costs nothing (the CLI's ``--help`` stays fast).
"""

__all__ = [
    "port",
    "requests",
    "resources",
    "sdk",
    "uploads",
]
