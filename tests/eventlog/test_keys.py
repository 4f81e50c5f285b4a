"""Record keys: one definition of a valid key; ``parse_key`` never raises."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventlog.keys import KeyParts, is_number, key_problem, parse_key

#: Strings ``str.isdigit()`` accepts that are not the operator's numbers: superscripts and
#: circled digits (``int()`` refuses them), other scripts' digits (``int()`` reads them).
ODD_DIGITS = ["²", "¹²", "①", "٣", "٢٠٢٣", "\uff12\uff10\uff12\uff13", "\U0001d7d1", "३"]


@pytest.mark.parametrize("text", ODD_DIGITS)
def test_only_ascii_digits_are_numbers(text: str) -> None:
    assert text.isdigit()  # what the scanner used to trust
    assert not is_number(text)
    assert parse_key(f"S:X:{text}:{text}") == KeyParts("S", "X", None, None)
    assert (
        key_problem(f"S:X:{text}:1")
        == f"record key 'S:X:{text}:1': year is not a number (ASCII digits 0-9)"
    )
    assert "page is not a number" in (key_problem(f"S:X:2020:{text}") or "")


@pytest.mark.parametrize(
    ("key", "parts"),
    [
        ("California:LincolnHigh:2023:4", KeyParts("California", "LincolnHigh", 2023, 4)),
        ("S:X:0042:007", KeyParts("S", "X", 42, 7)),
        ("S:X", KeyParts("S", "X", None, None)),
        ("", KeyParts("", "", None, None)),
        ("S:X:2020:" + "9" * 5000, KeyParts("S", "X", 2020, None)),  # beyond int()'s digit limit
        ("S:X:-1:+2", KeyParts("S", "X", None, None)),
    ],
)
def test_parse_key(key: str, parts: KeyParts) -> None:
    assert parse_key(key) == parts


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("California:LincolnHigh:2023:4", None),
        ("S:X:2020", "does not have 4 parts"),
        ("S:X:2020:4:5", "does not have 4 parts"),
        (":X:2020:4", "state name is empty"),
        ("S:..:2020:4", "school name is '..'"),
        ("S:X:20a0:4", "year is not a number"),
        ("S:X:2020:4.png", "page is not a number"),
    ],
)
def test_key_problem_names_the_part(key: str, problem: str | None) -> None:
    found = key_problem(key)
    assert found == problem if problem is None else problem in (found or "")


@given(st.text())
def test_parse_key_never_raises_and_its_numbers_are_valid(key: str) -> None:
    parts = parse_key(key)
    for text, value in zip(key.split(":")[2:4], parts[2:4], strict=False):
        assert (value is not None) == (is_number(text) and len(text) < 4000)
        if value is not None:
            assert str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"})
    if key_problem(key) is None:
        assert parts.year is not None and parts.page is not None
