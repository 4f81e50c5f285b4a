"""Hypothesis strategies: random but valid lives of the pipeline, as event groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

from eventlog.events import (
    AbandonedBatchClosed,
    BatchCleared,
    BatchCompleted,
    BatchFailed,
    BatchStateObserved,
    BatchSubmissionAbandoned,
    BatchSubmissionIntended,
    BatchSubmitted,
    BatchSucceeded,
    Event,
    FailuresReset,
    FileDeleted,
    FileUploaded,
    InputRejected,
    InputRejectionCleared,
    LateResultsAdopted,
    RecordDeadLettered,
    RecordFailed,
    RecordValidated,
    ResetFilter,
    ResultDiscarded,
    RunFinished,
    RunStarted,
    UploadFailed,
)

KEYS = [
    f"{s}:{sc}:{y}:{p}"
    for s in ("CA", "TX")
    for sc in ("Lin",)
    for y in (2020, 2021)
    for p in (1, 2, 3)
]
MAX_RETRIES = 3
ERRORS = ["invalid_json", "schema_violation", "missing_line", "error_line", "finish_SAFETY"]


@dataclass
class Model:
    """Just enough of the system's state to choose valid next events."""

    free: set[str] = field(default_factory=lambda: set(KEYS))
    intents: dict[str, list[str]] = field(default_factory=dict)
    batches: dict[str, list[str]] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    failures: dict[str, int] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    gone: list[str] = field(default_factory=list)  # cleared or failed batches (late results)
    files: list[str] = field(default_factory=list)  # uploaded, not deleted
    runs: list[str] = field(default_factory=list)  # started, not finished
    rejected: set[str] = field(default_factory=set)
    n: int = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"


