"""A wrong API key, an unreachable or a garbage ``base_url``: one line and exit 1 before any page
is touched (nothing appended, nothing uploaded); a merely busy service does not stop the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from commands.config import load_config
from gemini_emulator import Emulator
from tests.conftest import file_digest, run_cli
from tests.pipeline import API_KEY, check_final_state, keys_for, make_dataset, write_config

KEYS = keys_for(1, 1, 1, 3)


class Garbage(BaseHTTPRequestHandler):
    """Not the Gemini API: a web server answering every request with the same page."""

    status = 200

    def do_GET(self) -> None:
        body = b"<html>hello</html>"
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        pass


class Garbage404(Garbage):
    status = 404


@pytest.fixture(params=[Garbage, Garbage404], ids=["html-200", "html-404"])
def garbage_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def first_run(tmp_path: Path, emulator: Emulator) -> Path:
    """A dataset whose first page is already written, so the database exists to be hashed."""
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url)
    assert (
        run_cli("--config", str(config), "run", "--once", env={"E2E_GEMINI_KEY": API_KEY}).code == 0
    )
    return config


def refused(config: Path, key: str, *words: str) -> None:
    db = load_config(config).paths.database
    before = file_digest(db)
    r = run_cli("--config", str(config), "run", "--until-idle", env={"E2E_GEMINI_KEY": key})
    assert r.code == 1, r.err
    errors = [line for line in r.err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and all(w in errors[0] for w in words), r.err
    assert "Traceback" not in r.err and key not in r.err.replace(API_KEY, "")
    assert "rejected" not in r.err
    assert file_digest(db) == before  # no RunStarted, no page touched


@pytest.mark.parametrize("key", ["wrong-key", "x" * 200, API_KEY + "-old"])
def test_a_wrong_api_key_is_refused_before_any_page(
    tmp_path: Path, emulator: Emulator, key: str
) -> None:
    config = first_run(tmp_path, emulator)
    uploads = emulator.policy.calls("files.upload")
    refused(config, key, "refused the API key", "$E2E_GEMINI_KEY", "check the key")
    assert emulator.policy.calls("files.upload") == uploads
    # The right key carries on where the refused runs left nothing behind.
    r = run_cli("--config", str(config), "run", "--until-idle", env={"E2E_GEMINI_KEY": API_KEY})
    assert r.code == 0 and check_final_state(load_config(config), emulator, KEYS) == {
        "written": len(KEYS)
    }


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:1", "http://127.0.0.1:9/v1", "http://192.0.2.1:9"]
)
def test_an_unreachable_base_url_is_refused(tmp_path: Path, emulator: Emulator, url: str) -> None:
    config = first_run(tmp_path, emulator)
    write_config(tmp_path, url, network={"request_timeout_seconds": 1, "api_retry_attempts": 2})
    refused(config, API_KEY, "cannot reach the Gemini API", url, "base_url")


def test_a_base_url_that_is_not_the_api_is_refused(
    tmp_path: Path, emulator: Emulator, garbage_url: str
) -> None:
    config = first_run(tmp_path, emulator)
    write_config(tmp_path, garbage_url, network={"api_retry_attempts": 2})
    refused(config, API_KEY, garbage_url, "base_url")


def test_a_busy_service_does_not_stop_the_run(tmp_path: Path, emulator: Emulator) -> None:
    emulator.policy = {"faults": [{"endpoint": "files.list", "calls": [1, 2, 3, 4], "status": 503}]}
    make_dataset(tmp_path / "input", KEYS)
    config = write_config(tmp_path, emulator.url)
    r = run_cli("--config", str(config), "run", "--until-idle", env={"E2E_GEMINI_KEY": API_KEY})
    assert r.code == 0, r.err
    assert "is busy" in r.err
    assert check_final_state(load_config(config), emulator, KEYS) == {"written": len(KEYS)}
