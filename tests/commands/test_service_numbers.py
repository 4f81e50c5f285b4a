"""Every number the service sends through the port (``batchStats`` counts, file sizes) is
validated and clamped into ``0..MAX_SERVICE_COUNT``, never raising (issue 12)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.gemini.port import MAX_SERVICE_COUNT, BatchStats, service_count, stats_of

HOSTILE: list[tuple[Any, int]] = [
    (7, 7),
    ("7", 7),
    (" 12 ", 12),
    ("+3", 3),
    (0, 0),
    (-5, 0),
    ("-5", 0),
    (12.0, 12),
    (-12.0, 0),
    (1e300, MAX_SERVICE_COUNT),
    (10**40, MAX_SERVICE_COUNT),
    ("9" * 5000, MAX_SERVICE_COUNT),  # int() itself refuses a string this long
    (float("inf"), 0),
    (float("-inf"), 0),
    (float("nan"), 0),
    (2.5, 0),
    ("2.5", 0),
    ("1e3", 0),
    ("Infinity", 0),
    ("NaN", 0),
    ("", 0),
    ("many", 0),
    ("١٢", 0),  # Arabic-Indic digits: int() takes them, the wire format does not
    ("²", 0),
    (True, 0),
    (False, 0),
    (None, 0),
    ([1], 0),
    ({"n": 1}, 0),
]


@pytest.mark.parametrize(("value", "count"), HOSTILE, ids=[repr(v)[:20] for v, _ in HOSTILE])
def test_a_number_from_the_service_is_validated_and_clamped(value: Any, count: int) -> None:
    assert service_count(value) == count


@pytest.mark.parametrize(("value", "count"), HOSTILE, ids=[repr(v)[:20] for v, _ in HOSTILE])
def test_batch_stats_of_hostile_counts_are_clamped(value: Any, count: int) -> None:
    metadata = {"batchStats": {"requestCount": value, "pendingRequestCount": value}}
    assert stats_of(metadata) == BatchStats(requests=count, pending=count)


@pytest.mark.parametrize(
    "metadata", [None, 7, "x", [], {}, {"batchStats": "x"}, {"batchStats": []}]
)
def test_batch_stats_that_are_not_an_object_are_none(metadata: Any) -> None:
    assert stats_of(metadata) is None


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["requestCount", "successfulRequestCount", "failed_request_count", "x"]),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.floats(), st.text(), st.lists(st.integers())
        ),
    )
)
def test_stats_of_never_raises_and_stays_in_range(raw: dict[str, Any]) -> None:
    stats = stats_of({"batchStats": raw})
    assert stats is not None or not raw  # an empty batchStats is none
    if stats is None:
        return
    for n in (stats.requests, stats.succeeded, stats.failed, stats.pending):
        assert isinstance(n, int) and 0 <= n <= MAX_SERVICE_COUNT
