"""The job's progress from the log (read-only): what the scans counted, what is written, the
recent rate and the expected finish, the spend and the cost of the pages to go
(:class:`commands.rules.progress.Progress`). ``status``, ``status --json``, the report and the
dashboard read it; it walks no tree and scans no log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from commands.config import Config
from commands.models import row_for
from commands.rules.cost import Usage, money, spend, token_cost
from commands.rules.progress import (
    Progress,
    bucket,
    expected_finish,
    hour_start,
    rate_per_hour,
)
from commands.rules.tokens import default_page_tokens
from eventlog.store import EventStore
from projections import progress, queries
from projections.token_usage import TokenUsage

__all__ = ["progress_lines", "progress_of", "usages"]


def usages(rows: list[TokenUsage]) -> list[Usage]:
    """``token_usage`` rows (``queries.usage_by_model``) as :mod:`commands.rules.cost` takes
    them."""
    return [Usage(*msgspec.structs.astuple(row)[1:]) for row in rows]


def progress_of(
    store: EventStore,
    config: Config,
    now: datetime,
    counts: queries.StatusCounts,
    retrying: int,
    totals: list[TokenUsage],
) -> Progress:
    """The progress as of ``now``, from what the caller read in its snapshot (call it inside
    the same one): the status ``counts``, the pages ``retrying`` and the usage ``totals`` per
    model (``queries.usage_by_model``)."""
    known, counted_at = progress.dataset_total(store)
    spent = spend(usages(totals), config.pricing, config.gemini.model)
    written_by_hour = progress.written_per_hour(
        store, bucket(hour_start(now) - timedelta(hours=24))
    )
    last_hour = rate_per_hour(written_by_hour, now, 1)
    last_day = rate_per_hour(written_by_hour, now, 24)
    to_go = max(0, known - counts.written - counts.dead_letters)
    finish, hours = expected_finish(to_go, last_day or last_hour, now)
    per_page, basis = _cost_per_page(config, totals)
    return Progress(
        known=known,
        counted_at=counted_at,
        written=counts.written,
        in_flight=counts.in_flight,
        retrying=retrying,
        dead_letters=counts.dead_letters,
        rejected_inputs=counts.rejected_inputs,
        to_go=to_go,
        percent_done=round(100 * counts.written / known, 2) if known else None,
        pages_per_hour_last_hour=round(last_hour, 1),
        pages_per_hour_last_day=round(last_day, 1),
        expected_finish=finish,
        hours_to_go=hours,
        currency=spent.currency,
        spend=spent.cost,
        wasted=spent.wasted_cost,
        cost_to_go=None if per_page is None else round(per_page * to_go, 4),
        cost_basis=basis,
    )


def _cost_per_page(config: Config, totals: list[TokenUsage]) -> tuple[float | None, str]:
    """What a page costs: the mean billed per result so far for the configured model (its
    failed answers included: retries are part of the cost), or the estimator's defaults."""
    model = config.gemini.model
    usage = next((u for u in totals if u.model == model), None)
    if usage is not None and usage.results:
        prompt = usage.prompt_tokens / usage.results
        output = usage.output_tokens / usage.results
        basis = f"the mean billed over {usage.results:,} results of {model}"
    else:
        g = config.gemini
        prompt, output = default_page_tokens(row_for(model), g.media_resolution, len(g.prompt))
        basis = f"the estimator's defaults (no result of {model} billed yet)"
    cost = token_cost(round(prompt), round(output), model, config.pricing)
    if cost is None:
        return None, f"no price for {model}"
    return cost, basis


def progress_lines(p: Progress) -> list[tuple[str, str]]:
    """(label, text) of each line ``status`` and the report show about the job's progress."""
    if not p.known:
        lines = [("progress", "no scan has counted the input tree yet (run the worker)")]
    else:
        lines = [
            (
                "progress",
                f"{p.written:,} of {p.known:,} pages written ({p.percent_done}%), "
                f"{p.to_go:,} to go (counted at {p.counted_at})",
            )
        ]
    if not p.to_go:
        finish = "nothing to go" if p.known else "no pages counted yet"
    elif p.expected_finish:
        finish = f"expected finish {p.expected_finish} (in {p.hours_to_go or 0:,.1f} h)"
    elif p.hours_to_go is not None:
        finish = f"expected finish after the year 9999 (in {p.hours_to_go:,.0f} h at this rate)"
    else:
        finish = "no finish can be told: nothing written in the last day"
    lines.append(
        (
            "rate",
            f"{p.pages_per_hour_last_hour:,.1f} pages/h over the last hour, "
            f"{p.pages_per_hour_last_day:,.1f} over the last day; {finish}",
        )
    )
    if p.cost_to_go is not None:
        lines.append(
            (
                "cost to go",
                f"{money(p.cost_to_go, p.currency)} for {p.to_go:,} pages, at {p.cost_basis}",
            )
        )
    return lines
