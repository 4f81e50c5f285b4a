"""Who is acting: recorded as the ``actor`` of every event a command appends."""

from __future__ import annotations

import getpass
import os
import socket


def operator_actor(command: str) -> str:
    """``operator:<user>@<host> <command>``; ``$GEMINI_BATCHES_ACTOR`` overrides the user part."""
    who = os.environ.get("GEMINI_BATCHES_ACTOR")
    if not who:
        try:
            who = f"{getpass.getuser()}@{socket.gethostname()}"
        except (KeyError, OSError):
            who = f"uid{os.getuid()}@{socket.gethostname()}"
    return f"operator:{who} {command}"
