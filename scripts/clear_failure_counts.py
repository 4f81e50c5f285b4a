"""The seed runbook's `scripts/clear_failure_counts.py`: the same flags, the same code as
`python -m commands reset-failures`, plus `--config` and `--db`
anywhere among them (run `python scripts/clear_failure_counts.py --help`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.cli import main, standalone

if __name__ == "__main__":
    main(command=standalone("reset-failures"), prog_name=Path(__file__).name)
