"""Retry timing and budgets (pure): the one backoff formula every retry loop uses, and when a
page's uploads are given up on."""

from __future__ import annotations


def backoff_delay(base_seconds: float, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from
    ``base_seconds`` (``base``, ``2 * base``, ``4 * base``, ...)."""
    return base_seconds * 2 ** (attempt - 1)


def upload_gives_up(
    failed_before: int, failed_now: int, *, transient: bool, max_attempts: int
) -> bool:
    """Whether a page whose upload failed ``failed_now`` times this cycle (after
    ``failed_before`` failed attempts in earlier cycles since its last success) is given up on:
    a refusal that retrying cannot mend (a 4xx, a name the client cannot send) at once, any
    other failure once the attempts reach ``max_attempts``."""
    return not transient or failed_before + failed_now >= max_attempts
