"""Every event type reaches a read model, or says that it is kept for audits only."""

from __future__ import annotations

from eventlog.events import ALL_EVENT_TYPES
from projections.projector import _handlers


def test_every_event_type_is_folded_by_a_projection_or_marked_audit_only() -> None:
    unfolded = {t.__name__ for t in ALL_EVENT_TYPES if not t.audit_only and not _handlers(t)}
    assert not unfolded, f"no projection folds {sorted(unfolded)}: fold them or mark audit_only"


def test_an_audit_only_event_type_is_folded_by_no_projection() -> None:
    folded = {t.__name__: _handlers(t) for t in ALL_EVENT_TYPES if t.audit_only}
    assert folded, "expected the upload and result-line audit events to be marked"
    wrongly = {name for name, fns in folded.items() if fns}
    assert not wrongly, f"marked audit_only but folded: {sorted(wrongly)}"
