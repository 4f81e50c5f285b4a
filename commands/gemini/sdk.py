"""The google-genai adapter of the Gemini port (:class:`commands.gemini.port.GeminiPort`):
every call the worker makes to the File and Batch API goes through :class:`Gateway`.

* google-genai is imported here and nowhere else, lazily (it costs ~0.4 s of start-up).
* Its exceptions (``errors.APIError``, httpx timeouts and connection errors, and the
  ``ValueError``/``KeyError`` it raises for an upload that was not finalized) are translated into
  :class:`GatewayError` here, with the API key scrubbed from every message. Only exceptions raised
  inside an SDK call are translated: one from this module's own code (turning the SDK's answer
  into a :class:`RemoteFile`/:class:`RemoteBatch`) is a bug and propagates as it is.
* Idempotent calls (get, list, download, cancel, delete) are retried ``api_retry_attempts`` times
  with exponential backoff from ``api_retry_backoff_seconds`` on transient failures (5xx, 429,
  408, timeouts, connection errors); each attempt is logged; 4xx errors are not retried.
* ``create_batch`` is never retried: creation is not idempotent, so an unanswered create is
  resolved by looking the display name up (``find_batches``), never by creating again.
* ``upload`` makes one attempt: the upload policy (re-upload, backoff, give up) lives in
  :mod:`commands.worker.upload`, where each attempt becomes an event. The SDK is handed a
  buffer of the exact size it declared, never a path it would re-read: bytes as a
  ``BytesIO``, a path through :class:`~commands.gemini.uploads.ExactReader`, which raises once
  the file ends before its declared size (a file truncated meanwhile), where the SDK's chunk
  loop would post empty chunks for ever. The display name sent is
  :func:`~commands.gemini.uploads.safe_display_name` of the one given (plain printable ASCII);
  the caller's name stays in the :class:`RemoteFile` and the log. A client-side encoding error
  (``UnicodeError``) or a file that changed under the upload is not transient.
* ``get_batch`` reads the raw batch resource (one GET through the SDK's own API client, so the
  same key, base URL, version and timeout) and parses it with the SDK's own converter: the SDK's
  ``BatchJob`` drops ``metadata.batchStats``, which is read from the raw answer. Should a future
  SDK move those internals, it falls back to ``batches.get`` (no stats).
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from commands.config import Config, ProjectConfig
from commands.errors import ConfigError, GatewayError, transient_status
from commands.gemini import resources
from commands.gemini.port import (
    RemoteBatch,
    RemoteFile,
    stats_of,
)
from commands.gemini.uploads import ExactReader, FileChangedError, safe_display_name
from commands.rules.reconcile import LookupWindow
from commands.rules.retry import backoff_delay

if TYPE_CHECKING:  # imported lazily at run time (it costs ~0.4 s of start-up)
    from google.genai.types import UploadFileConfigDict

log = logging.getLogger("commands.gateway")
T = TypeVar("T")


def project_key_from_env(project: ProjectConfig) -> str:
    """The API key of one ``[[gemini.projects]]`` entry, from the variable it names."""
    key = os.environ.get(project.api_key_env, "").strip()
    if not key:
        raise ConfigError(
            f"no API key for project {project.name}: set the environment variable "
            f"{project.api_key_env} (named by its [[gemini.projects]] api_key_env)"
        )
    return key


def api_key_from_env(config: Config) -> str:
    """The API key from the variable ``[gemini] api_key_env`` names; a one-line error if unset."""
    name = config.gemini.api_key_env
    key = os.environ.get(name, "").strip()
    if not key:
        raise ConfigError(
            f"no API key: set the environment variable {name} "
            "(named by [gemini] api_key_env in the config)"
        )
    return key


class Gateway:
    """A google-genai client with the project's retry policy and error translation; implements
    :class:`commands.gemini.port.GeminiPort`."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "",
        timeout_seconds: float = 120.0,
        retry_attempts: int = 3,
        retry_backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from google import genai
        from google.genai import types

        self._key = api_key
        self._closed = False
        self.retry_attempts = retry_attempts
        self.retry_backoff_seconds = retry_backoff_seconds
        self._sleep = sleep
        options = types.HttpOptions(base_url=base_url or None, timeout=int(timeout_seconds * 1000))
        self._client = genai.Client(api_key=api_key, http_options=options)

    @classmethod
    def from_config(cls, config: Config, api_key: str | None = None) -> Gateway:
        return cls(
            api_key=api_key or api_key_from_env(config),
            base_url=config.gemini.base_url,
            timeout_seconds=config.network.request_timeout_seconds,
            retry_attempts=config.network.api_retry_attempts,
            retry_backoff_seconds=config.network.api_retry_backoff_seconds,
        )

    def close(self) -> None:
        self._closed = True  # calls still on their threads stop at their next attempt
        self._client.close()

    # --- the one translation boundary ------------------------------------------------------------

    def translate(self, error: BaseException, what: str) -> GatewayError:
        """Map a google-genai / httpx exception onto :class:`GatewayError` (key scrubbed)."""
        from google.genai import errors as genai_errors

        timeouts, transports = _http_errors()
        code: int | None = None
        status = ""
        if isinstance(error, genai_errors.APIError):
            code = error.code
            status = str(error.status or "")
            transient = transient_status(code)
            detail = f"{code} {error.status}: {error.message}"
        elif isinstance(error, timeouts):
            transient, detail = True, f"timed out ({type(error).__name__})"
        elif isinstance(error, transports):
            transient, detail = True, f"connection error ({type(error).__name__}: {error})"
        elif isinstance(error, (UnicodeError, FileChangedError)):
            # Raised before anything reached the service: sending it again cannot help.
            transient, detail = False, f"cannot be sent ({type(error).__name__}: {error})"
        elif isinstance(error, (ValueError, KeyError)):
            # Raised inside an SDK call (only those reach here), these mean an upload was not
            # finalized or an answer lacked a header: the service's fault, not ours.
            transient, detail = True, f"unexpected answer ({type(error).__name__}: {error})"
        else:
            raise error
        message = f"{what}: {detail}".replace(self._key, "***")
        return GatewayError(message, code=code, transient=transient, status=status)

    def _sdk(self, what: str, call: Callable[[], T]) -> T:
        """Run one SDK call (nothing but the call: its exceptions are translated)."""
        try:
            return call()
        except Exception as e:
            raise self.translate(e, what) from None

    def _retrying(self, what: str, attempt_once: Callable[[], T]) -> T:
        """Repeat ``attempt_once`` (which makes its SDK calls through :meth:`_sdk`) while it
        raises a transient :class:`GatewayError`, up to ``retry_attempts`` times."""
        for attempt in range(1, self.retry_attempts + 1):
            try:
                return attempt_once()
            except GatewayError as e:
                if self._closed:  # the run is ending: no retry, no warning
                    raise
                if not e.transient or attempt == self.retry_attempts:
                    log.warning(
                        "%s failed (attempt %d/%d, giving up): %s",
                        what,
                        attempt,
                        self.retry_attempts,
                        e,
                    )
                    raise
                delay = backoff_delay(self.retry_backoff_seconds, attempt)
                log.warning(
                    "%s failed (attempt %d/%d, retrying in %.2fs): %s",
                    what,
                    attempt,
                    self.retry_attempts,
                    delay,
                    e,
                )
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _sdk_retrying(self, what: str, call: Callable[[], T]) -> T:
        """One SDK call, retried by :meth:`_retrying` (for idempotent calls only)."""
        return self._retrying(what, lambda: self._sdk(what, call))

    # --- files ---------------------------------------------------------------------------------

    def upload(
        self, source: Path | bytes, *, mime_type: str, display_name: str, retry: bool = False
    ) -> RemoteFile:
        """Upload a file: one attempt. The worker's uploads, page images and request files alike,
        follow the upload policy of :mod:`commands.worker.upload`; ``retry=True`` uses the API
        retry policy instead (for callers outside the worker)."""
        what = f"upload {display_name}"
        config: UploadFileConfigDict = {
            "mime_type": mime_type,
            "display_name": safe_display_name(display_name),
        }

        def attempt() -> Any:
            if isinstance(source, bytes):
                return self._sdk(
                    what, lambda: self._client.files.upload(file=io.BytesIO(source), config=config)
                )
            try:
                reader = ExactReader(source)
            except OSError as e:
                raise GatewayError(f"{what}: cannot read {source}: {e}", transient=False) from None
            with reader:
                return self._sdk(
                    what, lambda: self._client.files.upload(file=reader, config=config)
                )

        f = self._retrying(what, attempt) if retry else attempt()
        return resources.remote_file(f, display_name)

    def get_file(self, name: str) -> RemoteFile:
        """An uploaded file as the service has it now (``files.get``, retried when transient)."""
        f = self._sdk_retrying(f"get {name}", lambda: self._client.files.get(name=name))
        return resources.remote_file(f)

    def delete_file(self, name: str) -> bool:
        """Delete an uploaded file; False if it was already gone (403/404)."""
        what = f"delete {name}"
        try:
            self._sdk_retrying(what, lambda: self._client.files.delete(name=name))
        except GatewayError as e:
            if e.code in (403, 404):
                return False
            raise
        return True

    def list_files(self) -> list[RemoteFile]:
        """Every file this key has on the service (all pages)."""
        what = "list files"
        # The pager fetches the next page while it is iterated: the iteration is the SDK call.
        files = self._sdk_retrying(
            what, lambda: list(self._client.files.list(config={"page_size": 100}))
        )
        return [resources.remote_file(f) for f in files]

    def check_access(self) -> None:
        """The first page of at most one file: one request (retried as reads are)."""
        self._sdk_retrying(
            "check access", lambda: next(iter(self._client.files.list(config={"page_size": 1})), 0)
        )

    def download_to(self, file_name: str, destination: Path) -> None:
        """Stream a result file to ``destination`` (memory stays flat however big it is)."""
        what = f"download {file_name}"

        def attempt() -> None:
            with destination.open("wb") as fh:
                self._sdk(what, lambda: self._client.files.download(file=file_name, destination=fh))

        self._retrying(what, attempt)

    # --- batches -------------------------------------------------------------------------------

    def create_batch(self, *, model: str, input_file: str, display_name: str) -> RemoteBatch:
        """One create attempt: never retried (the real API does not deduplicate creates)."""
        what = f"create batch {display_name}"

        def create() -> Any:
            try:
                return self._client.batches.create(
                    model=model, src=input_file, config={"display_name": display_name}
                )
            except _UNREADABLE as e:
                if isinstance(e, ValueError | KeyError):
                    raise  # translated as an unexpected answer (transient)
                # The SDK could not read the answer; the job may well exist: unanswered.
                raise GatewayError(
                    f"{what}: unreadable answer ({type(e).__name__}: {e})", transient=True
                ) from e

        batch = resources.batch(self._sdk(what, create))
        if not batch.name:  # made, perhaps, but unnamed: looked up by its display name
            raise GatewayError(f"{what}: unreadable answer (it names no job)", transient=True)
        return batch

    def get_batch(self, name: str) -> RemoteBatch:
        """A job's current state. An answer the SDK cannot read (a state that is not text, a
        ``dest`` of the wrong shape, a bad time) is read leniently from the raw resource
        (:func:`_lenient_batch`: a state it cannot read is ``JOB_STATE_UNREADABLE``, which the
        worker treats as a state it does not know), never raised."""
        raw, job = self._sdk_retrying(f"get {name}", lambda: self._get_raw(name))
        if job is not None:
            return resources.batch(job)
        batch = _parse_batch(raw, name)
        assert batch is not None  # a lenient reading of a get always has the name asked for
        return batch

    def _api(self) -> Any:
        """The SDK's API client for raw requests, or None when its private parts moved."""
        from google.genai import batches as genai_batches

        api = getattr(self._client, "_api_client", None)
        if getattr(genai_batches, "_BatchJob_from_mldev", None) is None or api is None:
            return None
        return None if getattr(api, "vertexai", False) else api

    def _get_raw(self, name: str) -> tuple[Any, Any]:
        """One GET of the batch resource: its raw JSON (which keeps ``batchStats``; see the
        module docstring) and None, or (the SDK's private parts moved) None and the SDK's
        ``BatchJob`` from the public call."""
        import json

        api = self._api()
        if api is not None:
            try:
                response = api.request("get", f"batches/{name.removeprefix('batches/')}", {}, None)
            except (TypeError, AttributeError) as e:
                # The SDK's private parts changed shape (an API error is not caught here):
                # poll through the public call, without the request counts.
                log.debug("Reading %s's raw resource failed (%s); using batches.get", name, e)
            else:
                return (json.loads(response.body) if response.body else {}), None
        return None, self._client.batches.get(name=name)

    def _list_raw(self, api: Any, window: LookupWindow) -> list[Any] | None:
        """The raw entries of the service's batch list, page by page, until ``window`` says
        stop; None when the SDK's private parts moved (then the public list is used)."""
        import json

        entries: list[Any] = []
        token = ""
        while True:
            query = "pageSize=100" + (f"&pageToken={token}" if token else "")
            try:
                response = api.request("get", f"batches?{query}", {}, None)
            except (TypeError, AttributeError) as e:
                if token:
                    raise
                log.debug("Listing batches raw failed (%s); using batches.list", e)
                return None
            page = json.loads(response.body) if response.body else {}
            page = page if isinstance(page, dict) else {}
            listed = page.get("operations") or page.get("batches") or []
            for entry in listed if isinstance(listed, list) else []:
                entries.append(entry)
                if window.past(resources.raw_create_time(entry)):
                    return entries
            token = page.get("nextPageToken") or ""
            if not isinstance(token, str) or not token:
                return entries

    def find_batches(self, display_name: str, *, created_after: str = "") -> list[RemoteBatch]:
        """Every job created under ``display_name``, page by page; with ``created_after``, the
        reading stops once the list (newest first, as the service lists it) is past that time
        (:class:`commands.rules.reconcile.LookupWindow`), else it reads the whole history.
        Entries of the list that are not a batch job at all (no name) are skipped, counted in
        a WARNING; an odd one is read leniently (:func:`_lenient_batch`)."""
        what = f"look up batch {display_name}"

        def read() -> tuple[list[Any] | None, list[Any]]:
            api = self._api()
            raw = self._list_raw(api, LookupWindow(created_after)) if api is not None else None
            if raw is not None:
                return raw, []
            jobs: list[Any] = []
            window = LookupWindow(created_after)
            for j in self._client.batches.list(config={"page_size": 100}):
                jobs.append(j)
                if window.past(resources.rfc3339(j.create_time)):
                    break
            return None, jobs

        raw, jobs = self._sdk_retrying(what, read)
        if raw is None:
            return [b for b in (resources.batch(j) for j in jobs) if b.display_name == display_name]
        parsed = [_parse_batch(entry, None) for entry in raw]
        found = [b for b in parsed if b is not None]
        if len(found) < len(parsed):
            log.warning(
                "%s: skipped %d entr(ies) of the service's batch list that are not a batch "
                "job (no name)",
                what,
                len(parsed) - len(found),
            )
        return [b for b in found if b.display_name == display_name]

    def cancel_batch(self, name: str) -> None:
        what = f"cancel {name}"
        self._sdk_retrying(what, lambda: self._client.batches.cancel(name=name))

    def delete_batch(self, name: str) -> bool:
        """Delete a job; False if it was already gone (404)."""
        what = f"delete {name}"
        try:
            self._sdk_retrying(what, lambda: self._client.batches.delete(name=name))
        except GatewayError as e:
            if e.code == 404:
                return False
            raise
        return True


