"""Table tests of the create path's pure rules: a 429 closed as deferred, a FAILED_PRECONDITION
created again, the admission's back-off and how it grows back, the lookup of a deferred name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.admission import (
    MAX_HALVINGS,
    admission_halvings,
    admitted_batch_size,
    held_back,
    quota_backoff_seconds,
)
from commands.rules.cleanup import (
    IMAGE_REUSE_HOURS,
    image_reusable_since,
)
from commands.rules.reconcile import judge_deferred_lookup
from commands.rules.submit import (
    CreateContext,
    CreateVerdict,
    OpenIntent,
    judge_create_error,
    submit_goes_on,
)
from eventlog.events import (
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmitted,
    DeferredSubmissionChecked,
)
from eventlog.timestamps import format_ts

NAME = "gb-run1-001"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
INTENT = OpenIntent(NAME, "gemini-2.5-flash", "files/req", ["a", "b"])


def _ctx(halvings: int = 0, attempt: int = 1) -> CreateContext:
    return CreateContext(
        INTENT,
        NOW,
        halvings=halvings,
        backoff_seconds=60,
        backoff_max_seconds=600,
        precondition_attempt=attempt,
        precondition_attempts=3,
    )


def _err(code: int | None, transient: bool, status: str = "") -> GatewayError:
    return GatewayError(
        f"create {NAME}: {code} {status}", code=code, transient=transient, status=status
    )


def _deferred(
    reason: str, message: str, retry_after: str, halvings: int
) -> BatchSubmissionDeferred:
    return BatchSubmissionDeferred(
        display_name=NAME,
        reason=reason,
        message=message,
        model=INTENT.model,
        input_file=INTENT.input_file,
        record_keys=INTENT.record_keys,
        retry_after=retry_after,
        halvings=halvings,
    )


Q = _err(429, True, "RESOURCE_EXHAUSTED")
P = _err(400, False, "FAILED_PRECONDITION")


@pytest.mark.parametrize(
    ("error", "context", "verdict"),
    [
        pytest.param(
            Q,
            _ctx(0),
            CreateVerdict(
                "quota", [_deferred("quota", str(Q), format_ts(NOW + timedelta(seconds=60)), 1)]
            ),
            id="first_429_waits_base_and_halves",
        ),
        pytest.param(
            Q,
            _ctx(2),
            CreateVerdict(
                "quota", [_deferred("quota", str(Q), format_ts(NOW + timedelta(seconds=240)), 3)]
            ),
            id="third_429_waits_4x",
        ),
        pytest.param(
            Q,
            _ctx(MAX_HALVINGS),
            CreateVerdict(
                "quota",
                [_deferred("quota", str(Q), format_ts(NOW + timedelta(seconds=600)), MAX_HALVINGS)],
            ),
            id="429_capped",
        ),
        pytest.param(P, _ctx(0, attempt=1), CreateVerdict("precondition"), id="precondition_again"),
        pytest.param(P, _ctx(0, attempt=2), CreateVerdict("precondition"), id="precondition_2nd"),
        pytest.param(
            P,
            _ctx(1, attempt=3),
            CreateVerdict(
                "deferred",
                [
                    _deferred(
                        "not_active",
                        f"the request file was still not ACTIVE after 3 creates: {P}",
                        "",
                        1,
                    )
                ],
            ),
            id="precondition_exhausted_deferred",
        ),
        pytest.param(
            _err(503, True), _ctx(), CreateVerdict("unanswered"), id="5xx_still_unanswered"
        ),
        pytest.param(
            _err(None, True), _ctx(), CreateVerdict("unanswered"), id="timeout_unanswered"
        ),
        pytest.param(
            _err(400, False, "INVALID_ARGUMENT"),
            _ctx(),
            CreateVerdict(
                "refused",
                [
                    BatchSubmissionAbandoned(
                        display_name=NAME,
                        error_type="http_400",
                        message=str(_err(400, False, "INVALID_ARGUMENT")),
                    )
                ],
            ),
            id="other_400_refused",
        ),
        pytest.param(Q, None, CreateVerdict("unanswered"), id="429_without_context_as_before"),
    ],
)
def test_judge_create_error(
    error: GatewayError, context: CreateContext | None, verdict: CreateVerdict
) -> None:
    assert judge_create_error(NAME, error, context) == verdict


@pytest.mark.parametrize(
    ("halvings", "successes", "want"),
    [(0, 0, 0), (3, 0, 3), (3, 1, 2), (3, 3, 0), (3, 9, 0), (1, 0, 1)],
)
def test_admission_grows_back_one_halving_per_success(
    halvings: int, successes: int, want: int
) -> None:
    assert admission_halvings(halvings, successes) == want


@pytest.mark.parametrize(
    ("size", "halvings", "want"),
    [(100, 0, 100), (100, 1, 50), (100, 3, 12), (8, 3, 1), (8, 6, 1), (1, 1, 1)],
)
def test_admitted_batch_size(size: int, halvings: int, want: int) -> None:
    assert admitted_batch_size(size, halvings) == want


@pytest.mark.parametrize(
    ("halvings", "want"), [(0, 60.0), (1, 60.0), (2, 120.0), (3, 240.0), (5, 600.0), (9, 600.0)]
)
def test_quota_backoff_doubles_up_to_its_cap(halvings: int, want: float) -> None:
    assert quota_backoff_seconds(halvings, 60.0, 600.0) == want


@pytest.mark.parametrize(
    ("retry_after", "held"),
    [
        ("", False),
        (format_ts(NOW + timedelta(seconds=1)), True),
        (format_ts(NOW), False),
        (format_ts(NOW - timedelta(seconds=1)), False),
    ],
)
def test_held_back(retry_after: str, held: bool) -> None:
    assert held_back(retry_after, NOW) is held


def test_images_are_reused_while_young() -> None:
    assert image_reusable_since(NOW) == format_ts(NOW - timedelta(hours=IMAGE_REUSE_HOURS))
    assert IMAGE_REUSE_HOURS < 48


def test_a_deferred_name_not_found_is_checked_and_one_found_is_adopted() -> None:
    nothing = judge_deferred_lookup(INTENT, [])
    assert nothing.outcome == "not_created"
    assert nothing.events == [DeferredSubmissionChecked(display_name=NAME)]
    job = RemoteBatch("batches/x", NAME, "JOB_STATE_PENDING")
    found = judge_deferred_lookup(INTENT, [job])
    assert found.outcome == "adopted" and found.batch_id == "batches/x"
    assert found.events == [
        BatchSubmitted(
            batch_id="batches/x",
            display_name=NAME,
            model=INTENT.model,
            record_keys=INTENT.record_keys,
            input_file=INTENT.input_file,
            state="JOB_STATE_PENDING",
        )
    ]


def test_a_quota_answer_stops_the_submit_loop() -> None:
    assert submit_goes_on("quota") is False
