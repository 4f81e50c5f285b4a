"""Plain-text tables for the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from commands.rules.progress import Progress
    from commands.views.estimate import Estimate
    from commands.views.status import Status


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], empty: str = "(none)") -> str:
    """Left-aligned columns sized to their widest cell; ``empty`` when there are no rows."""
    cells = [[_cell(v) for v in row] for row in rows]
    if not cells:
        return empty
    widths = [len(h) for h in headers]
    for row in cells:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    out = [line, "  ".join("-" * w for w in widths)]
    out.extend(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
    return "\n".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def status_text(s: Status) -> str:
    """The ``status`` screen."""
    lines = [f"database      {s.database}"]
    lines.append(f"events        {s.events} (last at {s.last_event_at or 'never'})")
    if s.progress is not None:
        lines += progress_text(s.progress)
    if s.stuck:
        lines.append(f"stuck?        {len(s.stuck)} thing(s) older than their threshold")
        lines += [
            f"  {m.kind} {m.name}: since {m.since} ({m.age_hours:,.1f} h), {m.why}" for m in s.stuck
        ]
    lines += _batches_text(s)
    if s.open_intents:
        lines.append(f"open intents  {len(s.open_intents)} (created? looked up next cycle)")
        lines.extend(f"  {name}" for name in s.open_intents)
    lines.append(f"in flight     {s.in_flight} records")
    if s.pending is not None:
        waiting = (
            f", {s.waiting_for_previous_page} waiting for their previous page"
            if s.waiting_for_previous_page
            else ""
        )
        lines.append(f"pending       {s.pending} pages to submit{waiting}")
    lines.append(f"written       {s.written} records")
    retrying = sum(s.failing_by_count.values())
    by_count = ", ".join(f"{n} at {c}" for c, n in s.failing_by_count.items())
    lines.append(
        f"retrying      {retrying} records" + (f" ({by_count} failures so far)" if retrying else "")
    )
    lines.append(
        f"dead letters  {s.dead_letters}"
        + ("  (see: analyze-failures --summary)" if s.dead_letters else "")
    )
    if s.rejected_inputs:
        lines.append(f"rejected      {s.rejected_inputs} input file(s) or folder(s) skipped")
    if s.changed_documents:
        lines.append(
            f"changed       {len(s.changed_documents)} PDF document(s) changed after some of "
            "their pages were written (those outputs are from the earlier version)"
        )
        lines += [
            f"  {d.path}: {d.pages_written} page(s) written before, changed {d.changed_at}"
            for d in s.changed_documents
        ]
    lines += _runs_text(s)
    return "\n".join(lines)


def progress_text(p: Progress) -> list[str]:
    """Pages known and done, the recent rate, the expected finish and the cost to go."""
    from commands.rules.cost import money

    if not p.known:
        lines = ["progress      no scan has counted the input tree yet (run the worker)"]
    else:
        lines = [
            f"progress      {p.written:,} of {p.known:,} pages written ({p.percent_done}%), "
            f"{p.to_go:,} to go (counted at {p.counted_at})"
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
        f"rate          {p.pages_per_hour_last_hour:,.1f} pages/h over the last hour, "
        f"{p.pages_per_hour_last_day:,.1f} over the last day; {finish}"
    )
    if p.cost_to_go is not None:
        lines.append(
            f"cost to go    {money(p.cost_to_go, p.currency)} for {p.to_go:,} pages, at "
            f"{p.cost_basis}"
        )
    return lines


def _batches_text(s: Status) -> list[str]:
    """The active batches (their age and counts) and each project's capacity or hold."""
    from commands.views.status import STALE_HOURS

    stale = [b for b in s.active_batches if b.age_hours > STALE_HOURS]
    lines = [
        f"active        {len(s.active_batches)} batch(es)"
        + (f", {len(stale)} older than {STALE_HOURS} h" if stale else "")
    ]
    for b in s.active_batches:
        warn = (
            f"  WARNING: older than {STALE_HOURS} h (the service's target turnaround)"
            if b.age_hours > STALE_HOURS
            else ""
        )
        progress = (
            f"  {b.done} done / {b.failed} failed / {b.pending} pending"
            if b.done or b.failed or b.pending
            else ""
        )
        lines.append(
            f"  {b.batch_id}  {b.state}  {b.records} records  age {b.age_hours:.1f} h"
            f"{progress}{warn}"
        )
    if len(s.projects) > 1:
        lines.append(f"projects      {len(s.projects)}")
        for p in s.projects:
            tokens = f"{p.tokens}/{p.max_tokens}" if p.max_tokens else f"{p.tokens}/no limit"
            held = f"  {p.hold.sentence()}" if p.hold is not None else ""
            lines.append(
                f"  {p.name}  batches {p.batches}/{p.max_batches}  enqueued tokens {tokens}{held}"
            )
    elif s.quota_hold is not None:
        lines.append(f"submissions   {s.quota_hold.sentence()}")
        lines.append(f"  batches at 1/{2**s.quota_hold.halvings} of batch_size meanwhile")
    return lines


