"""Retry timing: the one backoff formula every retry loop uses (pure)."""

from __future__ import annotations


def backoff_delay(base_seconds: float, attempt: int) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential from
    ``base_seconds`` (``base``, ``2 * base``, ``4 * base``, ...)."""
    return base_seconds * 2 ** (attempt - 1)
