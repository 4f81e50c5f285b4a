from __future__ import annotations

from pathlib import Path

import pytest

from commands.config import Config, load_config
from commands.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gemini_batches.toml"
    p.write_text(text)
    return p


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEMINI_BATCHES_CONFIG", raising=False)
    c = load_config()
    assert c.batching.max_retries == 3 and c.network.api_retry_attempts == 3
    assert c.gemini.api_key_env == "GEMINI_API_KEY" and c.gemini.base_url == ""
    assert c.paths.database == tmp_path / "data" / "gemini_batches.db"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    c = load_config(_write(tmp_path, '[paths]\ninput_root = "pages"\n[batching]\nbatch_size = 7\n'))
    assert c.paths.input_root == tmp_path / "pages"
    assert c.batching.batch_size == 7 and c.source == tmp_path / "gemini_batches.toml"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[batching]\nbatch_sise = 5\n",
            "[batching] batch_sise: unknown key (known keys: batch_size",
        ),
        ("[batchin]\nbatch_size = 5\n", "unknown section or key 'batchin'"),
        (
            '[batching]\nmax_retries = "three"\n',
            "[batching] max_retries: Input should be a valid integer",
        ),
        ("[batching]\nbatch_size = 0\n", "[batching] batch_size: Input should be greater than"),
        (
            "[batching]\nmax_enqueued_tokens = -1\n",
            "[batching] max_enqueued_tokens: Input should be greater than or equal to 0",
        ),
        (
            '[gemini]\noutput_schema = "no_colon"\n',
            "[gemini] output_schema: Value error, must be 'module:Class'",
        ),
        ("[batching\n", "not valid TOML"),
        (
            '[uploads]\nimage_transport = "base64"\n',
            "[uploads] image_transport: Input should be 'auto', 'inline' or 'file_api'",
        ),
        (
            "[uploads]\nmax_request_file_bytes = 3000000000\n",
            "[uploads] max_request_file_bytes: Input should be less than or equal to 2147483648",
        ),
        (
            "[uploads]\ninline_image_max_bytes = 0\n",
            "[uploads] inline_image_max_bytes: Input should be greater than or equal to 1",
        ),
    ],
)
def test_bad_config_names_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_an_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_every_design_key_exists() -> None:
    keys = {
        section: set(type(getattr(Config(), section)).model_fields)
        for section in ("paths", "gemini", "batching", "uploads", "network", "pricing", "database")
    }
    assert keys == {
        "paths": {"input_root", "output_root", "database", "reports_dir"},
        "gemini": {
            "model",
            "api_key_env",
            "base_url",
            "prompt",
            "output_schema",
            "context_previous_page",
        },
        "batching": {
            "batch_size",
            "max_active_batches",
            "max_retries",
            "poll_interval_seconds",
            "stuck_pending_hours",
            "late_results_grace_minutes",
            "delete_finished_jobs",
            "quota_backoff_seconds",
            "quota_backoff_max_seconds",
            "max_enqueued_tokens",
        },
        "uploads": {
            "upload_retry_attempts",
            "upload_retry_backoff_seconds",
            "upload_concurrency",
            "request_file_active_timeout_seconds",
            "request_file_active_poll_seconds",
            "image_transport",
            "inline_image_max_bytes",
            "max_request_file_bytes",
        },
        "network": {"api_retry_attempts", "api_retry_backoff_seconds", "request_timeout_seconds"},
        "pricing": {"batch_discount", "currency", "models"},
        "database": {"busy_timeout_seconds", "url"},
    }


def test_the_example_config_documents_the_defaults() -> None:
    from tests.conftest import ROOT

    example = load_config(ROOT / "gemini_batches.example.toml")
    defaults = Config().resolved(ROOT)
    assert example.model_dump(exclude={"source"}) == defaults.model_dump(exclude={"source"})
