"""The seed runbook's `scripts/analyze_failures.py`: the same flags, the same code as
`python -m commands analyze-failures`, plus `--config` and `--db`
anywhere among them (run `python scripts/analyze_failures.py --help`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from commands.cli import main, standalone

if __name__ == "__main__":
    main(command=standalone("analyze-failures"), prog_name=Path(__file__).name)
