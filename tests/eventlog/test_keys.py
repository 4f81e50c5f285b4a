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
        fits = is_number(text) and len(text.lstrip("0")) < 20 and int(text) < 2**63
        assert (value is not None) == fits
        if value is not None:
            assert str(value) == text.lstrip("0") or (value == 0 and set(text) == {"0"})
    if key_problem(key) is None:
        assert parts.year is not None and parts.page is not None


#: The largest year or page a key may have: the log's integer columns are signed 64-bit.
EDGE = str(2**63 - 1)
PAST = str(2**63)
TWENTY = "9" * 20


@pytest.mark.parametrize("number", [PAST, TWENTY, "1" + "0" * 30, "9" * 5000])
def test_a_number_past_the_64_bit_range_is_refused_naming_the_part(number: str) -> None:
    assert "year is larger than 9223372036854775807" in (key_problem(f"S:X:{number}:1") or "")
    assert "page is larger than 9223372036854775807" in (key_problem(f"S:X:2020:{number}") or "")
    # parse_key gives None for it, as for any part that is not a number the log can hold.
    assert parse_key(f"S:X:{number}:{number}") == KeyParts("S", "X", None, None)


@pytest.mark.parametrize("number", [EDGE, "0" * 40 + EDGE, "0" * 30 + "1", "0"])
def test_a_number_up_to_the_edge_is_a_number(number: str) -> None:
    assert key_problem(f"S:X:{number}:{number}") is None
    assert parse_key(f"S:X:{number}:{number}") == KeyParts("S", "X", int(number), int(number))
