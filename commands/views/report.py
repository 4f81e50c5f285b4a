"""The run report: what one worker run did, computed from the log alone, so the report of any
past run can be produced again (``commands report --run ID``). Written as Markdown to
``reports_dir/<run-id>.md`` after every run; the Prefect flow publishes the same text."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path

import msgspec

from commands.config import Config
from commands.rules.cost import Spend, Usage, money, spend, token_cost
from commands.rules.progress import Progress
from commands.views.progress import progress_lines, progress_of
from eventlog.actors import run_actor
from eventlog.errors import NothingMatched
from eventlog.events import (
    BatchCompleted,
    BatchFailed,
    BatchResultsUnavailable,
    BatchSubmissionDeferred,
    BatchSubmissionIntended,
    BatchSubmitted,
    DocumentSeen,
    InputRejected,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
    UploadAbandoned,
    UploadFailed,
)
from eventlog.store import EventStore
from eventlog.timestamps import parse_ts
from projections import queries


class FailureRow(msgspec.Struct, frozen=True):
    record_key: str
    error_type: str
    message: str
    excerpt: str
    attempt: int


class RunReport(msgspec.Struct):
    run_id: str
    started_at: str
    finished_at: str | None
    outcome: str | None
    max_retries: int
    batches_submitted: list[str] = []
    batches_completed: list[str] = []
    batches_ended: dict[str, int] = {}
    #: Batches that succeeded but whose result file could not be downloaded
    #: (``BatchResultsUnavailable``: their records were freed for resubmission).
    batches_results_unavailable: list[str] = []
    #: Batches submitted by how their images travelled (``inline``, ``file_api``, ``mixed``).
    batch_transports: dict[str, int] = {}
    validated: int = 0
    failed: int = 0
    failures: list[FailureRow] = []
    dead_letters: list[str] = []
    upload_attempts_failed: int = 0
    uploads_abandoned: list[str] = []
    rejected_inputs: list[tuple[str, str]] = []
    #: PDF documents found changed after some of their pages were written: (path, pages).
    documents_changed: list[tuple[str, int]] = []
    #: The whole job's progress when the report was made (the same figures as ``status``).
    progress: Progress | None = None
    usage: dict[str, Usage] = {}
    spend: Spend | None = None
    duration_seconds: float | None = None
    batch_turnaround_seconds: list[float] = []
    retry_stats: list[tuple[str, int]] = []
    #: Creates this run the service's quota held back (429 RESOURCE_EXHAUSTED): when the first
    #: was, and how many.
    quota_held_since: str | None = None
    quota_deferrals: int = 0
    #: Input tokens estimated before submission for the batches this run submitted (their
    #: intents' ``estimated_input_tokens``), to set beside the prompt tokens billed.
    estimated_input_tokens: int = 0
    #: Their output tokens estimated (``estimated_tokens`` less the input), and what the two
    #: cost by the same prices as the spend (None: a model without a price), to set beside the
    #: spend billed.
    estimated_output_tokens: int = 0
    estimated_cost: float | None = 0.0

    @property
    def processed(self) -> int:
        return self.validated + self.failed

    def counts(self) -> dict[str, int]:
        """The figures the Prefect table artifact and ``--json`` consumers use."""
        return {
            "records_processed": self.processed,
            "records_validated": self.validated,
            "records_failed": self.failed,
            "dead_letters": len(self.dead_letters),
            "batches_submitted": len(self.batches_submitted),
            "batches_completed": len(self.batches_completed),
            **{
                f"batches_{s.removeprefix('JOB_STATE_').lower()}": n
                for s, n in sorted(self.batches_ended.items())
            },
            "batches_results_unavailable": len(self.batches_results_unavailable),
            "upload_attempts_failed": self.upload_attempts_failed,
            "creates_held_back_by_quota": self.quota_deferrals,
            "pages_skipped_upload": len(self.uploads_abandoned),
            "inputs_rejected": len(self.rejected_inputs),
            "documents_changed": len(self.documents_changed),
            "prompt_tokens": sum(u.prompt_tokens for u in self.usage.values()),
            "output_tokens": sum(u.output_tokens for u in self.usage.values()),
            "estimated_input_tokens": self.estimated_input_tokens,
        }


def last_run_id(store: EventStore) -> str:
    run = queries.last_run(store)
    if run is None:
        raise NothingMatched("no run has been recorded in this log yet")
    return str(run.run_id)


def _seconds(start: str, end: str) -> float:
    return (parse_ts(end) - parse_ts(start)).total_seconds()


def build(store: EventStore, run_id: str, config: Config) -> RunReport:
    """The report of ``run_id`` from its events (read-only)."""
    with store.snapshot():
        run = queries.run(store, run_id)
        if run is None:
            raise NothingMatched(f"no run {run_id!r} in this log (see `commands status`)")
        start, started_at, end = run.started_seq, run.started_at, run.finished_seq
        finished_at, outcome = run.finished_at, run.outcome
        r = RunReport(run_id, started_at, finished_at, outcome, config.batching.max_retries)
        actor = run_actor(run_id)
        failed_seqs: list[int] = []
        ended: Counter[str] = Counter()
        intended: dict[str, BatchSubmissionIntended] = {}
        for rec in store.read(after_seq=start - 1, until_seq=end):
            if rec.actor != actor:
                continue
            e = rec.event
            if isinstance(e, BatchSubmissionIntended):
                intended[e.display_name] = e
            elif isinstance(e, BatchSubmitted):
                r.batches_submitted.append(e.batch_id)
                r.batch_transports[e.transport] = r.batch_transports.get(e.transport, 0) + 1
                if (intent := intended.get(e.display_name)) is not None:
                    _add_estimate(r, intent, config)
            elif isinstance(e, BatchCompleted | BatchFailed | BatchResultsUnavailable):
                if isinstance(e, BatchCompleted):
                    r.batches_completed.append(e.batch_id)
                elif isinstance(e, BatchResultsUnavailable):
                    r.batches_results_unavailable.append(e.batch_id)
                else:
                    ended[e.state] += 1
                # A job whose results were gone still turned around on the service.
                if e.submitted_at:
                    r.batch_turnaround_seconds.append(_seconds(e.submitted_at, rec.ts))
            elif isinstance(e, RecordValidated | RecordFailed):
                if isinstance(e, RecordValidated):
                    r.validated += 1
                else:
                    r.failed += 1
                    failed_seqs.append(rec.seq)
                _add_usage(r, e, config.gemini.model)
            elif isinstance(e, RecordDeadLettered):
                r.dead_letters.append(e.record_key)
            elif isinstance(e, UploadFailed):
                r.upload_attempts_failed += 1
            elif isinstance(e, UploadAbandoned):
                r.uploads_abandoned.append(e.record_key)
            elif isinstance(e, InputRejected):
                r.rejected_inputs.append((e.path, e.reason))
            elif isinstance(e, DocumentSeen) and e.pages_written:
                r.documents_changed.append((e.path, e.pages_written))
            elif isinstance(e, BatchSubmissionDeferred) and e.reason == "quota":
                r.quota_deferrals += 1
                r.quota_held_since = r.quota_held_since or rec.ts
        r.batches_ended = dict(ended)
        r.spend = spend(r.usage.values(), config.pricing, config.gemini.model)
        if finished_at:
            r.duration_seconds = _seconds(started_at, finished_at)
        r.failures += [
            FailureRow(f.record_key, f.error_type, f.message, f.excerpt, f.attempt)
            for f in queries.failure_logs_at(store, failed_seqs)
        ]
        failing = sorted({f.record_key for f in r.failures})
        r.retry_stats += queries.retry_counts(store, failing)
        counts = queries.status_counts(store)
        retrying = sum(n for _, n in queries.failing_by_count(store))
        totals = queries.usage_by_model(store)
        r.progress = progress_of(store, config, store.clock(), counts, retrying, totals)
    return r


def _add_estimate(r: RunReport, intent: BatchSubmissionIntended, config: Config) -> None:
    """Count a submitted batch's estimate: its input and output tokens, and their cost."""
    output = max(intent.estimated_tokens - intent.estimated_input_tokens, 0)
    r.estimated_input_tokens += intent.estimated_input_tokens
    r.estimated_output_tokens += output
    model = intent.model or config.gemini.model
    cost = token_cost(intent.estimated_input_tokens, output, model, config.pricing)
    r.estimated_cost = None if cost is None or r.estimated_cost is None else r.estimated_cost + cost


