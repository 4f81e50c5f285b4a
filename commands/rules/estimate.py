"""What the pending pages cost at each media resolution, images and PDF pages apart (pure).

From a sample of the pending pages (each one's kind and, for an image, its pixel size), the
model table's row, the text tokens a page (prompt and schema) and the output tokens a page:
at each of ``unspecified`` (the model's default), ``low``, ``medium`` and ``high``, each kind's
input tokens (its media tokens by :func:`~commands.rules.tokens.media_tokens`, plus the text)
and cost (:func:`~commands.rules.cost.token_cost`: list prices, the batch discount). Output
does not depend on the resolution. A sample smaller than the pending pages is scaled up: each
kind's count by its share of the sample, its tokens by its mean in the sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from commands.config import PricingConfig
from commands.models import RESOLUTIONS, ModelRow
from commands.rules.cost import token_cost
from commands.rules.tokens import MediaKind, media_tokens

#: One sampled page: its kind and its pixel size (None: a PDF page, or an unreadable header).
Sampled = tuple[MediaKind, tuple[int, int] | None]


class KindFigures(msgspec.Struct, frozen=True):
    """One kind of page (images, or PDF pages) at one resolution."""

    pages: int
    #: Their media tokens (the table's figure a page), and with the text: their input tokens.
    media_tokens: int
    input_tokens: int
    output_tokens: int
    #: None when the model has no price.
    cost: float | None


class ResolutionFigures(msgspec.Struct, frozen=True):
    """All pending pages at one media resolution."""

    resolution: str
    #: The resolution ``[gemini] media_resolution`` names (what a run would send).
    configured: bool
    images: KindFigures
    pdf_pages: KindFigures
    input_tokens: int
    output_tokens: int
    cost: float | None


def by_resolution(
    sample: Sequence[Sampled],
    pages: int,
    *,
    row: ModelRow,
    model: str,
    configured: str,
    text_per_page: int,
    output_per_page: int,
    pricing: PricingConfig,
) -> list[ResolutionFigures]:
    """The figures of ``pages`` pending pages, of which ``sample`` were read, at each resolution
    in :data:`~commands.models.RESOLUTIONS` order (``configured`` marks the one sent)."""
    images = [size for kind, size in sample if kind == "image"]
    pdfs = [size for kind, size in sample if kind == "pdf"]
    n_images = round(pages * len(images) / len(sample)) if sample else 0
    counts: dict[MediaKind, tuple[int, list[tuple[int, int] | None]]] = {
        "image": (n_images, images),
        "pdf": (pages - n_images if sample else 0, pdfs),
    }
    out = []
    for resolution in RESOLUTIONS:
        kinds = {}
        for kind, (n, sizes) in counts.items():
            tokens = [media_tokens(row, resolution, kind, size) for size in sizes]
            media = round(sum(tokens) * n / len(tokens)) if tokens else 0
            prompt, output = media + n * text_per_page, n * output_per_page
            cost = token_cost(prompt, output, model, pricing)
            kinds[kind] = KindFigures(n, media, prompt, output, cost)
        image, pdf = kinds["image"], kinds["pdf"]
        total = None if image.cost is None or pdf.cost is None else image.cost + pdf.cost
        out.append(
            ResolutionFigures(
                resolution,
                resolution == configured,
                image,
                pdf,
                image.input_tokens + pdf.input_tokens,
                image.output_tokens + pdf.output_tokens,
                total,
            )
        )
    return out
