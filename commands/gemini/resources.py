"""The service's resources as the port's values (:class:`RemoteFile`, :class:`RemoteBatch`): from
the SDK's objects (read by their attributes, no SDK import here) or, leniently, from raw JSON the
SDK could not read. Pure; :func:`lenient_batch` never raises."""

from __future__ import annotations

from typing import Any

from commands.gemini.port import (
    RemoteBatch,
    RemoteFile,
    normalize_state,
    service_count,
    stats_of,
)

__all__ = [
    "UNREADABLE_STATE",
    "batch",
    "lenient_batch",
    "raw_create_time",
    "remote_file",
    "rfc3339",
]

UNREADABLE_STATE = "JOB_STATE_UNREADABLE"


def remote_file(f: Any, display_name: str | None = None) -> RemoteFile:
    """The port's view of an SDK ``File`` (its own display name unless one is given)."""
    name = str(f.display_name or "") if display_name is None else display_name
    return RemoteFile(
        str(f.name), str(f.uri), str(f.mime_type), service_count(f.size_bytes), name, _file_state(f)
    )


def _file_state(f: Any) -> str:
    """The SDK's FileState (or its absence: taken as ACTIVE) as ``PROCESSING|ACTIVE|FAILED``."""
    state = getattr(f, "state", None)
    text = str(getattr(state, "value", state) or "ACTIVE").upper()
    return "ACTIVE" if text == "STATE_UNSPECIFIED" else text


def rfc3339(moment: Any) -> str:
    """The SDK's ``create_time`` (a datetime, or None) as RFC 3339 text ("" if unknown)."""
    if moment is None:
        return ""
    return str(moment.isoformat()) if hasattr(moment, "isoformat") else str(moment)


def raw_create_time(entry: Any) -> str:
    """A raw list entry's ``metadata.createTime`` ("" when it has none as text)."""
    metadata = entry.get("metadata") if isinstance(entry, dict) else None
    moment = metadata.get("createTime") if isinstance(metadata, dict) else None
    return moment if isinstance(moment, str) else ""


def lenient_batch(raw: Any, name: str | None) -> RemoteBatch | None:
    """What can be read of a batch resource the SDK could not read (pure, never raises): its
    name (else ``name``; neither: None), display name, state (``JOB_STATE_UNREADABLE`` unless
    it is text), result file, create time and counts; the rest is dropped."""
    body = raw if isinstance(raw, dict) else {}
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}

    def text(value: Any) -> str:
        return value if isinstance(value, str) else ""

    found = text(body.get("name")) or text(metadata.get("name")) or (name or "")
    if not found:
        return None
    state = metadata.get("state")
    output = metadata.get("output")
    output = output if isinstance(output, dict) else {}
    return RemoteBatch(
        name=found,
        display_name=text(metadata.get("displayName")),
        state=normalize_state(state) if isinstance(state, str) and state else UNREADABLE_STATE,
        result_file=text(output.get("responsesFile")) or None,
        stats=stats_of(metadata),
        create_time=text(metadata.get("createTime")),
    )


def batch(job: Any) -> RemoteBatch:
    dest = getattr(job, "dest", None)
    inline = None
    if dest is not None and dest.inlined_responses:
        inline = []
        for i, item in enumerate(dest.inlined_responses):
            line: dict[str, Any] = {"key": str((item.metadata or {}).get("key", i))}
            if item.response is not None:
                line["response"] = item.response.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
            if item.error is not None:
                line["error"] = item.error.model_dump(mode="json", exclude_none=True)
            inline.append(line)
    return RemoteBatch(
        name=str(job.name or ""),
        display_name=str(job.display_name or ""),
        state=normalize_state(job.state),
        result_file=getattr(dest, "file_name", None) if dest is not None else None,
        inline_lines=inline,
        create_time=rfc3339(getattr(job, "create_time", None)),
    )
