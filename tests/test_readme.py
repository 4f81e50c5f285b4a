"""The README's lists of events, projection tables and audit views are the code's lists.

As ``tests/commands/test_help.py`` holds the README to the commands: a new event, projection or
audit view fails here until the README names it, and a name the code dropped fails too.
"""

from __future__ import annotations

import re

from eventlog.events import ALL_EVENT_TYPES
from projections import SPECS
from projections.replay import VIEWS
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def _paragraph(opening: str) -> str:
    """The README paragraph (or list item) that starts with ``opening``."""
    start = README.index(opening)
    end = README.find("\n\n", start)
    nxt = README.find("\n* ", start + 1)
    return README[start : min(e for e in (end, nxt, len(README)) if e != -1)]


def _backticked(text: str, pattern: str) -> list[str]:
    return [name for name in re.findall(r"`([^`]+)`", text) if re.fullmatch(pattern, name)]


def test_the_readme_lists_every_event_type_once() -> None:
    names = _backticked(_paragraph("Events (`eventlog/events.py`)"), r"[A-Z][A-Za-z]+")
    assert sorted(names) == sorted(t.__name__ for t in ALL_EVENT_TYPES)


def test_the_readme_lists_every_projection_table_once() -> None:
    item = _paragraph("* **The tables operators know are projections.**")
    names = _backticked(item[: item.index("folded from the events")], r"[a-z]+(_[a-z]+)*")
    assert sorted(names) == sorted(spec.name for spec in SPECS)


def test_the_readme_diagram_shows_every_projection_table() -> None:
    lines = README.splitlines()
    top = next(i for i, line in enumerate(lines) if "one BEGIN IMMEDIATE transaction" in line)
    bottom = next(i for i in range(top, len(lines)) if lines[i].lstrip().startswith("└"))
    column = lines[top + 1].index("──fold")  # where the box's right-hand column starts
    names = [
        name
        for line in lines[top + 2 : bottom]
        if not line[:column].strip(" │")  # a line of the right-hand column only
        for name in re.findall(r"[a-z_]+", line[column:].split("│")[0])  # inside the box
        if name != "projection_checkpoints"  # the projector's own bookkeeping, not a SPEC
    ]
    assert sorted(names) == sorted(spec.name for spec in SPECS)


def test_the_readme_lists_every_audit_view() -> None:
    replay_item = _paragraph("* **Replay is an audit.**")
    listed = replay_item[replay_item.index("the audit views (") :].split(")")[0]
    assert _backticked(listed, r"[a-z-]+") == list(VIEWS)
    show = re.search(r"--show ([a-z|\\-]+)\]", README)
    assert show is not None
    assert show.group(1).split("\\|") == list(VIEWS)
