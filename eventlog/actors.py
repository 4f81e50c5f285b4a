"""Who appended an event: the ``actor`` of its envelope. A worker run is ``run:<run id>``; an
operator command is ``operator:<user>@<host> <command>`` (made by ``commands.actor``)."""

from __future__ import annotations

RUN_PREFIX = "run:"


def run_actor(run_id: str) -> str:
    """The actor of every event a worker run appends."""
    return f"{RUN_PREFIX}{run_id}"


def run_of(actor: str) -> str:
    """``run:<id>`` -> ``<id>``; any other actor is kept as it is."""
    return actor.removeprefix(RUN_PREFIX)
