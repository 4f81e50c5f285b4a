"""The HTTP face of the emulator: the Gemini REST wire format, closely enough for the unmodified
google-genai SDK (see ../shared/GEMINI_WIRE.md), on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from gemini_emulator.policy import Policy
from gemini_emulator.service import ApiError, Service, apply_fault, normalize_keys, operation

log = logging.getLogger("gemini_emulator")

_VERSION = r"(?:v1|v1beta|v1alpha)"
ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"^/upload/{_VERSION}/files$"), "upload"),
    (
        "POST",
        re.compile(rf"^/{_VERSION}/models/(?P<model>[^/:]+):batchGenerateContent$"),
        "batches.create",
    ),
    (
        "GET",
        re.compile(rf"^/(?:download/)?{_VERSION}/files/(?P<id>[^/:]+):download$"),
        "files.download",
    ),
    ("GET", re.compile(rf"^/{_VERSION}/files/(?P<id>[^/:]+)$"), "files.get"),
    ("GET", re.compile(rf"^/{_VERSION}/files$"), "files.list"),
    ("DELETE", re.compile(rf"^/{_VERSION}/files/(?P<id>[^/:]+)$"), "files.delete"),
    ("GET", re.compile(rf"^/{_VERSION}/batches/(?P<id>[^/:]+)$"), "batches.get"),
    ("GET", re.compile(rf"^/{_VERSION}/batches$"), "batches.list"),
    ("POST", re.compile(rf"^/{_VERSION}/batches/(?P<id>[^/:]+):cancel$"), "batches.cancel"),
    ("DELETE", re.compile(rf"^/{_VERSION}/batches/(?P<id>[^/:]+)$"), "batches.delete"),
    ("GET", re.compile(r"^/_emulator/ledger$"), "admin.ledger"),
    ("GET", re.compile(r"^/_emulator/calls$"), "admin.calls"),
    #: Every API call as [endpoint, start, end] (seconds on the emulator's monotonic clock), so
    #: a benchmark can tell the calls that overlapped others from those that ran alone.
    ("GET", re.compile(r"^/_emulator/timeline$"), "admin.timeline"),
    #: Per API key: each job's owner, calls per endpoint and key, lookups under a foreign key.
    ("GET", re.compile(r"^/_emulator/keys$"), "admin.keys"),
    ("POST", re.compile(r"^/_emulator/advance$"), "admin.advance"),
]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    # --- plumbing ----------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every keep-alive request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self,
        status: int,
        body: bytes,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=UTF-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, value: Any, headers: dict[str, str] | None = None) -> None:
        self._send(200, json.dumps(value).encode(), headers)

    def _error(self, e: ApiError, upload: bool) -> None:
        headers = {"X-Goog-Upload-Status": "final"} if upload else None
        self._send(e.code, json.dumps(e.body()).encode(), headers)

    def _base_url(self) -> str:
        return f"http://{self.headers.get('Host') or '127.0.0.1'}"

    def _dispatch(self, method: str) -> None:
        start = time.monotonic()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        body = self._body()
        is_upload = url.path.startswith("/upload/")
        try:
            for route_method, pattern, endpoint in ROUTES:
                m = pattern.match(url.path)
                if m and route_method == method:
                    try:
                        self._route(endpoint, m.groupdict(), query, body)
                    finally:
                        if not endpoint.startswith("admin."):
                            self.server.record_call(endpoint, start, time.monotonic())
                    return
            raise ApiError(404, f"No route for {method} {url.path}.")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout): nobody to answer
        except ApiError as e:
            self._error(e, is_upload)
        except Exception as e:  # a bug in the emulator: answer 500 like a server would
            log.exception("emulator error on %s %s", method, url.path)
            self._error(ApiError(500, f"emulator bug: {e}"), is_upload)

    def _owner(self) -> str:
        key = self.headers.get("x-goog-api-key") or ""
        if not key:
            raise ApiError(401, "Method doesn't allow unregistered callers. Please use an API Key.")
        expected = self.server.api_key
        if expected is not None and key not in (
            [expected] if isinstance(expected, str) else expected
        ):
            raise ApiError(
                400, "API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"
            )
        return key

    @contextlib.contextmanager
    def _faults(self, endpoint: str, subject: str = "", keys: Sequence[str] = ()) -> Iterator[None]:
        """Apply the policy's fault for this call: before the work, or (``after``) once the work
        is done, so the caller never hears that it succeeded (a lost answer)."""
        fault = self.server.service.policy.fault_for(endpoint, subject, keys)
        if fault is not None and not fault.after:
            apply_fault(fault, endpoint)
        yield
        if fault is not None and fault.after:
            apply_fault(fault, endpoint)

    # --- endpoints -------------------------------------------------------------------------------

    def _route(
        self, endpoint: str, params: dict[str, str], query: dict[str, str], body: bytes
    ) -> None:
        service = self.server.service
        if endpoint.startswith("admin."):
            return self._admin(endpoint, body)
        base = self._base_url()
        if endpoint == "upload":
            return self._upload(query, body, base)
        owner = self._owner()
        with service.lock:
            service.calls_by_key[f"{endpoint} {owner}"] += 1
        data = json.loads(body) if body else {}
        subject = params.get("id", "")
        keys: list[str] = []
        if endpoint == "batches.create":
            batch = _batch_body(data)
            subject = str(batch.get("displayName", ""))
            keys = service.batch_keys(owner, batch)
        with self._faults(endpoint, subject, keys):
            if endpoint == "files.get":
                answer = service.file_resource(service.get_file(owner, subject), base)
            elif endpoint == "files.list":
                answer = _page(
                    [service.file_resource(f, base) for f in service.list_files(owner)],
                    query,
                    "files",
                )
            elif endpoint == "files.delete":
                service.delete_file(owner, subject)
                answer = {}
            elif endpoint == "files.download":
                raw = service.download(owner, subject)
            elif endpoint == "batches.create":
                answer = service.policy.shape_answer(
                    endpoint,
                    operation(
                        service.create_batch(owner, f"models/{params['model']}", batch), base
                    ),
                )
            elif endpoint == "batches.get":
                answer = service.policy.shape_answer(
                    endpoint, operation(service.get_batch(owner, subject), base)
                )
            elif endpoint == "batches.list":
                jobs = [
                    service.policy.shape_answer(endpoint, operation(j, base))
                    for j in service.list_batches(owner)
                ]
                answer = _page([*service.policy.list_garbage(), *jobs], query, "operations")
            elif endpoint == "batches.cancel":
                service.cancel_batch(owner, subject)
                answer = {}
            elif endpoint == "batches.delete":
                service.delete_batch(owner, subject)
                answer = {}
            else:
                raise ApiError(404, f"Unknown endpoint {endpoint}.")
        if endpoint == "files.download":
            return self._send(200, raw, content_type="application/octet-stream")
        return self._json(answer)

    def _upload(self, query: dict[str, str], body: bytes, base: str) -> None:
        """Resumable upload: the start needs the API key; the upload URL authorises the bytes."""
        service = self.server.service
        command = (self.headers.get("X-Goog-Upload-Command") or "").lower()
        if "start" in command:
            owner = self._owner()
            meta = json.loads(body or b"{}").get("file") or {}
            meta = normalize_keys(meta)
            display = str(meta.get("displayName", ""))
            mime = self.headers.get("X-Goog-Upload-Header-Content-Type") or meta.get(
                "mimeType", "application/octet-stream"
            )
            size = int(
                self.headers.get("X-Goog-Upload-Header-Content-Length")
                or meta.get("sizeBytes")
                or 0
            )
            with self._faults("files.upload", display):
                sid = service.start_upload(owner, display, mime, size)
            url = f"{base}/upload/v1beta/files?upload_id={sid}&upload_protocol=resumable"
            return self._send(
                200, b"{}", {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}
            )
        if "upload" not in command:
            raise ApiError(400, f"Unknown X-Goog-Upload-Command {command!r}.")
        offset = int(self.headers.get("X-Goog-Upload-Offset") or 0)
        sid = query.get("upload_id", "")
        display = service.uploads[sid].display_name if sid in service.uploads else ""
        with self._faults("files.upload_bytes", display):
            stored = service.upload_bytes(sid, offset, body, "finalize" in command)
        if stored is None:
            return self._send(200, b"", {"X-Goog-Upload-Status": "active"})
        return self._json(
            {"file": service.file_resource(stored, base)}, {"X-Goog-Upload-Status": "final"}
        )

    def _admin(self, endpoint: str, body: bytes) -> None:
        service = self.server.service
        if endpoint == "admin.advance":
            service.advance(float(json.loads(body or b"{}").get("seconds", 0)))
            return self._json({"now": service.now()})
        if endpoint == "admin.calls":
            return self._json(service.policy.all_calls())
        if endpoint == "admin.timeline":
            with self.server.timeline_lock:
                return self._json(list(self.server.timeline))
        if endpoint == "admin.keys":
            with service.lock:
                jobs = [
                    {"name": j.name, "display_name": j.display_name, "owner": j.owner}
                    for j in service.jobs.values()
                ]
                return self._json(
                    {
                        "jobs": jobs,
                        "calls": dict(service.calls_by_key),
                        "foreign_lookups": service.foreign_lookups,
                    }
                )
        ledger = [b.__dict__ for b in service.ledger()]
        return self._json({"billed": ledger, "creates": dict(service.creates)})


def _batch_body(data: dict[str, Any]) -> dict[str, Any]:
    batch = normalize_keys(data.get("batch") or {})
    if not isinstance(batch, dict):
        raise ApiError(400, "batch must be an object.")
    return batch


def _page(items: list[dict[str, Any]], query: dict[str, str], field: str) -> dict[str, Any]:
    size = max(1, min(int(query.get("pageSize") or 50), 1000))
    start = int(query.get("pageToken") or 0)
    out: dict[str, Any] = {field: items[start : start + size]}
    if start + size < len(items):
        out["nextPageToken"] = str(start + size)
    return out


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, service: Service, port: int = 0, api_key: str | Sequence[str] | None = None
    ) -> None:
        self.service = service
        self.api_key = api_key
        self.timeline: list[tuple[str, float, float]] = []
        self.timeline_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), Handler)

    def record_call(self, endpoint: str, start: float, end: float) -> None:
        """Note one API call's span (``GET /_emulator/timeline``)."""
        with self.timeline_lock:
            self.timeline.append((endpoint, start, end))


