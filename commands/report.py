"""The run report: what one worker run did, computed from the log alone, so the report of any
past run can be produced again (``commands report --run ID``). Written as Markdown to
``reports_dir/<run-id>.md`` after every run."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import msgspec

from eventlog.errors import NothingMatched
from eventlog.events import (
    BatchCompleted,
    BatchFailed,
    BatchSubmitted,
    InputRejected,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
    UploadAbandoned,
    UploadFailed,
)
from eventlog.store import EventStore


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
    validated: int = 0
    failed: int = 0
    failures: list[FailureRow] = []
    dead_letters: list[str] = []
    upload_attempts_failed: int = 0
    uploads_abandoned: list[str] = []
    rejected_inputs: list[tuple[str, str]] = []
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    retry_stats: list[tuple[str, int]] = []

    @property
    def processed(self) -> int:
        return self.validated + self.failed


def last_run_id(store: EventStore) -> str:
    row = store.conn.execute("SELECT run_id FROM runs ORDER BY started_seq DESC LIMIT 1").fetchone()
    if row is None:
        raise NothingMatched("no run has been recorded in this log yet")
    return str(row[0])


def build(store: EventStore, run_id: str, max_retries: int) -> RunReport:
    """The report of ``run_id`` from its events (read-only)."""
    conn = store.conn
    with store.snapshot():
        row = conn.execute(
            "SELECT started_seq, started_at, finished_seq, finished_at, outcome FROM runs "
            "WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            raise NothingMatched(f"no run {run_id!r} in this log (see `commands status`)")
        start, started_at, end, finished_at, outcome = row
        r = RunReport(run_id, started_at, finished_at, outcome, max_retries)
        actor = f"run:{run_id}"
        failed_seqs: list[int] = []
        ended: Counter[str] = Counter()
        for rec in store.read(after_seq=start - 1, until_seq=end):
            if rec.actor != actor:
                continue
            e = rec.event
            if isinstance(e, BatchSubmitted):
                r.batches_submitted.append(e.batch_id)
            elif isinstance(e, BatchCompleted):
                r.batches_completed.append(e.batch_id)
            elif isinstance(e, BatchFailed):
                ended[e.state] += 1
            elif isinstance(e, RecordValidated):
                r.validated += 1
                _add_tokens(r, e)
            elif isinstance(e, RecordFailed):
                r.failed += 1
                failed_seqs.append(rec.seq)
                _add_tokens(r, e)
            elif isinstance(e, RecordDeadLettered):
                r.dead_letters.append(e.record_key)
            elif isinstance(e, UploadFailed):
                r.upload_attempts_failed += 1
            elif isinstance(e, UploadAbandoned):
                r.uploads_abandoned.append(e.record_key)
            elif isinstance(e, InputRejected):
                r.rejected_inputs.append((e.path, e.reason))
        r.batches_ended = dict(ended)
        for i in range(0, len(failed_seqs), 500):
            part = failed_seqs[i : i + 500]
            r.failures += [
                FailureRow(*row)
                for row in conn.execute(
                    "SELECT record_key, error_type, message, excerpt, attempt FROM failure_logs "
                    f"WHERE seq IN ({', '.join('?' for _ in part)}) ORDER BY seq",
                    part,
                )
            ]
        failing = sorted({f.record_key for f in r.failures})
        for i in range(0, len(failing), 500):
            part = failing[i : i + 500]
            r.retry_stats += [
                (k, c)
                for k, c in conn.execute(
                    "SELECT f.record_key, f.count FROM failure_counts f JOIN record_status s "
                    "USING (record_key) WHERE s.status IN ('failed', 'pending', 'reserved', "
                    f"'inflight') AND f.record_key IN ({', '.join('?' for _ in part)}) "
                    "ORDER BY f.record_key",
                    part,
                )
            ]
    return r


def _add_tokens(r: RunReport, e: RecordValidated | RecordFailed) -> None:
    r.prompt_tokens += e.prompt_tokens
    r.output_tokens += e.output_tokens
    r.total_tokens += e.total_tokens


def _cell(text: str, limit: int = 80) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render(r: RunReport) -> str:
    """Markdown: batch summary, failure table, retry stats, dead letters, batches, uploads."""
    lines = [f"# Run {r.run_id}", ""]
    lines.append(
        f"Started {r.started_at}, finished {r.finished_at or '(still running)'}, "
        f"outcome: {r.outcome or 'running'}."
    )
    lines += ["", "## Batch summary", ""]
    lines.append(f"✅ Processed {r.processed} records. {r.validated} Success, {r.failed} Failed.")
    ended = (
        ", ".join(
            f"{n} {s.removeprefix('JOB_STATE_').lower()}"
            for s, n in sorted(r.batches_ended.items())
        )
        or "none"
    )
    lines += [
        "",
        f"- Batches submitted: {len(r.batches_submitted)}; completed: "
        f"{len(r.batches_completed)}; ended without results: {ended}",
        f"- Uploads: {r.upload_attempts_failed} failed attempt(s) retried or given up; "
        f"{len(r.uploads_abandoned)} page(s) skipped this run",
        f"- Inputs rejected: {len(r.rejected_inputs)}",
        f"- Tokens: {r.prompt_tokens} prompt, {r.output_tokens} output, {r.total_tokens} total",
    ]
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
    if r.uploads_abandoned:
        lines += ["", "## Pages skipped (uploads failed)", ""]
        lines += [f"- {k}" for k in r.uploads_abandoned]
    return "\n".join(lines) + "\n"


def write(reports_dir: Path, r: RunReport) -> Path:
    """Write ``reports_dir/<run-id>.md`` (owner-only), atomically."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = reports_dir / f"{r.run_id}.md"
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(render(r))
    tmp.replace(path)
    return path
