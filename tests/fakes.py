"""An in-process adapter of the Gemini port over the emulator's service: no HTTP, no socket.

:class:`EmulatorPort` calls the :class:`gemini_emulator.service.Service` methods the HTTP handlers
call, applies the policy's injected faults around them as the handlers do (before the work, or
``after`` it: a lost answer), and raises :class:`GatewayError` as the SDK adapter would for the
same answer: the same ``code``, the same ``transient``, a message in the same form.

It makes one attempt per call (the SDK adapter with ``retry_attempts=1``): the adapter's retry
policy is its own and is tested against the emulator over HTTP (tests/commands/test_gateway.py).
A fault's ``delay`` at or over ``timeout_seconds`` is a client timeout: the service does the work
(unless the fault is an error answered first), the caller sees a transient error; a shorter delay
is slept.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from commands.config import parse_config
from commands.errors import GatewayError, transient_status
from commands.gemini.port import RemoteBatch, RemoteFile, normalize_state, stats_of
from commands.rules.reconcile import LookupWindow
from commands.schema import PageExtraction
from commands.worker.context import Worker
from gemini_emulator.service import (
    ApiError,
    Job,
    Service,
    StoredFile,
    apply_fault,
    operation,
    rfc3339,
)
from projections import open_store

BASE_URL = "http://emulator.invalid"
#: The SDK's upload chunk and list page sizes, so the policy counts calls as over HTTP.
CHUNK_BYTES = 8 * 1024 * 1024
PAGE_SIZE = 100
T = TypeVar("T")


class EmulatorPort:
    """A :class:`commands.gemini.port.GeminiPort` over ``service``, as the key ``api_key``."""

    def __init__(
        self, service: Service, *, api_key: str = "fake-key", timeout_seconds: float = 120.0
    ) -> None:
        self.service = service
        self.owner = api_key
        self.timeout_seconds = timeout_seconds
        self.closed = False

    def close(self) -> None:
        self.closed = True

    # --- the handlers' fault injection and the SDK adapter's translation ------------------------

    def _call(self, what: str, endpoint: str, subject: str, work: Callable[[], T]) -> T:
        """Do ``work`` as the handler of ``endpoint`` would, its injected fault (if any) before
        or after it; every :class:`ApiError` is raised as the SDK adapter's
        :class:`GatewayError`. Thread-safe (the service and the policy hold locks)."""
        fault = self.service.policy.fault_for(endpoint, subject)
        try:
            if fault is not None and fault.delay >= self.timeout_seconds:
                # The client gives up; the server carries on: it does the work unless its fault
                # is an error answered before the work.
                if fault.after or not fault.status:
                    work()
                raise GatewayError(f"{what}: timed out (fake)", transient=True)
            if fault is not None and not fault.after:
                apply_fault(fault, endpoint)
            result = work()
            if fault is not None and fault.after:
                apply_fault(fault, endpoint)
            return result
        except ApiError as e:
            transient = transient_status(e.code)
            raise GatewayError(
                f"{what}: {e.code} {e.status}: {e.message}",
                code=e.code,
                transient=transient,
                status=e.status,
            ) from None

    # --- files ---------------------------------------------------------------------------------

    def upload(
        self, source: Path | bytes, *, mime_type: str, display_name: str, retry: bool = False
    ) -> RemoteFile:
        what = f"upload {display_name}"
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        sid = self._call(
            what,
            "files.upload",
            display_name,
            lambda: self.service.start_upload(self.owner, display_name, mime_type, len(data)),
        )
        stored: StoredFile | None = None
        offset = 0
        while stored is None:  # in chunks, as the SDK sends them
            chunk = data[offset : offset + CHUNK_BYTES]
            last = offset + len(chunk) >= len(data)
            stored = self._call(
                what,
                "files.upload_bytes",
                display_name,
                functools.partial(self.service.upload_bytes, sid, offset, chunk, last),
            )
            offset += len(chunk)
        return RemoteFile(
            stored.name,
            _uri(stored),
            stored.mime_type,
            len(stored.data),
            display_name,
            self.service.file_state(stored),
        )

    def get_file(self, name: str) -> RemoteFile:
        file_id = name.removeprefix("files/")
        f = self._call(
            f"get {name}",
            "files.get",
            file_id,
            lambda: self.service.get_file(self.owner, file_id),
        )
        return RemoteFile(
            f.name, _uri(f), f.mime_type, len(f.data), f.display_name, self.service.file_state(f)
        )

    def delete_file(self, name: str) -> bool:
        file_id = name.removeprefix("files/")
        try:
            self._call(
                f"delete {name}",
                "files.delete",
                file_id,
                lambda: self.service.delete_file(self.owner, file_id),
            )
        except GatewayError as e:
            if e.code in (403, 404):
                return False
            raise
        return True

    def list_files(self) -> list[RemoteFile]:
        files = self._pages("list files", "files.list", self.service.list_files)
        return [
            RemoteFile(f.name, _uri(f), f.mime_type, len(f.data), f.display_name) for f in files
        ]

    def check_access(self) -> None:
        self._call("check access", "files.list", "", lambda: self.service.list_files(self.owner))

    def download_to(self, file_name: str, destination: Path) -> None:
        file_id = file_name.removeprefix("files/")
        data = self._call(
            f"download {file_name}",
            "files.download",
            file_id,
            lambda: self.service.download(self.owner, file_id),
        )
        destination.write_bytes(data)

    # --- batches -------------------------------------------------------------------------------

    def create_batch(self, *, model: str, input_file: str, display_name: str) -> RemoteBatch:
        body = {"displayName": display_name, "inputConfig": {"fileName": input_file}}
        model_name = f"models/{model.removeprefix('models/')}"
        job = self._call(
            f"create batch {display_name}",
            "batches.create",
            display_name,
            lambda: self.service.create_batch(self.owner, model_name, body),
        )
        return _batch(job)

    def get_batch(self, name: str) -> RemoteBatch:
        batch_id = name.removeprefix("batches/")
        job = self._call(
            f"get {name}",
            "batches.get",
            batch_id,
            lambda: self.service.get_batch(self.owner, batch_id),
        )
        return _batch(job)

    def find_batches(self, display_name: str, *, created_after: str = "") -> list[RemoteBatch]:
        window = LookupWindow(created_after)
        jobs = self._pages(
            f"look up batch {display_name}",
            "batches.list",
            self.service.list_batches,
            stop=lambda job: window.past(rfc3339(job.created)),
        )
        return [b for b in map(_batch, jobs) if b.display_name == display_name]

    def delete_batch(self, name: str) -> bool:
        batch_id = name.removeprefix("batches/")
        try:
            self._call(
                f"delete {name}",
                "batches.delete",
                batch_id,
                lambda: self.service.delete_batch(self.owner, batch_id),
            )
        except GatewayError as e:
            if e.code == 404:
                return False
            raise
        return True

    def cancel_batch(self, name: str) -> None:
        batch_id = name.removeprefix("batches/")
        self._call(
            f"cancel {name}",
            "batches.cancel",
            batch_id,
            lambda: self.service.cancel_batch(self.owner, batch_id),
        )

    def _pages(
        self,
        what: str,
        endpoint: str,
        listing: Callable[[str], list[T]],
        stop: Callable[[T], bool] | None = None,
    ) -> list[T]:
        """Every item of a listing, with one call (and fault check) per page, as the SDK's
        pager makes them; the reading ends at the first item ``stop`` says True for."""
        items: list[T] = []
        start = 0
        while True:
            everything = self._call(what, endpoint, "", lambda: listing(self.owner))
            for item in everything[start : start + PAGE_SIZE]:
                items.append(item)
                if stop is not None and stop(item):
                    return items
            start += PAGE_SIZE
            if start >= len(everything):
                return items


def _uri(f: StoredFile) -> str:
    return f"{BASE_URL}/v1beta/{f.name}"


def _batch(job: Job) -> RemoteBatch:
    """A job as the SDK adapter sees it: through the Operation the HTTP API answers (so a
    glitching state is reported, and consumed, as a poll over HTTP would)."""
    metadata = operation(job, BASE_URL)["metadata"]
    output = metadata.get("output") or {}
    inline = None
    if "inlinedResponses" in output:
        inline = []
        for i, item in enumerate(output["inlinedResponses"]["inlinedResponses"]):
            line: dict[str, Any] = {"key": str((item.get("metadata") or {}).get("key", i))}
            if "response" in item:
                line["response"] = item["response"]
            if "error" in item:
                line["error"] = {k: v for k, v in item["error"].items() if k != "status"}
            inline.append(line)
    return RemoteBatch(
        name=str(metadata["name"]),
        display_name=str(metadata.get("displayName") or ""),
        state=normalize_state(metadata["state"]),
        result_file=output.get("responsesFile"),
        inline_lines=inline,
        stats=stats_of(metadata),
        create_time=str(metadata.get("createTime") or ""),
    )


def make_worker(
    tmp: Path, port: EmulatorPort, sleeps: list[float], **sections: dict[str, Any]
) -> Worker:
    """A :class:`Worker` over ``port`` and a fresh store under ``tmp`` (outputs in
    ``tmp/output``), its sleeps recorded in ``sleeps``; ``sections`` override the config. The
    caller closes ``worker.store``."""
    base: dict[str, dict[str, Any]] = {
        "paths": {"output_root": "output", "database": "data/gemini_batches.db"},
        "batching": {"max_retries": 3},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    config = parse_config(base, tmp / "gemini_batches.toml")
    store = open_store(config.paths.database, create=True)
    return Worker(config, store, port, "unit", PageExtraction, sleeps.append)
