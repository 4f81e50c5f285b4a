"""When a page's uploads are given up on (pure), and the names the SDK adapter sends."""

from __future__ import annotations

import pytest

from commands.gemini.uploads import safe_display_name
from commands.rules.retry import upload_gives_up


@pytest.mark.parametrize(
    ("before", "now", "transient", "limit", "gives_up"),
    [
        pytest.param(0, 3, True, 12, False, id="first_cycle_within_budget"),
        pytest.param(9, 3, True, 12, True, id="budget_reached_exactly"),
        pytest.param(10, 3, True, 12, True, id="budget_passed"),
        pytest.param(8, 3, True, 12, False, id="one_short"),
        pytest.param(0, 1, False, 12, True, id="a_refusal_gives_up_at_once"),
        pytest.param(0, 1, True, 1, True, id="budget_of_one"),
    ],
)
def test_upload_gives_up(
    before: int, now: int, transient: bool, limit: int, gives_up: bool
) -> None:
    assert upload_gives_up(before, now, transient=transient, max_attempts=limit) is gives_up


@pytest.mark.parametrize(
    "name",
    ["Zürich:A:2020:1", "a\nb:c:2020:1", "東京:学校:2020:1", "x\u2028y", "tab\there", "z" * 600],
)
def test_an_unsafe_display_name_becomes_printable_ascii_and_stays_distinct(name: str) -> None:
    safe = safe_display_name(name)
    assert safe.isascii() and safe.isprintable() and len(safe) <= 213
    assert safe != safe_display_name(name + "2")


def test_a_plain_name_is_sent_as_it_is() -> None:
    assert safe_display_name("Ohio:Lincoln:2020:1") == "Ohio:Lincoln:2020:1"
