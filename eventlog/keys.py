"""Record keys: ``State:School:Year:Page``, e.g. ``California:LincolnHigh:2023:4``."""

from __future__ import annotations

from typing import NamedTuple


class KeyParts(NamedTuple):
    state: str
    school: str
    year: int | None
    page: int | None


def parse_key(key: str) -> KeyParts:
    """Split a record key; a part that is missing or not a number comes back empty/None.

    Never raises: keys in the log were validated when written, and analysis must not crash on an
    odd one.
    """
    parts = key.split(":")
    state = parts[0] if parts else ""
    school = parts[1] if len(parts) > 1 else ""
    year = _int_or_none(parts[2]) if len(parts) > 2 else None
    page = _int_or_none(parts[3]) if len(parts) > 3 else None
    return KeyParts(state, school, year, page)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None
