"""Named points between side effects, where a test harness can kill the process.

Production code calls :func:`reach` at each point; it does nothing unless a hook was installed,
and only the crash-test harness (``tests/crash/worker.py``) installs one. No environment variable
or flag of the shipped program can trigger a crash.

Besides the named :data:`POINTS`, the store reaches ``after_append:<EventType>`` once a write
transaction holding an event of that type has committed.
"""

from __future__ import annotations

from collections.abc import Callable

POINTS = (
    "after_document_page_cut",
    "after_image_upload",
    "after_upload_events",
    "after_request_file_upload",
    "after_request_file_active",
    "after_intent",
    "after_create_before_event",
    "after_submitted_event",
    "after_deferred_event",
    "after_deferred_lookup",
    "after_state_observed",
    "after_succeeded_event",
    "during_result_download",
    "after_output_write",
    "after_result_events",
    "after_completed_event",
    "after_results_unavailable",
    "after_failed_event",
    "after_scan_events",
    "during_projection_update",
    "after_file_delete",
    "after_job_delete",
    "after_service_cancel",
)
APPEND_PREFIX = "after_append:"

_hook: Callable[[str], None] | None = None


def install(hook: Callable[[str], None] | None) -> None:
    """Install (or with None remove) the function called at every point."""
    global _hook
    _hook = hook


def reach(point: str) -> None:
    """Mark that execution reached ``point`` (a no-op in production)."""
    if _hook is not None:
        _hook(point)


def active() -> bool:
    return _hook is not None