def _runs_text(s: Status) -> list[str]:
    """The last run, the spend, and the workers of shared mode."""
    lines = []
    if s.last_run is not None:
        r = s.last_run
        outcome = r.outcome or (
            "still running"
            if r.running
            else "ended without a trace (crashed or killed); the next run records it"
        )
        lines.append(
            f"last run      {r.run_id}: {outcome}, started {r.started_at}"
            + (f" ({r.message})" if r.message else "")
        )
        if r.results_unavailable:
            lines.append(
                f"  results unavailable  {r.results_unavailable} batch(es): succeeded, but the "
                "result file could not be downloaded (records submitted again)"
            )
        lines.append(f"  its spend   {r.spend.describe()}")
    lines.append(f"spend total   {s.spend.describe()}")
    if s.workers:
        live = [w for w in s.workers if not w.expired]
        lines.append(f"workers       {len(live)} live of {len(s.workers)} (partition leases)")
        for w in s.workers:
            mark = "  EXPIRED" if w.expired else ""
            parts = ", ".join(w.partitions) or "none"
            lines.append(
                f"  {w.worker}  run {w.run_id}  renewed {w.renewed_at}  until {w.expires_at}"
                f"{mark}  partitions: {parts}"
            )
    return lines


def estimate_text(e: Estimate) -> str:
    """The ``estimate`` screen."""
    from commands.rules.cost import money

    out: list[str] = []
    out.append(
        f"pending       {e.pages} pages"
        + (
            f" (+{e.waiting_for_previous_page} waiting for their previous page)"
            if e.waiting_for_previous_page
            else ""
        )
    )
    out.append(
        f"per page      {e.prompt_tokens_per_page:,.0f} prompt + "
        f"{e.output_tokens_per_page:,.0f} output tokens, from {e.basis}"
    )
    if e.cost is None:
        out.append(f"cost          unknown: no price for {e.model} in [pricing.models]")
        return "\n".join([*out, "", *resolution_table(e)])
    out.append(
        f"prices        {e.model}: {money(e.input_per_million or 0, e.currency)} / "
        f"{money(e.output_per_million or 0, e.currency)} per million prompt / output "
        f"tokens, {e.batch_discount:.0%} batch discount"
    )
    out.append(
        f"estimate      {money(e.cost, e.currency)}"
        + (
            f" ({money(e.cost_with_waiting or 0, e.currency)} with the waiting pages)"
            if e.waiting_for_previous_page
            else ""
        )
    )
    out += ["", *resolution_table(e)]
    return "\n".join(out)


def resolution_table(e: Estimate) -> list[str]:
    """The pending pages' input tokens and cost at each media resolution, images and PDF pages
    apart (``*``: the configured one)."""
    from commands.rules.cost import money

    if not e.by_resolution:
        return []
    first = e.by_resolution[0]

    def cost(value: float | None) -> str:
        return "unknown" if value is None else money(value, e.currency)

    rows = [
        [
            f"{f.resolution}{' *' if f.configured else ''}",
            f"{f.images.input_tokens:,}",
            cost(f.images.cost),
            f"{f.pdf_pages.input_tokens:,}",
            cost(f.pdf_pages.cost),
            f"{f.input_tokens:,}",
            cost(f.cost),
        ]
        for f in e.by_resolution
    ]
    headers = [
        "media_resolution",
        f"images ({first.images.pages}) input",
        "cost",
        f"PDF pages ({first.pdf_pages.pages}) input",
        "cost",
        "all input",
        "cost",
    ]
    return [
        f"by media resolution: {e.model} as {e.model_family} in the model table; input tokens"
        " (media + prompt and schema) and cost of the pending pages, with the same output at"
        " each; * = [gemini] media_resolution",
        table(headers, rows),
    ]
