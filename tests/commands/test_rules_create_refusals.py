"""Table tests of the bounds on creates that cannot succeed by retrying: a refused create counts
a failure of each page (dead-lettered at ``max_retries``), a page refused again goes in a batch
of its own, and a create left unanswered again and again is deferred with a back-off."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch
from commands.rules.admission import (
    ALONE_AFTER_FAILURES,
    MAX_HALVINGS,
    hold_persists,
    next_chunk,
    pages_alone,
    refused_last,
)
from commands.rules.reconcile import judge_unanswered_lookup
from commands.rules.submit import (
    CREATE_REFUSED,
    CreateContext,
    OpenIntent,
    judge_create_error,
)
from eventlog.events import (
    BatchSubmissionAbandoned,
    BatchSubmissionDeferred,
    BatchSubmitted,
    RecordDeadLettered,
    RecordFailed,
)
from eventlog.timestamps import format_ts

NAME = "gb-run1-001"
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
INTENT = OpenIntent(NAME, "gemini-2.5-flash", "files/req", ["a", "b"])


def _ctx(
    failures: dict[str, int] | None = None, max_retries: int = 3, halvings: int = 0
) -> CreateContext:
    return CreateContext(
        INTENT,
        NOW,
        halvings=halvings,
        backoff_seconds=60,
        backoff_max_seconds=600,
        max_retries=max_retries,
        failures=failures or {},
    )


def _err(code: int | None, transient: bool = False, status: str = "") -> GatewayError:
    return GatewayError(f"create {NAME}: {code} bad", code=code, transient=transient, status=status)


def _failed(key: str, err: GatewayError) -> RecordFailed:
    return RecordFailed(
        record_key=key,
        batch_id=NAME,
        error_type=CREATE_REFUSED,
        message=f"the service refused the create of {NAME}: {err}",
        model="gemini-2.5-flash",
    )


@pytest.mark.parametrize(
    ("failures", "max_retries", "dead"),
    [
        pytest.param({}, 3, [], id="first_refusal"),
        pytest.param({"a": 1}, 3, [], id="second_refusal"),
        pytest.param({"a": 2}, 3, ["a"], id="third_dead_letters_a"),
        pytest.param({"a": 2, "b": 5}, 3, ["a", "b"], id="both_at_the_limit"),
        pytest.param({}, 1, ["a", "b"], id="max_retries_1"),
    ],
)
def test_a_refused_create_fails_each_page_and_dead_letters_at_max_retries(
    failures: dict[str, int], max_retries: int, dead: list[str]
) -> None:
    err = _err(400, status="INVALID_ARGUMENT")
    verdict = judge_create_error(NAME, err, _ctx(failures, max_retries))
    assert verdict.outcome == "refused"
    expected: list[object] = [
        BatchSubmissionAbandoned(display_name=NAME, error_type="http_400", message=str(err))
    ]
    for key in ["a", "b"]:
        expected.append(_failed(key, err))
        if key in dead:
            count = failures.get(key, 0) + 1
            expected.append(
                RecordDeadLettered(record_key=key, failures=count, max_retries=max_retries)
            )
    assert verdict.events == expected


@pytest.mark.parametrize("code", [400, 409, 413, 422, None])
def test_every_refusal_counts_but_not_without_max_retries(code: int | None) -> None:
    err = _err(code)
    counted = judge_create_error(NAME, err, _ctx())
    assert [type(e) for e in counted.events] == [
        BatchSubmissionAbandoned,
        RecordFailed,
        RecordFailed,
    ]
    # No context, or a context without max_retries: as before, nothing is counted.
    assert [type(e) for e in judge_create_error(NAME, err).events] == [BatchSubmissionAbandoned]
    assert [type(e) for e in judge_create_error(NAME, err, _ctx(max_retries=0)).events] == [
        BatchSubmissionAbandoned
    ]


@pytest.mark.parametrize("code", [401, 403, 404])
def test_a_refused_key_or_model_stops_the_run_and_counts_no_page(code: int) -> None:
    """No page can cure a refused key (401, 403) or an unknown model (404): the intent is
    abandoned (its pages free, no failure, no dead letter) and the cycle stops the run."""
    verdict = judge_create_error(NAME, _err(code), _ctx(failures={"a": 2}))
    assert verdict.outcome == "stop"
    assert [type(e) for e in verdict.events] == [BatchSubmissionAbandoned]
    # Without a context (the old rule), a refusal as before.
    assert judge_create_error(NAME, _err(code)).outcome == "refused"


@pytest.mark.parametrize(
    ("err", "outcome"),
    [
        pytest.param(_err(429, True), "quota", id="429"),
        pytest.param(_err(400, status="FAILED_PRECONDITION"), "precondition", id="precondition"),
        pytest.param(_err(503, True), "unanswered", id="503"),
        pytest.param(_err(None, True), "unanswered", id="timeout"),
    ],
)
def test_quota_precondition_and_transient_errors_count_no_failure(
    err: GatewayError, outcome: str
) -> None:
    verdict = judge_create_error(NAME, err, _ctx())
    assert verdict.outcome == outcome
    assert not [e for e in verdict.events if isinstance(e, RecordFailed | RecordDeadLettered)]


def test_pages_alone_after_a_second_failure() -> None:
    assert ALONE_AFTER_FAILURES == 2
    assert pages_alone({"a": 1, "b": 2, "c": 5}) == {"b": 2, "c": 5}
    assert pages_alone({}) == {}


@pytest.mark.parametrize(
    ("keys", "refusals", "order"),
    [
        pytest.param(["a", "b", "c"], {}, ["a", "b", "c"], id="none_refused"),
        pytest.param(["a", "b", "c"], {"a": 1}, ["b", "c", "a"], id="refused_go_last"),
        pytest.param(
            ["a", "b", "c", "d"], {"a": 2, "c": 1, "d": 1}, ["b", "c", "d", "a"], id="fewest_first"
        ),
    ],
)
def test_refused_last(keys: list[str], refusals: dict[str, int], order: list[str]) -> None:
    assert refused_last(keys, refusals) == order


@pytest.mark.parametrize(
    ("keys", "refusals", "size", "take"),
    [
        pytest.param(["a", "b", "c"], {}, 2, 2, id="plain_size"),
        pytest.param(["a", "b", "c"], {}, 5, 3, id="fewer_than_size"),
        pytest.param(["a", "b", "c"], {"a": 1}, 3, 1, id="refused_alone"),
        pytest.param(["a", "b", "c"], {"c": 1}, 3, 2, id="stops_before_refused"),
        pytest.param(["a", "b", "c"], {"c": 1}, 1, 1, id="size_1"),
        pytest.param([], {}, 3, 0, id="empty"),
        pytest.param(["a"], {}, 0, 0, id="size_0"),
    ],
)
def test_next_chunk(keys: list[str], refusals: dict[str, int], size: int, take: int) -> None:
    assert next_chunk(keys, refusals, size) == take


def _job() -> RemoteBatch:
    return RemoteBatch(name="batches/1", display_name=NAME, state="JOB_STATE_PENDING")


@pytest.mark.parametrize(
    ("found", "in_a_row", "halvings", "outcome", "wait_halvings"),
    [
        pytest.param([], 1, 0, "not_created", None, id="first_absent_abandoned"),
        pytest.param([], 2, 0, "deferred", 1, id="second_deferred"),
        pytest.param([], 5, 3, "deferred", 4, id="grows"),
        pytest.param([], 9, MAX_HALVINGS, "deferred", MAX_HALVINGS, id="capped"),
        pytest.param(["job"], 3, 2, "adopted", None, id="found_adopted"),
    ],
)
def test_judge_unanswered_lookup(
    found: list[str], in_a_row: int, halvings: int, outcome: str, wait_halvings: int | None
) -> None:
    jobs = [_job() for _ in found]
    verdict = judge_unanswered_lookup(INTENT, jobs, in_a_row, _ctx(halvings=halvings))
    assert verdict.outcome == outcome
    if outcome == "not_created":
        [event] = verdict.events
        assert isinstance(event, BatchSubmissionAbandoned) and event.error_type == "not_created"
    elif outcome == "adopted":
        assert [type(e) for e in verdict.events] == [BatchSubmitted]
    else:
        assert wait_halvings is not None
        [event] = verdict.events
        wait = min(600, 60 * 2 ** (wait_halvings - 1))
        assert event == BatchSubmissionDeferred(
            display_name=NAME,
            reason="service_unavailable",
            message=f"its create went unanswered ({in_a_row} in a row) and made no job",
            model=INTENT.model,
            input_file=INTENT.input_file,
            record_keys=INTENT.record_keys,
            retry_after=format_ts(NOW + timedelta(seconds=wait)),
            halvings=wait_halvings,
        )


@pytest.mark.parametrize(
    ("halvings", "persists"),
    [(0, False), (1, False), (MAX_HALVINGS - 1, False), (MAX_HALVINGS, True)],
)
def test_hold_persists_once_the_back_off_is_spent(halvings: int, persists: bool) -> None:
    assert hold_persists(halvings) is persists
