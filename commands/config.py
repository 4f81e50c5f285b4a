"""The TOML config, validated by pydantic; every error names the file and the key.

Resolution: ``--config F``, else ``$GEMINI_BATCHES_CONFIG``, else ``./gemini_batches.toml`` if it
exists, else the defaults. Relative paths in ``[paths]`` are relative to the config file's folder
(to the working directory when there is no file).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
)

from commands.errors import ConfigError
from commands.models import TABLE as MODEL_TABLE
from eventlog.events import DEFAULT_PROJECT

DEFAULT_CONFIG = Path("gemini_batches.toml")
CONFIG_ENV = "GEMINI_BATCHES_CONFIG"

DEFAULT_PROMPT = (
    "You are given one scanned page of a school document. Extract its content as JSON that "
    "matches the response schema exactly. Use null for anything not present on the page."
)


#: Upper bounds of the counts (a typo like ``batch_size = 1000000000`` is refused, not tried).
#: Pages per batch: a request file holds at most this many lines.
MAX_BATCH_SIZE = 100_000
#: Jobs in flight at once (the service allows about 100 a project).
MAX_ACTIVE_BATCHES = 100
#: Tries of anything (an API call, an upload, a page before it is dead-lettered).
MAX_ATTEMPTS = 100
#: Images uploaded at once.
MAX_CONCURRENCY = 256
#: Estimated tokens in flight (10^11, well above any tier's enqueued-token quota).
MAX_ENQUEUED_TOKENS = 10**11
#: Dataset partitions of ``[workers] partition_by = "school_hash"``.
MAX_PARTITIONS = 4096
#: A worker's lease (a day: longer only delays the takeover of a dead worker's partitions).
MAX_LEASE_SECONDS = 86_400


class _Section(BaseModel):
    """Counts and sizes are real integers (``StrictInt``: TOML ``true`` is not 1, ``2.0`` is not
    2), durations real numbers (``StrictFloat``: an integer is fine, a boolean is not), flags real
    booleans; ``inf`` and ``nan`` are refused everywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PathsConfig(_Section):
    input_root: Path = Path("dataset/input_images")
    output_root: Path = Path("dataset/output_results")
    database: Path = Path("data/gemini_batches.db")
    reports_dir: Path = Path("data/reports")

    @field_validator("*", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (it would mean the config file's folder)")
        return value


class ProjectConfig(_Section):
    """One Google Cloud project (``[[gemini.projects]]``): its own API key and its own quota.
    Limits left out are ``[batching]``'s."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: The environment variable holding the project's API key (the key is never stored).
    api_key_env: str = Field(min_length=1)
    max_active_batches: StrictInt | None = Field(None, ge=1, le=MAX_ACTIVE_BATCHES)
    max_enqueued_tokens: StrictInt | None = Field(None, ge=0, le=MAX_ENQUEUED_TOKENS)


#: The largest output limit a config may name (Gemini 2.5 and 3 models answer up to 65,536).
MAX_OUTPUT_TOKENS = 1_048_576


class GeminiConfig(_Section):
    model: str = "gemini-2.5-flash"
    api_key_env: str = "GEMINI_API_KEY"
    base_url: str = ""
    prompt: str = DEFAULT_PROMPT
    output_schema: str = "commands.schema:PageExtraction"
    context_previous_page: StrictBool = False
    #: ``maxOutputTokens`` sent with every request (0: not sent, the model's own limit). A page
    #: whose answer is cut at it (``finish_max_tokens``) is retried with it doubled for each
    #: cut so far, up to ``max_output_tokens_ceiling``.
    max_output_tokens: StrictInt = Field(8192, ge=0, le=MAX_OUTPUT_TOKENS)
    max_output_tokens_ceiling: StrictInt = Field(65536, ge=1, le=MAX_OUTPUT_TOKENS)
    #: ``temperature`` sent with every request (unset: the model's default).
    temperature: StrictFloat | None = Field(None, ge=0.0, le=2.0)
    #: ``mediaResolution`` sent with every request: how many tokens an image costs (and how
    #: much of it the model sees). ``unspecified``: not sent, the model's default.
    media_resolution: Literal["unspecified", "low", "medium", "high"] = "unspecified"
    #: Several projects, each with its key and quota (empty: one project, ``default``, with
    #: ``api_key_env`` and ``[batching]``'s limits).
    projects: list[ProjectConfig] = []

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not _is_http_url(value):
            raise ValueError("must be an http(s) URL with a host, e.g. 'http://127.0.0.1:8765'")
        return value

    @field_validator("projects")
    @classmethod
    def _unique_names(cls, value: list[ProjectConfig]) -> list[ProjectConfig]:
        names = [p.name for p in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"project names must be unique (twice: {', '.join(twice)})")
        return value

    @field_validator("output_schema")
    @classmethod
    def _module_colon_class(cls, value: str) -> str:
        if value.count(":") != 1 or not all(value.split(":")):
            raise ValueError("must be 'module:Class', e.g. 'myschemas:Transcript'")
        return value


class BatchingConfig(_Section):
    batch_size: StrictInt = Field(100, ge=1, le=MAX_BATCH_SIZE)
    max_active_batches: StrictInt = Field(4, ge=1, le=MAX_ACTIVE_BATCHES)
    max_retries: StrictInt = Field(3, ge=1, le=MAX_ATTEMPTS)
    poll_interval_seconds: StrictFloat = Field(60.0, gt=0)
    #: Cancel (and resubmit the pages of) a batch still waiting to start after this long; 0: never
    #: (the service itself expires a batch after 48 h).
    stuck_pending_hours: StrictFloat = Field(36.0, ge=0)
    #: How long a batch seen FAILED/CANCELLED/EXPIRED is still checked for results.
    late_results_grace_minutes: StrictFloat = Field(60.0, ge=0)
    #: After a create answered 429 RESOURCE_EXHAUSTED no create is tried for this long, doubled
    #: for each further 429 in a row, at most ``quota_backoff_max_seconds``.
    quota_backoff_seconds: StrictFloat = Field(60.0, ge=0)
    quota_backoff_max_seconds: StrictFloat = Field(1800.0, ge=0)
    #: Token-aware admission: batches go while the tokens estimated for the active batches, the
    #: open intents and the batch about to go stay at or under this (0: off, only counts apply).
    max_enqueued_tokens: StrictInt = Field(0, ge=0, le=MAX_ENQUEUED_TOKENS)
    #: Delete a batch's job from the service once its results are durable (keeps the history a
    #: display-name lookup reads short); its request and result files are deleted either way.
    delete_finished_jobs: StrictBool = True


#: The File API's limit per file (a request file included).
FILE_API_MAX_BYTES = 2 * 1024**3


class UploadsConfig(_Section):
    upload_retry_attempts: StrictInt = Field(3, ge=1, le=MAX_ATTEMPTS)
    upload_retry_backoff_seconds: StrictFloat = Field(1.0, ge=0)
    upload_concurrency: StrictInt = Field(8, ge=1, le=MAX_CONCURRENCY)
    #: Failed upload attempts of one page, over all cycles since its last success, before it is
    #: given up on (``UploadGivenUp``) until its file changes or ``reset-failures``.
    max_upload_attempts: StrictInt = Field(12, ge=1, le=1000)
    #: How long a request file may stay PROCESSING before its batch is deferred, and how often
    #: ``files.get`` asks meanwhile.
    request_file_active_timeout_seconds: StrictFloat = Field(300.0, ge=0)
    request_file_active_poll_seconds: StrictFloat = Field(2.0, gt=0)
    #: How a page image reaches the model: ``inline`` (base64 in its request line), ``file_api``
    #: (uploaded, referenced by URI) or ``auto`` (inline up to ``inline_image_max_bytes``).
    image_transport: Literal["auto", "inline", "file_api"] = "auto"
    #: The largest image sent inline: 4 MiB is 5.6 MB of base64 in its line, well under the
    #: service's 20 MB per request (the cap, 14 MiB, is 19.6 MB of base64).
    inline_image_max_bytes: StrictInt = Field(4 * 1024**2, ge=1, le=14 * 1024**2)
    #: A request file is cut here (and at ``batch_size`` lines); the File API's limit is 2 GB.
    max_request_file_bytes: StrictInt = Field(1024**3, ge=1, le=FILE_API_MAX_BYTES)


class NetworkConfig(_Section):
    api_retry_attempts: StrictInt = Field(3, ge=1, le=MAX_ATTEMPTS)
    api_retry_backoff_seconds: StrictFloat = Field(1.0, ge=0)
    #: Per HTTP request; a slower answer is a timeout (a transient failure, retried).
    request_timeout_seconds: StrictFloat = Field(120.0, gt=0)
    #: Service calls in flight at once (polls, downloads, request-file uploads, creates,
    #: deletes, and image uploads, ``upload_concurrency`` of them at most): different batches'
    #: calls run side by side on this many threads.
    max_calls_in_flight: StrictInt = Field(16, ge=1, le=MAX_CONCURRENCY)


class ResultsConfig(_Section):
    """Caps on what the service sends back (see ``commands.rules.results``)."""

    #: A longer line of a result file fails its record (``result_line_too_large``), unread.
    max_result_line_bytes: StrictInt = Field(8 * 1024**2, ge=1024, le=1024**3)
    #: A longer output JSON fails its record (``output_too_large``) instead of being written.
    max_output_bytes: StrictInt = Field(8 * 1024**2, ge=1024, le=1024**3)
    #: A result file that fails to download with a transient error (5xx, timeout) this long
    #: after its job succeeded is given up on like a gone one: its records go back to pending.
    download_give_up_hours: StrictFloat = Field(6.0, gt=0, le=48)


class DatabaseConfig(_Section):
    #: How long a writer waits for another process's write lock before giving up with an error.
    busy_timeout_seconds: StrictFloat = Field(10.0, ge=0)
    #: A PostgreSQL log (``postgresql://user@host/db``) instead of the SQLite file
    #: ``[paths] database``; empty: the SQLite file. A password is better in ``~/.pgpass``.
    url: str = ""

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (or empty for the SQLite file)")
        return value

    @property
    def busy_timeout_ms(self) -> int:
        return int(self.busy_timeout_seconds * 1000)


class WorkersConfig(_Section):
    """Several workers on one log (see the README's "Running several workers")."""

    #: ``single``: one run per database (the run lock); ``shared``: workers hold partition leases.
    mode: Literal["single", "shared"] = "single"
    #: ``state``: a partition per State folder; ``school_hash``: crc32(State/School) mod partitions.
    partition_by: Literal["state", "school_hash"] = "state"
    partitions: StrictInt = Field(8, ge=1, le=MAX_PARTITIONS)
    #: A lease lapses this long after its last renewal (renewed at least every third of it).
    lease_seconds: StrictFloat = Field(60.0, ge=1, le=MAX_LEASE_SECONDS)


class ModelPrice(_Section):
    """List prices in ``[pricing] currency`` per million tokens (before the batch discount)."""

    input_per_million: StrictFloat = Field(ge=0)
    output_per_million: StrictFloat = Field(ge=0)


#: The built-in list prices: the model table's (``commands/models.toml``, with their sources:
#: USD per million tokens, standard tier, prompts up to 200k tokens), one entry per name prefix
#: of each family. Override in [pricing.models].
def _table_prices() -> dict[str, ModelPrice]:
    prices = {}
    for row in MODEL_TABLE.families:
        if row.input_per_million is None or row.output_per_million is None:
            continue
        price = ModelPrice(
            input_per_million=row.input_per_million, output_per_million=row.output_per_million
        )
        prices.update(dict.fromkeys(row.prefixes, price))
    return prices


DEFAULT_PRICES: dict[str, ModelPrice] = _table_prices()


class PricingConfig(_Section):
    #: The Batch API's discount on the list price (0.5: half price).
    batch_discount: StrictFloat = Field(0.5, ge=0, lt=1)
    currency: str = "USD"
    #: Per-model prices; entries given here replace the built-in ones of the same name.
    models: dict[str, ModelPrice] = DEFAULT_PRICES

    @field_validator("models", mode="after")
    @classmethod
    def _over_defaults(cls, value: dict[str, ModelPrice]) -> dict[str, ModelPrice]:
        return {**DEFAULT_PRICES, **value}

    def price(self, model: str) -> ModelPrice | None:
        """``model``'s price: its own entry, else the longest entry naming it as a prefix
        followed by ``-`` (``gemini-3-flash`` prices ``gemini-3-flash-preview``), as the model
        table matches families; None when nothing matches."""
        name = model.removeprefix("models/")
        if name in self.models:
            return self.models[name]
        prefixes = [p for p in self.models if name.startswith(p + "-")]
        return self.models[max(prefixes, key=len)] if prefixes else None


class Config(_Section):
    paths: PathsConfig = PathsConfig()
    gemini: GeminiConfig = GeminiConfig()
    batching: BatchingConfig = BatchingConfig()
    uploads: UploadsConfig = UploadsConfig()
    network: NetworkConfig = NetworkConfig()
    pricing: PricingConfig = PricingConfig()
    database: DatabaseConfig = DatabaseConfig()
    results: ResultsConfig = ResultsConfig()
    workers: WorkersConfig = WorkersConfig()
    #: Where the config was read from (None: defaults only). Not a TOML key.
    source: Path | None = Field(None, exclude=True)

    @property
    def log_location(self) -> Path | str:
        """Where the event log is: ``[database] url`` when set, else the SQLite file."""
        return self.database.url or self.paths.database

    def projects(self) -> list[ProjectConfig]:
        """The projects to submit to, each with its limits filled in from ``[batching]``; one
        project named ``default`` (``[gemini] api_key_env``) when the config names none."""
        b = self.batching
        given = self.gemini.projects or [
            ProjectConfig(name=DEFAULT_PROJECT, api_key_env=self.gemini.api_key_env)
        ]
        return [
            p.model_copy(
                update={
                    "max_active_batches": p.max_active_batches or b.max_active_batches,
                    "max_enqueued_tokens": b.max_enqueued_tokens
                    if p.max_enqueued_tokens is None
                    else p.max_enqueued_tokens,
                }
            )
            for p in given
        ]

    def resolved(self, base: Path) -> Config:
        """A copy whose relative ``[paths]`` are made absolute against ``base``."""
        paths = {
            name: (value if value.is_absolute() else base / value)
            for name, value in self.paths.model_dump().items()
        }
        return self.model_copy(update={"paths": PathsConfig(**paths)})


def find_config(explicit: Path | None) -> Path | None:
    """The config file to read, or None for defaults. An explicit path must exist."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file not found: {explicit}")
        return explicit
    env = os.environ.get(CONFIG_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ${CONFIG_ENV})")
        return path
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def describe_config(explicit: Path | None) -> tuple[Path | None, str]:
    """The config :func:`find_config` reads and how it was chosen, for messages: ``(path, "given
    with --config")``, ``(path, "from $GEMINI_BATCHES_CONFIG")``, ``(path, "found in the current
    folder")``, or ``(None, why there is none)``."""
    if explicit is not None:
        return explicit, "given with --config"
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env), f"from ${CONFIG_ENV}"
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG, "found in the current folder"
    return None, f"no config was given (--config, ${CONFIG_ENV}) nor found (./{DEFAULT_CONFIG})"


def load_config(explicit: Path | None = None) -> Config:
    """Read and validate the config; raise :class:`ConfigError` naming the file and key."""
    path = find_config(explicit)
    if path is None:
        return Config().resolved(Path.cwd())
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config {path}: not valid TOML: {e}") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"config {path}: cannot read: {e}") from e
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path) -> Config:
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"config {path}: {_describe(e)}") from None
    config = config.model_copy(update={"source": path}).resolved(path.parent.resolve())
    problem = paths_problem(config.paths)
    if problem is not None:
        raise ConfigError(f"config {path}: {problem}")
    return config


def paths_problem(paths: PathsConfig) -> str | None:
    """Why these (absolute) paths cannot work together, or None: the outputs, reports or the
    database inside the input tree (the scanner would walk them as pages), the output root
    equal to or inside the input root, or the input root inside the output root. Symlinks are
    resolved first."""
    inp, out = paths.input_root.resolve(), paths.output_root.resolve()
    if out == inp:
        return f"[paths] output_root is the same folder as input_root ({inp})"
    if out.is_relative_to(inp):
        return (
            f"[paths] output_root ({out}) is inside input_root ({inp}): "
            "the scanner would walk the outputs as pages"
        )
    if inp.is_relative_to(out):
        return (
            f"[paths] input_root ({inp}) is inside output_root ({out}): "
            "outputs would be written into the input tree"
        )
    for key in ("database", "reports_dir"):
        where = getattr(paths, key).resolve()
        if where.is_relative_to(inp):
            return (
                f"[paths] {key} ({where}) is inside input_root ({inp}): "
                "the scanner would walk it as pages"
            )
    return None


def _is_http_url(value: str) -> bool:
    """An ``http``/``https`` URL with a host (and a valid port, if any), no spaces."""
    if any(c.isspace() for c in value):
        return False
    try:
        url = urlsplit(value)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.hostname)


def _describe(error: ValidationError) -> str:
    """The first problem as ``[section] key: message``."""
    first = error.errors()[0]
    loc = [str(p) for p in first["loc"]]
    where = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else (loc[0] if loc else "?")
    if first["type"] == "extra_forbidden":
        if len(loc) == 1:
            return f"unknown section or key '{loc[0]}' (sections: {', '.join(_sections())})"
        nested = loc[:2] == ["gemini", "projects"]
        known = ", ".join(ProjectConfig.model_fields if nested else _keys(loc[0]))
        return f"{where}: unknown key (known keys: {known})"
    value = first.get("input")
    shown = f" (got {value!r})" if not isinstance(value, dict) else ""
    more = len(error.errors()) - 1
    tail = f"; and {more} more problem{'s' if more > 1 else ''}" if more else ""
    return f"{where}: {first['msg']}{shown}{tail}"


def _sections() -> list[str]:
    return [name for name in Config.model_fields if name != "source"]


def _keys(section: str) -> list[str]:
    field = Config.model_fields.get(section)
    model = field.annotation if field is not None else None
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []
