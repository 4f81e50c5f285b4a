"""The click CLI (``python -m commands``, ``gemini-batches``): parse, call one function, print.

Importing it registers every command (``actions``, ``dashboard``, ``views``, ``worker``) on
:data:`cli`.
"""

from commands.cli import actions, dashboard, views, worker
from commands.cli.app import cli, main, standalone

__all__ = ["actions", "cli", "dashboard", "main", "standalone", "views", "worker"]