def _http_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport exception classes of whichever HTTP stack the SDK uses (httpx, or
    its fork httpx2 from google-genai 3.x)."""
    import importlib

    timeouts: list[type[BaseException]] = []
    transports: list[type[BaseException]] = []
    for name in ("httpx", "httpx2"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transports.append(module.TransportError)
    return tuple(timeouts), tuple(transports)


#: What the SDK's converter and models raise on an answer of the wrong shape.
_UNREADABLE = (TypeError, AttributeError, KeyError, ValueError, IndexError)


def _parse_batch(raw: Any, name: str | None) -> RemoteBatch | None:
    """A raw batch resource (an Operation) as the SDK reads it, with its ``batchStats``; one
    the SDK cannot read, read leniently (:func:`_lenient_batch`). ``name``: the job asked for
    (a get), None for a list entry (then an entry naming no job is None)."""
    from google.genai import batches as genai_batches
    from google.genai import types

    metadata = raw.get("metadata") if isinstance(raw, dict) else None
    try:
        converted = genai_batches._BatchJob_from_mldev(raw)
        job = types.BatchJob._from_response(response=converted, kwargs={})
    except _UNREADABLE as e:
        log.debug("The SDK cannot read batch resource %s (%s); read leniently", name, e)
        return resources.lenient_batch(raw, name)
    batch = resources.batch(job)  # our own code: an exception here is a bug, and propagates
    if not batch.name:
        return resources.lenient_batch(raw, name)
    stats = stats_of(metadata)
    return msgspec.structs.replace(batch, stats=stats) if stats is not None else batch
