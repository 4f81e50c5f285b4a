"""Record keys: ``State:School:Year:Page``, e.g. ``California:LincolnHigh:2023:4``.

The one definition of a valid key, used by the scanner (a path that breaks it is an
``InputRejected``, never a page), by :func:`parse_key` and so by the projections. A year and a
page are *numbers*: ASCII digits ``0-9`` only. ``str.isdigit()`` also accepts superscripts
(``²``, which ``int()`` refuses) and other scripts' digits (``٣``, which ``int()`` reads as 3,
so ``٣.png`` and ``3.png`` would be two keys for one page number): neither is a number here.
Nor is one larger than :data:`MAX_NUMBER`: the log stores years and pages in signed 64-bit
columns (SQLite's INTEGER, PostgreSQL's BIGINT), so the rule is the same on both backends.
"""

from __future__ import annotations

from typing import NamedTuple

#: The parts of a key, in order, as they are named in reasons.
PARTS = ("state", "school", "year", "page")
#: The largest year or page number: the largest signed 64-bit integer, what the log's columns
#: hold (a larger one would fail the append that first stores it).
MAX_NUMBER = 2**63 - 1


class KeyParts(NamedTuple):
    state: str
    school: str
    year: int | None
    page: int | None


def is_number(text: str) -> bool:
    """True for a non-empty run of ASCII digits: exactly what ``int()`` reads as the number the
    operator sees (the same test the scanner uses for a year folder and a page file)."""
    return text.isascii() and text.isdigit()


def fits(digits: str) -> bool:
    """True if ``digits`` (ASCII digits, leading zeros allowed) is at most :data:`MAX_NUMBER`;
    never converts a long string (``int()`` refuses more than 4,300 digits)."""
    significant = digits.lstrip("0")
    return len(significant) < 19 or (len(significant) == 19 and int(significant) <= MAX_NUMBER)


def name_problem(name: str, what: str) -> str | None:
    """Why ``name`` cannot be the ``what`` part (state, school, year, page) of a key; None if it
    can."""
    if not name:
        return f"{what} name is empty"
    if ":" in name:
        return f"{what} name contains ':' (the record key separator)"
    if "\\" in name or "/" in name:
        return f"{what} name contains a path separator"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return f"{what} name contains a control character"
    if name in (".", ".."):
        return f"{what} name is '{name}'"
    if what in ("year", "page") and not is_number(name):
        return f"{what} is not a number (ASCII digits 0-9)"
    if what in ("year", "page") and not fits(name):
        return f"{what} is larger than {MAX_NUMBER} (the log stores 64-bit numbers)"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid record key; None if it is."""
    parts = key.split(":")
    if len(parts) != len(PARTS):
        return f"record key {key!r} does not have {len(PARTS)} parts"
    for part, what in zip(parts, PARTS, strict=True):
        problem = name_problem(part, what)
        if problem is not None:
            return f"record key {key!r}: {problem}"
    return None


def parse_key(key: str) -> KeyParts:
    """Split a record key; a part that is missing, not a number (:func:`is_number`) or larger than
    :data:`MAX_NUMBER` comes back empty/None.

    Never raises, whatever the string: keys in the log were validated when written, and
    analysis must not crash on an odd one.
    """
    parts = key.split(":")
    state = parts[0] if parts else ""
    school = parts[1] if len(parts) > 1 else ""
    year = _int_or_none(parts[2]) if len(parts) > 2 else None
    page = _int_or_none(parts[3]) if len(parts) > 3 else None
    return KeyParts(state, school, year, page)


def _int_or_none(text: str) -> int | None:
    if not is_number(text) or not fits(text):
        return None
    return int(text.lstrip("0") or "0")  # leading zeros count towards int()'s digit limit
