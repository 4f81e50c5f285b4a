"""The click CLI (``python -m commands``, ``gemini-batches``): parse, call one function, print.

Importing it registers every command (``actions``, ``views``, ``worker``) on :data:`cli`.
"""

from commands.cli import actions, views, worker
from commands.cli.app import cli, main

__all__ = ["actions", "cli", "main", "views", "worker"]
