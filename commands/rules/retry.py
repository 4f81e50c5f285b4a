"""Retry timing and budgets (pure): the one backoff formula every retry loop uses, when a page's
uploads are given up on, and the one dead-letter rule (:func:`dead_letter`)."""

from __future__ import annotations

from eventlog.events import RecordDeadLettered


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


def dead_letter(record_key: str, failures: int, max_retries: int) -> RecordDeadLettered | None:
    """The one dead-letter rule: a page with ``failures`` recorded failures is dead-lettered once
    they reach ``max_retries`` (its ``RecordDeadLettered``); None while it may be tried again."""
    if failures < max_retries:
        return None
    return RecordDeadLettered(record_key=record_key, failures=failures, max_retries=max_retries)


#: A cut answer's retry asks for this many times the output limit of the attempt before.
OUTPUT_LIMIT_FACTOR = 2


def output_limit(base: int, ceiling: int, cuts: int) -> int | None:
    """The ``maxOutputTokens`` to send for a page whose answers were cut at the output limit
    ``cuts`` times (``finish_max_tokens``): ``base`` doubled once per cut, at most ``ceiling``
    (and never below ``base``); None when ``base`` is 0 (nothing sent: the model's own limit,
    which a retry cannot raise)."""
    if base <= 0:
        return None
    return max(base, min(ceiling, base * OUTPUT_LIMIT_FACTOR ** max(0, min(cuts, 30))))
