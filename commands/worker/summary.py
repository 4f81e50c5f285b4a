"""What one cycle did, and whether any work is left: each stage adds its counts."""

from __future__ import annotations

import msgspec

__all__ = ["CycleSummary"]


class CycleSummary(msgspec.Struct):
    """What one cycle did, and whether any work is left."""

    polled: int = 0
    submitted: int = 0
    completed: int = 0
    failed_batches: int = 0
    candidates_left: int = 0
    #: Pages this cycle tried but could not submit (uploads or a create failed): next cycle.
    deferred: int = 0
    active: int = 0
    open_intents: int = 0
    files_deleted: int = 0
    scan: dict[str, int] = {}
    #: Pages every project's creates were held back from this cycle (a quota or outage hold),
    #: why, and whether that hold has lasted as long as the back-off goes (``hold_persists``).
    held_back: int = 0
    hold: str = ""
    hold_persists: bool = False
    #: Questions about batches this cycle (polls, display-name lookups) the service answered,
    #: and ones it left unanswered (5xx, timeouts, answers that cannot be read).
    answered: int = 0
    unanswered: int = 0
    #: The last unanswered question's error, for the line that ends a blind run.
    last_error: str = ""

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing left to submit."""
        return (
            self.active == 0
            and self.open_intents == 0
            and self.candidates_left == 0
            and self.deferred == 0
        )

    @property
    def blind(self) -> bool:
        """The service answered none of this cycle's questions about batches, and nothing was
        submitted or completed: ``run --until-idle`` ends after ``BLIND_CYCLES`` in a row."""
        return (
            self.unanswered > 0 and self.answered == 0 and not self.submitted and not self.completed
        )

    @property
    def stalled(self) -> bool:
        """Nothing in flight, and all that is left is held back by a hold that persists:
        ``run --until-idle`` ends rather than waiting for ever."""
        return (
            self.active == 0
            and self.open_intents == 0
            and self.deferred == 0
            and self.hold_persists
            and self.candidates_left == self.held_back > 0
        )
