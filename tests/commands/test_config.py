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
            "[uploads]\nmax_upload_attempts = 0\n",
            "[uploads] max_upload_attempts: Input should be greater than or equal to 1",
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
            "projects",
            "max_output_tokens",
            "max_output_tokens_ceiling",
            "temperature",
            "media_resolution",
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
            "max_upload_attempts",
            "request_file_active_timeout_seconds",
            "request_file_active_poll_seconds",
            "image_transport",
            "inline_image_max_bytes",
            "max_request_file_bytes",
        },
        "network": {
            "api_retry_attempts",
            "api_retry_backoff_seconds",
            "request_timeout_seconds",
            "max_calls_in_flight",
        },
        "pricing": {"batch_discount", "currency", "models"},
        "database": {"busy_timeout_seconds", "url"},
    }


def test_the_example_config_documents_the_defaults() -> None:
    from tests.conftest import ROOT

    example = load_config(ROOT / "gemini_batches.example.toml")
    defaults = Config().resolved(ROOT)
    assert example.model_dump(exclude={"source"}) == defaults.model_dump(exclude={"source"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[batching]\nbatch_size = true\n",
            "[batching] batch_size: Input should be a valid integer",
        ),
        (
            "[batching]\nbatch_size = 10.0\n",
            "[batching] batch_size: Input should be a valid integer",
        ),
        (
            '[batching]\nbatch_size = "10"\n',
            "[batching] batch_size: Input should be a valid integer",
        ),
        (
            "[batching]\nbatch_size = 100001\n",
            "[batching] batch_size: Input should be less than or equal to 100000 (got 100001)",
        ),
        ("[batching]\nmax_retries = false\n", "[batching] max_retries: Input should be a valid"),
        ("[batching]\nmax_retries = 101\n", "[batching] max_retries: Input should be less than"),
        ("[batching]\nmax_active_batches = 1000\n", "[batching] max_active_batches: Input should"),
        (
            "[batching]\nmax_enqueued_tokens = 1e12\n",
            "[batching] max_enqueued_tokens: Input should be a valid integer",
        ),
        (
            "[batching]\nmax_enqueued_tokens = 1000000000000\n",
            "[batching] max_enqueued_tokens: Input should be less than or equal to",
        ),
        ("[batching]\npoll_interval_seconds = true\n", "[batching] poll_interval_seconds: Input"),
        (
            "[batching]\npoll_interval_seconds = inf\n",
            "poll_interval_seconds: Input should be a finite",
        ),
        (
            "[batching]\nstuck_pending_hours = nan\n",
            "stuck_pending_hours: Input should be a finite",
        ),
        (
            "[batching]\ndelete_finished_jobs = 1\n",
            "[batching] delete_finished_jobs: Input should be",
        ),
        ("[uploads]\nupload_concurrency = true\n", "[uploads] upload_concurrency: Input should be"),
        (
            "[uploads]\nupload_concurrency = 100000\n",
            "[uploads] upload_concurrency: Input should be",
        ),
        (
            "[uploads]\nupload_retry_attempts = 1000\n",
            "[uploads] upload_retry_attempts: Input should",
        ),
        ("[uploads]\ninline_image_max_bytes = true\n", "[uploads] inline_image_max_bytes: Input"),
        ("[network]\napi_retry_attempts = true\n", "[network] api_retry_attempts: Input should be"),
        (
            "[gemini]\ncontext_previous_page = 1\n",
            "[gemini] context_previous_page: Input should be",
        ),
        ("[pricing]\nbatch_discount = true\n", "[pricing] batch_discount: Input should be a valid"),
    ],
)
def test_counts_are_real_integers_within_bounds(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"config {path}: ") and message in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "localhost:8080",
        "ftp://example.com",
        "http://",
        "https:///v1",
        "http://host:port",
        "http://host:99999",
        "http://exa mple.com",
        "not a url",
        "file:///etc/passwd",
    ],
)
def test_base_url_must_be_an_http_url_with_a_host(tmp_path: Path, url: str) -> None:
    path = _write(tmp_path, f'[gemini]\nbase_url = "{url}"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"config {path}: [gemini] base_url: Value error, must be an http(s) URL with a host, "
        f"e.g. 'http://127.0.0.1:8765' (got {url!r})"
    )


@pytest.mark.parametrize(
    "url",
    ["", "http://127.0.0.1:8765", "https://generativelanguage.googleapis.com", "http://[::1]:80/x"],
)
def test_good_base_urls_are_kept(tmp_path: Path, url: str) -> None:
    assert load_config(_write(tmp_path, f'[gemini]\nbase_url = "{url}"\n')).gemini.base_url == url


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        ({"input_root": ""}, "[paths] input_root: Value error, must not be empty"),
        ({"output_root": "  "}, "[paths] output_root: Value error, must not be empty"),
        ({"database": ""}, "[paths] database: Value error, must not be empty"),
        (
            {"input_root": "d", "output_root": "d"},
            "[paths] output_root is the same folder as input_root",
        ),
        ({"input_root": "d", "output_root": "d/../d/"}, "[paths] output_root is the same folder"),
        (
            {"input_root": "d", "output_root": "d/out"},
            "[paths] output_root ({t}/d/out) is inside input_root ({t}/d)",
        ),
        (
            {"input_root": "o/in", "output_root": "o"},
            "[paths] input_root ({t}/o/in) is inside output_root ({t}/o)",
        ),
        (
            {"input_root": "d", "database": "d/log.db"},
            "[paths] database ({t}/d/log.db) is inside input_root ({t}/d)",
        ),
        (
            {"input_root": ".", "output_root": "/elsewhere"},
            "[paths] database ({t}/data/gemini_batches.db) is inside input_root ({t})",
        ),
        (
            {"input_root": "d", "reports_dir": "d/r"},
            "[paths] reports_dir ({t}/d/r) is inside input_root",
        ),
        (
            {"input_root": "link", "output_root": "real/out"},
            "[paths] output_root ({t}/real/out) is inside input_root ({t}/real)",
        ),
    ],
)
def test_paths_that_overlap_are_refused_with_the_reason(
    tmp_path: Path, paths: dict[str, str], message: str
) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")  # a symlinked input root resolves
    text = "[paths]\n" + "".join(f'{k} = "{v}"\n' for k, v in paths.items())
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    t = tmp_path.resolve()
    assert str(info.value).startswith(f"config {path}: ")
    assert message.format(t=t) in str(info.value), str(info.value)
    assert str(info.value).count("\n") == 0


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("media_resolution = 'ultra'", "media_resolution"),
        ("temperature = 3.0", "temperature"),
        ("max_output_tokens = -1", "max_output_tokens"),
        ("max_output_tokens_ceiling = 0", "max_output_tokens_ceiling"),
    ],
)
def test_bad_generation_keys_are_refused_naming_the_key(
    tmp_path: Path, line: str, fragment: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f"[gemini]\n{line}\n")
    with pytest.raises(ConfigError, match=fragment):
        load_config(path)