@st.composite
def event_groups(draw: st.DrawFn, max_groups: int = 25) -> list[list[Event]]:
    """A list of append groups; every group is a valid next step from the model's state."""
    m = Model()
    groups: list[list[Event]] = []
    for _ in range(draw(st.integers(1, max_groups))):
        options = ["upload", "run", "reject"]
        if m.files:
            options.append("delete_file")
        if m.rejected:
            options.append("unreject")
        candidates = sorted(k for k in m.free if k not in m.dead)
        if candidates:
            options.append("intend")
        if m.intents:
            options += ["submit", "submit", "abandon", "clear_intent"]
        running = sorted(b for b in m.batches if b not in m.succeeded)
        if running:
            options += ["observe", "succeed", "succeed", "fail", "clear"]
        if m.succeeded:
            options += ["results", "results"]
        if m.failures:
            options.append("reset")
        if m.gone:
            options += ["late", "close"]
        choice = draw(st.sampled_from(options))
        group: list[Event] = []
        if choice == "run":
            if bool(m.runs) and draw(st.booleans()):
                group = [RunFinished(run_id=m.runs.pop(), outcome="ok")]
            else:
                m.runs.append(m.name("r"))
                group = [RunStarted(run_id=m.runs[-1])]
        elif choice == "reject":
            path = draw(st.sampled_from(["/in/a.txt", "/in/b", "/in/S/X/2020/9.png"]))
            m.rejected.add(path)
            group = [InputRejected(path=path, reason=draw(st.sampled_from(["x", "y"])))]
        elif choice == "unreject":
            path = draw(st.sampled_from(sorted(m.rejected)))
            m.rejected.discard(path)
            group = [InputRejectionCleared(path=path)]
        elif choice == "delete_file":
            name = m.files.pop(draw(st.integers(0, len(m.files) - 1)))
            group = [FileDeleted(file_name=name, reason="done")]
        elif choice == "close":
            batch = m.gone.pop(draw(st.integers(0, len(m.gone) - 1)))
            group = [AbandonedBatchClosed(batch_id=batch, state="JOB_STATE_EXPIRED")]
        elif choice == "upload":
            key = draw(st.sampled_from(KEYS))
            m.files.append(m.name("files/f"))
            group = [
                FileUploaded(
                    record_key=key,
                    file_name=m.files[-1],
                    file_uri="u",
                    mime_type="image/png",
                    size_bytes=10,
                ),
                UploadFailed(record_key=key, attempt=2, error_type="ServerError", message="503"),
            ]
        elif choice == "intend":
            keys = draw(st.lists(st.sampled_from(candidates), min_size=1, max_size=4, unique=True))
            name = m.name("gb-")
            m.intents[name] = keys
            m.free -= set(keys)
            files = draw(st.lists(st.sampled_from(m.files), unique=True)) if m.files else []
            group = [
                BatchSubmissionIntended(
                    display_name=name,
                    model="m",
                    record_keys=keys,
                    input_file=m.name("files/req"),
                    files=files,
                )
            ]
        elif choice in ("submit", "abandon", "clear_intent"):
            name = draw(st.sampled_from(sorted(m.intents)))
            keys = m.intents.pop(name)
            if choice == "submit":
                batch = m.name("batches/b")
                m.batches[batch] = keys
                group = [
                    BatchSubmitted(batch_id=batch, display_name=name, model="m", record_keys=keys)
                ]
            else:
                m.free |= set(keys)
                group = [
                    BatchSubmissionAbandoned(
                        display_name=name, error_type="ClientError", message="400"
                    )
                    if choice == "abandon"
                    else BatchCleared(batch_id=name, reason="op")
                ]
        elif choice == "observe":
            batch = draw(st.sampled_from(running))
            group = [BatchStateObserved(batch_id=batch, state="JOB_STATE_RUNNING")]
        elif choice == "succeed":
            batch = draw(st.sampled_from(running))
            m.succeeded.add(batch)
            group = [BatchSucceeded(batch_id=batch)]
        elif choice in ("fail", "clear"):
            batch = draw(st.sampled_from(running))
            m.free |= set(m.batches.pop(batch))
            m.gone.append(batch)
            group = [
                BatchFailed(batch_id=batch, state="JOB_STATE_EXPIRED")
                if choice == "fail"
                else BatchCleared(batch_id=batch, reason="stuck")
            ]
        elif choice == "results":
            batch = draw(st.sampled_from(sorted(m.succeeded)))
            keys = m.batches.pop(batch)
            m.succeeded.discard(batch)
            group, ok, bad = [], 0, 0
            for key in keys:
                kind = draw(st.sampled_from(["ok", "ok", "bad", "discard"]))
                if kind == "discard":
                    group.append(
                        ResultDiscarded(
                            record_key=key,
                            batch_id=batch,
                            reason="first",
                            prompt_tokens=3,
                            output_tokens=2,
                            model="m",
                        )
                    )
                    m.free.add(key)
                    continue
                if kind == "ok":
                    ok += 1
                    group.append(
                        RecordValidated(
                            record_key=key,
                            batch_id=batch,
                            output_path=f"out/{key}",
                            prompt_tokens=5,
                            output_tokens=4,
                            model="m",
                        )
                    )
                    continue
                bad += 1
                m.failures[key] = m.failures.get(key, 0) + 1
                group.append(
                    RecordFailed(
                        record_key=key,
                        batch_id=batch,
                        error_type=draw(st.sampled_from(ERRORS)),
                        message="bad",
                        excerpt="x",
                        prompt_tokens=draw(st.integers(0, 9)),
                        model=draw(st.sampled_from(["m", ""])),
                    )
                )
                if m.failures[key] >= MAX_RETRIES:
                    m.dead.add(key)
                    group.append(
                        RecordDeadLettered(
                            record_key=key, failures=m.failures[key], max_retries=MAX_RETRIES
                        )
                    )
                m.free.add(key)
            # Validated records may be re-run later (an operator deletes the output).
            m.free |= set(keys)
            group.append(BatchCompleted(batch_id=batch, validated=ok, failed=bad))
        elif choice == "reset":
            keys = draw(st.lists(st.sampled_from(sorted(m.failures)), min_size=1, unique=True))
            for key in keys:
                m.failures.pop(key)
                m.dead.discard(key)
            group = [FailuresReset(filter=ResetFilter(all=True), record_keys=keys)]
        elif choice == "late":
            batch = draw(st.sampled_from(m.gone))
            key = draw(st.sampled_from(KEYS))
            group = [
                RecordValidated(record_key=key, batch_id=batch, output_path="late"),
                LateResultsAdopted(batch_id=batch, adopted=1, ignored=0),
            ]
            m.gone.remove(batch)
        groups.append(group)
    return groups


#: Any JSON value (what a result line may decode to), nested a few levels.
json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "key",
                    "response",
                    "error",
                    "candidates",
                    "content",
                    "parts",
                    "text",
                    "finishReason",
                    "usageMetadata",
                    "promptTokenCount",
                    "totalTokenCount",
                    "thought",
                    "code",
                    "message",
                ]
            )
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=30,
)