class Emulator:
    """A running emulator: ``with Emulator(policy) as emu: ... emu.url ...``.

    Binds 127.0.0.1 only, on an ephemeral port unless ``port`` is given. ``api_key`` (optional:
    one key, or several, one per project) makes it refuse any other key, as the real service
    does.
    """

    def __init__(
        self,
        policy: Policy | dict[str, Any] | None = None,
        *,
        port: int = 0,
        api_key: str | Sequence[str] | None = None,
        **service_options: Any,
    ) -> None:
        if isinstance(policy, dict):
            policy = Policy.from_data(policy)
        self.service = Service(policy, **service_options)
        self._server = EmulatorHTTPServer(self.service, port, api_key)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def policy(self) -> Policy:
        return self.service.policy

    @policy.setter
    def policy(self, value: Policy | dict[str, Any]) -> None:
        self.service.policy = Policy.from_data(value) if isinstance(value, dict) else value

    def start(self) -> Emulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="gemini-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._server.serve_forever()


@contextlib.contextmanager
def spawn(policy: Path | None = None, api_key: str | None = None) -> Iterator[str]:
    """Run ``python -m gemini_emulator`` as its own process (as the real service is one) on a
    free port; yields its base URL and stops it afterwards."""
    args = [sys.executable, "-m", "gemini_emulator", "--port", "0"]
    if policy is not None:
        args += ["--policy", str(policy)]
    if api_key is not None:
        args += ["--api-key", api_key]
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        if "listening on " not in first:
            raise RuntimeError(f"the emulator did not start: {first!r}")
        yield first.rsplit("listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
