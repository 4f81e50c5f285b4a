"""How the worker reports progress on long steps (uploads, results); the CLI supplies a bar."""

from __future__ import annotations

from typing import Protocol


class Bar(Protocol):
    def update(self, n: int) -> None: ...

    def close(self) -> None: ...


class Progress(Protocol):
    def start(self, label: str, total: int) -> Bar: ...


class NullBar:
    """A bar that shows nothing."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


class NoProgress:
    """Progress reporting that reports nothing."""

    def start(self, label: str, total: int) -> Bar:
        return NullBar()
