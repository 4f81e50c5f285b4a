"""Progress bars for long steps (uploads, result processing): click's, on a terminal only.

The cycle reports progress through :class:`Progress`; the CLI passes :func:`for_stderr`, which is
a click progress bar when stderr is a terminal and nothing otherwise (logs, cron, CI).
"""

from __future__ import annotations

import sys
from typing import Any

from commands.worker.progress import Bar, NoProgress, NullBar, Progress


class _ClickBar:
    def __init__(self, label: str, total: int) -> None:
        import click

        self._bar: Any = click.progressbar(
            length=total, label=label, file=sys.stderr, show_pos=True, show_eta=True
        )
        self._bar.__enter__()

    def update(self, n: int) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.__exit__(None, None, None)


class ClickProgress:
    """click progress bars on stderr; steps shorter than ``min_total`` items get none."""

    def __init__(self, min_total: int = 2) -> None:
        self.min_total = min_total

    def start(self, label: str, total: int) -> Bar:
        return _ClickBar(label, total) if total >= self.min_total else NullBar()


def for_stderr() -> Progress:
    """Bars when stderr is a terminal, nothing otherwise."""
    return ClickProgress() if sys.stderr.isatty() else NoProgress()
