"""The job's progress from the log (read-only): what the scans counted, what is written, the
recent rate and the expected finish, the spend and the cost of the pages to go
(:class:`commands.rules.progress.Progress`). ``status``, ``status --json``, the report and the
dashboard read it; it walks no tree and scans no log.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from commands.config import Config
from commands.rules.cost import Spend, money, token_cost
from commands.rules.progress import (
    Progress,
    bucket,
    expected_finish,
    hour_start,
    rate_per_hour,
)
from commands.rules.tokens import DEFAULT_IMAGE_TOKENS, DEFAULT_OUTPUT_TOKENS, text_tokens
from eventlog.store import EventStore
from projections import progress, queries

__all__ = ["progress_lines", "progress_of"]


def progress_of(
    store: EventStore, config: Config, now: datetime, counts: queries.StatusCounts, spent: Spend
) -> Progress:
    """The progress as of ``now``, from the status ``counts`` and the ``spent`` already read in
    the caller's snapshot (call it inside the same one)."""
    known, counted_at = progress.dataset_total(store)
    retrying = sum(n for _, n in queries.failing_by_count(store))
    written_by_hour = progress.written_per_hour(
        store, bucket(hour_start(now) - timedelta(hours=24))
    )
    last_hour = rate_per_hour(written_by_hour, now, 1)
    last_day = rate_per_hour(written_by_hour, now, 24)
    to_go = max(0, known - counts.written - counts.dead_letters)
    finish, hours = expected_finish(to_go, last_day or last_hour, now)
    per_page, basis = _cost_per_page(store, config, spent)
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


def _cost_per_page(store: EventStore, config: Config, spent: Spend) -> tuple[float | None, str]:
    """What a page costs: the mean billed per result so far for the configured model (its
    failed answers included: retries are part of the cost), or the estimator's defaults."""
    model = config.gemini.model
    usage = queries.usage_totals(store, model)
    if usage.results:
        prompt = usage.prompt_tokens / usage.results
        output = usage.output_tokens / usage.results
        basis = f"the mean billed over {usage.results:,} results of {model}"
    else:
        prompt = DEFAULT_IMAGE_TOKENS + text_tokens(len(config.gemini.prompt))
        output = float(DEFAULT_OUTPUT_TOKENS)
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