def _add_usage(r: RunReport, e: RecordValidated | RecordFailed, default_model: str) -> None:
    if not (e.prompt_tokens or e.output_tokens):
        return
    model = e.model or default_model
    u = r.usage.setdefault(model, Usage(model))
    failed = isinstance(e, RecordFailed)
    u.results += 1
    u.prompt_tokens += e.prompt_tokens
    u.output_tokens += e.output_tokens
    u.failed_results += failed
    u.failed_prompt_tokens += e.prompt_tokens if failed else 0
    u.failed_output_tokens += e.output_tokens if failed else 0


def _cell(text: str, limit: int = 80) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def render(r: RunReport) -> str:
    """Markdown: batch summary, failure table, retry stats, dead letters, batches, uploads,
    tokens and cost, durations."""
    lines = [f"# Run {r.run_id}", ""]
    took = f" ({_duration(r.duration_seconds)})" if r.duration_seconds is not None else ""
    lines.append(
        f"Started {r.started_at}, finished {r.finished_at or '(still running)'}{took}, "
        f"outcome: {r.outcome or 'running'}."
    )
    if r.progress is not None:
        job = progress_lines(r.progress)
        lines += ["", "## The whole job", "", *(f"- {label}: {text}" for label, text in job)]
    lines += ["", "## ✅ Batch summary", ""]
    lines.append(f"Processed {r.processed} records. {r.validated} Success, {r.failed} Failed.")
    lines += ["", *_summary(r)]
    lines += ["", "## ❌ Failures", ""]
    if r.failures:
        lines += [
            "| record | error type | message | excerpt | attempt |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {f.record_key} | {f.error_type} | {_cell(f.message)} | "
            f"{_cell(f.excerpt, 40)} | {f.attempt}/{r.max_retries} |"
            for f in r.failures
        ]
    else:
        lines.append("None.")
    lines += ["", "## 📊 Retry stats", ""]
    lines += [f"- {k} is on retry {c}/{r.max_retries}" for k, c in r.retry_stats] or ["None."]
    lines += ["", "## Dead letters (new in this run)", ""]
    lines += [
        f"- {k}: needs a human (`commands analyze-failures --record-key {k}`)"
        for k in r.dead_letters
    ] or ["None."]
    if r.rejected_inputs:
        lines += ["", "## Rejected inputs", ""]
        lines += [f"- `{p}`: {reason}" for p, reason in r.rejected_inputs]
    if r.documents_changed:
        lines += ["", "## PDF documents changed under written pages", ""]
        lines += [
            f"- `{p}`: {n} page(s) written from the earlier version are kept (delete their "
            "outputs to extract them again)"
            for p, n in r.documents_changed
        ]
    if r.uploads_abandoned:
        lines += ["", "## Pages skipped (uploads failed)", ""]
        lines += [f"- {k}" for k in r.uploads_abandoned]
    return "\n".join(lines) + "\n"


