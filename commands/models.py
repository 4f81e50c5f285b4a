"""The model table (``commands/models.toml``, shipped in the package): per Gemini model family,
its list prices and the input tokens of one image or one PDF page at each media resolution, each
figure with its source in the file.

:data:`TABLE` is read once, at import, and validated (a malformed table fails the import, not a
run); :func:`row_for` is the lookup the estimator uses (one warning per unknown model), the
arithmetic on a row is :func:`commands.rules.tokens.media_tokens` (pure). The emulator bills by
the same table.
"""

from __future__ import annotations

import logging
import threading
import tomllib
from importlib import resources
from typing import Literal

import msgspec

__all__ = [
    "RESOLUTIONS",
    "TABLE",
    "MediaRule",
    "ModelRow",
    "ModelTable",
    "Resolution",
    "TileRule",
    "load_table",
    "row_for",
]

log = logging.getLogger("commands.models")

Resolution = Literal["unspecified", "low", "medium", "high"]
#: The ``[gemini] media_resolution`` values, in the order ``estimate`` shows them.
RESOLUTIONS: tuple[Resolution, ...] = ("unspecified", "low", "medium", "high")
#: A page's tokens at one resolution: a count, or the tile rule on its pixel size.
Tokens = int | Literal["tiles"]


class TileRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Gemini 2.x's image rule: ``tokens`` for an image whose sides are both at most
    ``small_side``, else ``tokens`` a ``side`` x ``side`` tile."""

    tokens: int
    small_side: int
    side: int
    source: str = ""


class MediaRule(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One media kind's tokens a page at each resolution."""

    unspecified: Tokens
    low: Tokens
    medium: Tokens
    high: Tokens

    def at(self, resolution: str) -> Tokens:
        """The figure for ``resolution`` (anything not low / medium / high: unspecified)."""
        if resolution in ("low", "medium", "high"):
            value: Tokens = getattr(self, resolution)
            return value
        return self.unspecified


class ModelRow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A model family: its name prefixes, list prices (None: the default row has none), the
    media rules and the tile rule its ``"tiles"`` figures use."""

    family: str
    image: MediaRule
    pdf: MediaRule
    source: str
    prefixes: tuple[str, ...] = ()
    input_per_million: float | None = None
    output_per_million: float | None = None
    price_source: str = ""
    tiles: TileRule | None = None

    def matches(self, model: str) -> int:
        """The length of this row's longest prefix that names ``model`` (0: none): the prefix
        itself, or the prefix followed by ``-`` and more."""
        return max(
            (len(p) for p in self.prefixes if model == p or model.startswith(p + "-")),
            default=0,
        )


class ModelTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tile_rule: TileRule
    default: ModelRow
    families: tuple[ModelRow, ...] = msgspec.field(default=(), name="family")

    def row(self, model: str) -> ModelRow | None:
        """The family whose prefix names ``model`` best (the longest match); None if none."""
        name = model.removeprefix("models/")
        best = max(self.families, key=lambda r: r.matches(name), default=None)
        return best if best is not None and best.matches(name) else None


def load_table(text: str | None = None) -> ModelTable:
    """The table parsed from ``text`` (default: the shipped ``models.toml``), each row given the
    table's tile rule. Raises ``msgspec.ValidationError`` or ``tomllib.TOMLDecodeError``."""
    if text is None:
        text = resources.files("commands").joinpath("models.toml").read_text(encoding="utf-8")
    table = msgspec.convert(tomllib.loads(text), ModelTable)
    tiles = table.tile_rule

    def with_tiles(row: ModelRow) -> ModelRow:
        return msgspec.structs.replace(row, tiles=tiles)

    return msgspec.structs.replace(
        table,
        default=with_tiles(table.default),
        families=tuple(with_tiles(r) for r in table.families),
    )


TABLE = load_table()

_warned: set[str] = set()
_warned_lock = threading.Lock()


def row_for(model: str, table: ModelTable = TABLE) -> ModelRow:
    """``model``'s row, or the default rule with ONE warning per model name and process (the
    estimator is made every cycle: a warning each time would drown the log)."""
    row = table.row(model)
    if row is not None:
        return row
    with _warned_lock:
        first = model not in _warned
        _warned.add(model)
    if first:
        log.warning(
            "model %r is not in the model table (commands/models.toml): its image and PDF "
            "page tokens are estimated by %s, whatever [gemini] media_resolution says, and "
            "it has no built-in price ([pricing.models] can give one)",
            model,
            table.default.family,
        )
    return table.default
