"""Each page's tokens estimated before submission (the I/O around :mod:`commands.rules.tokens`).

Input: the page's media tokens by the model table's row for ``[gemini] model`` at ``[gemini]
media_resolution`` (:func:`~commands.rules.tokens.media_tokens`: a PDF page's figure, or an
image's from its header's dimensions, the first :data:`~commands.rules.tokens.HEADER_BYTES` of
the file, never decoded; a model not in the table: one warning, and the Gemini 2.x rule) plus
the prompt and the response schema at 4 characters a token (the previous page's extraction,
sent as context when ``context_previous_page`` is on, is not known before and not counted).
Output: the mean billed so far for the model in this log, read once when the estimator is made,
or the rule's default.

Read-only; used by the cycle's token admission and by ``estimate`` (which, before the first run,
makes one with no log: the rule's default output, no page cut before).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import msgspec

from commands.config import Config
from commands.models import ModelRow, row_for
from commands.pages import Page
from commands.rules.retry import output_limit
from commands.rules.tokens import (
    HEADER_BYTES,
    MediaKind,
    image_size,
    media_tokens,
    output_tokens_per_page,
    text_tokens,
)
from commands.worker.dataset import PDF, SIGNATURE_BYTES, Probe, probe_file
from eventlog.store import EventStore
from projections import queries


class PageTokens(msgspec.Struct, frozen=True):
    """One page's estimate; ``total`` is what admission counts."""

    input: int
    output: int
    #: False when the image's header could not be read (a default image figure was used).
    measured: bool = True
    #: What the page is and, for an image, its pixel size (None: unknown, or a PDF page): what
    #: its media tokens at another resolution are computed from (``estimate``).
    kind: MediaKind = "image"
    size: tuple[int, int] | None = None

    @property
    def total(self) -> int:
        return self.input + self.output


class TokenEstimator:
    """Estimates pages for one model; caches each page's figure by key."""

    def __init__(
        self, store: EventStore | None, config: Config, json_schema: dict[str, Any]
    ) -> None:
        """``store`` None: no log yet (nothing billed, no page cut)."""
        model = config.gemini.model
        usage = (
            queries.usage_totals(store, model)
            if store is not None
            else queries.UsageTotals(0, 0, 0)
        )
        self.output_per_page = output_tokens_per_page(usage.results, usage.output_tokens)
        if usage.results:
            self.output_basis = f"the mean of {usage.results} past results of {model} in this log"
        elif store is None:
            self.output_basis = f"an assumption of {self.output_per_page} (no results in a log yet)"
        else:
            self.output_basis = (
                f"an assumption of {self.output_per_page} (no past results of {model})"
            )
        self.text_per_page = text_tokens(len(config.gemini.prompt) + len(json.dumps(json_schema)))
        #: The model table's row for the model (its media tokens), and the resolution sent.
        self.row: ModelRow = row_for(config.gemini.model)
        self.resolution = config.gemini.media_resolution
        self._limits = (config.gemini.max_output_tokens, config.gemini.max_output_tokens_ceiling)
        #: Each page's answers cut at the output limit so far (few pages: read once a cycle).
        self.cuts = queries.output_cuts(store) if store is not None else {}
        self._cache: dict[str, PageTokens] = {}
        #: Each page's file as it was read for its estimate (its stamp, and its first bytes: the
        #: image signature): the checks before its submission use it instead of reading again.
        self.probes: dict[str, Probe] = {}

    def page(self, page: Page) -> PageTokens:
        """``page``'s estimate (its header read once per estimator)."""
        found = self._cache.get(page.key)
        if found is None:
            probe = probe_file(page.path, HEADER_BYTES)
            size = image_size(probe.head)
            self.probes[page.key] = probe._replace(head=probe.head[:SIGNATURE_BYTES])
            # A page cut before bills at least the limit it was last cut at (its retry asks
            # for more): its output is never estimated below that.
            cuts = self.cuts.get(page.key, 0)
            cut_at = output_limit(*self._limits, cuts - 1) if cuts else 0
            output = max(self.output_per_page, cut_at or 0)
            kind: MediaKind = "pdf" if page.mime_type == PDF else "image"
            media = media_tokens(self.row, self.resolution, kind, size)
            measured = kind == "pdf" or size is not None
            found = PageTokens(media + self.text_per_page, output, measured, kind, size)
            self._cache[page.key] = found
        return found

    def output_limit(self, key: str) -> int | None:
        """The output limit to ask for ``key``'s answer: doubled once per cut so far."""
        return output_limit(*self._limits, self.cuts.get(key, 0))

    def pages(self, pages: Sequence[Page]) -> None:
        """Estimate each of ``pages`` now (their files read: on a thread, the caller may run
        this on one while no one else uses the estimator)."""
        for page in pages:
            self.page(page)