def _summary(r: RunReport) -> list[str]:
    """The batch summary's list: batches, holds, transports, uploads, inputs, spend, tokens."""
    ended = ", ".join(
        f"{n} {s.removeprefix('JOB_STATE_').lower()}" for s, n in sorted(r.batches_ended.items())
    )
    if r.batches_results_unavailable:
        gone = f"{len(r.batches_results_unavailable)} results unavailable"
        ended = f"{ended}, {gone}" if ended else gone
    turnaround = ""
    if r.batch_turnaround_seconds:
        t = r.batch_turnaround_seconds
        turnaround = (
            f"; turnaround median {_duration(statistics.median(t))}, max {_duration(max(t))}"
        )
    lines = [
        f"- Batches: {len(r.batches_submitted)} submitted, {len(r.batches_completed)} completed"
        f"{', ' + ended if ended else ''}{turnaround}"
    ]
    if r.quota_deferrals:
        lines.append(
            f"- Held back by the service's quota since {r.quota_held_since} "
            f"({r.quota_deferrals} create(s) answered 429; no failure counted)"
        )
    if r.batches_results_unavailable:
        lines.append(
            f"- Results unavailable: {', '.join(r.batches_results_unavailable)} "
            "(succeeded, but the result file could not be downloaded; "
            "their records were submitted again)"
        )
    lines += [
        "- Image transport: "
        + (", ".join(f"{n} {t}" for t, n in sorted(r.batch_transports.items())) or "no batch"),
        f"- Uploads: {r.upload_attempts_failed} failed attempt(s) (retried or given up); "
        f"{len(r.uploads_abandoned)} page(s) skipped this run",
        f"- Inputs rejected: {len(r.rejected_inputs)}",
    ]
    if r.spend is not None:
        lines.append(f"- Spend: {r.spend.describe()}")
        for u in sorted(r.usage.values(), key=lambda u: u.model):
            lines.append(
                f"  - {u.model}: {u.results} billed results, {u.prompt_tokens:,} prompt "
                f"+ {u.output_tokens:,} output tokens ({u.failed_results} failed)"
            )
    if r.estimated_input_tokens:
        billed = sum(u.prompt_tokens for u in r.usage.values())
        lines.append(
            f"- Tokens: estimated {r.estimated_input_tokens:,} input tokens for the batches "
            f"submitted, billed {billed:,}"
        )
        lines.append(_cost_line(r))
    return lines


def _cost_line(r: RunReport) -> str:
    """The estimated cost of the batches this run submitted beside the cost billed in it, by
    the same prices (``[pricing]``, the batch discount)."""
    currency = r.spend.currency if r.spend is not None else "USD"

    def show(amount: float | None) -> str:
        return "unknown (a model without a price)" if amount is None else money(amount, currency)

    billed = r.spend.cost if r.spend is not None else None
    return (
        f"- Cost: estimated {show(r.estimated_cost)} for the batches submitted "
        f"({r.estimated_input_tokens:,} input + {r.estimated_output_tokens:,} output tokens), "
        f"billed {show(billed)} (the same prices)"
    )


def write(reports_dir: Path, r: RunReport) -> Path:
    """Write ``reports_dir/<run-id>.md`` (owner-only), atomically."""
    reports_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = reports_dir / f"{r.run_id}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render(r))
    tmp.replace(path)
    return path
