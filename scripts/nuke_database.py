"""The seed runbook's `scripts/nuke_database.py`: the same flags, the same code as
`python -m commands nuke` (run `python scripts/nuke_database.py --help`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.cli import cli, main

if __name__ == "__main__":
    main(command=cli.commands["nuke"], prog_name=Path(__file__).name)
