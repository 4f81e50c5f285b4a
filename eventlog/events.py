"""Event types: a versioned, tagged union of frozen msgspec structs.

Each event is a fact the system learnt or decided. The envelope (sequence number, UTC time, actor,
schema version, hash) is added by the store; the struct holds only the domain fields.

Rules for changing an event type (STYLE.md 3):

* add a field only with a default: events written before still decode;
* never change a field incompatibly in place: bump ``version`` and register an upcaster that turns
  the old payload into the new shape (:meth:`EventRegistry.upcaster`);
* never rename a class: its name is the ``type`` tag stored in the log.

Defining a subclass of :class:`Event` in this module registers it: :data:`ALL_EVENT_TYPES` and
:data:`REGISTRY` are derived from the definitions, in their order, so there is no list to keep.
An event that no projection folds says so with ``audit_only = True`` (a test holds both ways).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import msgspec

from eventlog.errors import EventDecodeError
from eventlog.states import JobState

#: The event types of this module, appended by ``Event.__init_subclass__`` as each is defined.
_DEFINED: list[type[Event]] = []

#: The project (``[[gemini.projects]]``, one API key) of events written before projects existed,
#: and of a config that names none.
DEFAULT_PROJECT = "default"


class Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", tag=True):
    """Base of every event. ``version`` is the schema version of the payload's shape.

    A subclass defined in this module is registered when its class statement runs (see
    :data:`ALL_EVENT_TYPES`); subclasses defined elsewhere (tests) build their own
    :class:`EventRegistry`.
    """

    version: ClassVar[int] = 1
    #: True for an event kept for audits and reports only: no projection folds it.
    audit_only: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            _DEFINED.append(cls)

    def stream(self) -> str:
        """The stream this event belongs to: a record key, batch id, display name or run id."""
        raise NotImplementedError


# --- uploads -------------------------------------------------------------------------------------


class FileUploaded(Event, frozen=True):
    """An image was uploaded to the File API for a record."""

    record_key: str
    file_name: str
    file_uri: str
    mime_type: str
    size_bytes: int
    attempt: int = 1
    #: The project whose key uploaded it (only that key can reference or delete it).
    project: str = DEFAULT_PROJECT

    def stream(self) -> str:
        return self.record_key


class UploadFailed(Event, frozen=True):
    """One upload attempt failed; another may follow."""

    audit_only: ClassVar[bool] = True
    record_key: str
    attempt: int
    error_type: str
    message: str

    def stream(self) -> str:
        return self.record_key


class UploadAbandoned(Event, frozen=True):
    """Every upload attempt failed; the page is skipped for this cycle. Its ``attempts`` count
    towards the page's upload budget (``upload_budget``)."""

    record_key: str
    attempts: int
    message: str

    def stream(self) -> str:
        return self.record_key


class UploadGivenUp(Event, frozen=True):
    """A page's upload budget (``[uploads] max_upload_attempts``) is spent, or the service
    refused the file (a 4xx): the scanner skips the page until its file changes (size or mtime
    other than ``size_bytes``/``mtime_ns``) or ``reset-failures`` selects it."""

    record_key: str
    path: str
    attempts: int
    reason: str
    size_bytes: int = -1
    mtime_ns: int = -1

    def stream(self) -> str:
        return self.record_key


class UploadGivenUpCleared(Event, frozen=True):
    """A page given up on is tried again: its file changed since (``reason``)."""

    record_key: str
    reason: str = ""

    def stream(self) -> str:
        return self.record_key


class FileDeleted(Event, frozen=True):
    """An uploaded file that no batch will use was deleted from the File API."""

    file_name: str
    reason: str = ""

    def stream(self) -> str:
        return self.file_name


class InputRejected(Event, frozen=True):
    """A file or folder under the input root cannot be a page; it is skipped until fixed."""

    path: str
    reason: str

    def stream(self) -> str:
        return self.path


class InputRejectionCleared(Event, frozen=True):
    """A previously rejected input is gone or now well-formed."""

    path: str

    def stream(self) -> str:
        return self.path


class PagesCounted(Event, frozen=True):
    """The scan found ``pages`` pages (page files and document pages) under one
    ``<input_root>/<State>/<School>`` folder (``path``), a number that changed since it was last
    recorded (0: the folder is gone): the job's total is known without walking the tree."""

    path: str
    state: str
    school: str
    pages: int

    def stream(self) -> str:
        return self.path


class DocumentSeen(Event, frozen=True):
    """A PDF document of the input tree (``<Year>.pdf``), read for the first time or found
    changed: its SHA-256 and pages. ``previous_sha256`` is what it was before a change, and
    ``pages_written`` how many of its pages had an output then (those outputs came from the
    earlier version; they are kept, not extracted again)."""

    path: str
    sha256: str
    pages: int
    previous_sha256: str = ""
    pages_written: int = 0

    def stream(self) -> str:
        return self.path


# --- batches -------------------------------------------------------------------------------------


class BatchSubmissionIntended(Event, frozen=True):
    """About to call ``batches.create`` under a unique display name; the records are reserved."""

    display_name: str
    model: str
    record_keys: list[str]
    input_file: str = ""
    #: The uploaded image files the requests reference (deleted once the batch is done).
    files: list[str] = []
    #: How its images travel: ``inline``, ``file_api`` or ``mixed`` (logs before it: file_api).
    transport: str = "file_api"
    #: Tokens estimated for the batch before it went (input + output; what token admission
    #: counts), and of them the input (0: written before estimates, or not estimated).
    estimated_tokens: int = 0
    estimated_input_tokens: int = 0
    #: The project (API key) it is created with, polled, downloaded and deleted with.
    project: str = DEFAULT_PROJECT
    #: The dataset partition its records belong to, with ``[workers] mode = "shared"`` (its
    #: batch is polled and collected by that partition's lease holder); '': a single worker.
    partition: str = ""

    def stream(self) -> str:
        return self.display_name


class BatchSubmitted(Event, frozen=True):
    """The service accepted the batch; it is active until it completes, fails or is cleared."""

    batch_id: str
    display_name: str
    model: str
    record_keys: list[str]
    input_file: str = ""
    state: str = JobState.PENDING
    #: How its images travel: ``inline``, ``file_api`` or ``mixed`` (logs before it: file_api).
    transport: str = "file_api"
    #: Its intent's ``estimated_tokens``, carried into ``active_batches``.
    estimated_tokens: int = 0
    #: Its intent's ``project``: the only key that can see the job.
    project: str = DEFAULT_PROJECT

    def stream(self) -> str:
        return self.batch_id


class BatchSubmissionAbandoned(Event, frozen=True):
    """An intent that will never become a batch (refused by the service); its records are freed."""

    display_name: str
    error_type: str
    message: str

    def stream(self) -> str:
        return self.display_name


class BatchSubmissionDeferred(Event, frozen=True):
    """A create known not to have made a job (429 RESOURCE_EXHAUSTED, or a request file never
    ACTIVE): the intent is closed, its records are free again, no failure is counted. The
    images it referenced stay reusable while young; its display name is looked up once before
    its pages go out again (:class:`DeferredSubmissionChecked`).

    ``reason``: ``quota`` (the service's quota; the admission backs off) or ``not_active``.
    ``retry_after``: no create before this time (a stored timestamp; '' for none).
    ``halvings``: the admission's back-off after this deferral (batch size / 2**halvings).
    """

    display_name: str
    reason: str
    message: str
    model: str = ""
    input_file: str = ""
    record_keys: list[str] = []
    retry_after: str = ""
    halvings: int = 0
    #: The project whose quota said no (its back-off only).
    project: str = DEFAULT_PROJECT

    def stream(self) -> str:
        return self.display_name


class DeferredSubmissionChecked(Event, frozen=True):
    """A deferred submission's display name was looked up on the service and no job was found
    (a job found is adopted with ``BatchSubmitted`` instead)."""

    display_name: str

    def stream(self) -> str:
        return self.display_name


class BatchStateObserved(Event, frozen=True):
    """A poll saw the batch in a (new) non-terminal state."""

    batch_id: str
    state: str

    def stream(self) -> str:
        return self.batch_id


class BatchProgressObserved(Event, frozen=True):
    """A poll saw the service's request counts of the batch (``batchStats``) change."""

    batch_id: str
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    pending: int = 0

    def stream(self) -> str:
        return self.batch_id


class BatchSucceeded(Event, frozen=True):
    """The batch reached JOB_STATE_SUCCEEDED (or PARTIALLY_SUCCEEDED, in ``state``); its results
    are about to be processed."""

    batch_id: str
    result_file: str = ""
    state: str = JobState.SUCCEEDED

    def stream(self) -> str:
        return self.batch_id


class BatchCompleted(Event, frozen=True):
    """Every record of a succeeded batch has a result event; the batch is no longer active."""

    batch_id: str
    validated: int
    failed: int
    #: When the batch was submitted (for turnaround figures); "" in events before it existed.
    submitted_at: str = ""

    def stream(self) -> str:
        return self.batch_id


class BatchJobDeleted(Event, frozen=True):
    """A completed batch's job was deleted from the service (its results are durable), so the
    history a display-name lookup reads stays short. ``outcome``: ``deleted``, ``already_gone``
    (404) or ``refused`` (a 4xx; the job is left on the service)."""

    batch_id: str
    outcome: str = "deleted"
    message: str = ""

    def stream(self) -> str:
        return self.batch_id


class BatchFailed(Event, frozen=True):
    """The batch ended FAILED, CANCELLED or EXPIRED; its records are freed, no failure counted."""

    batch_id: str
    state: str
    message: str = ""
    submitted_at: str = ""

    def stream(self) -> str:
        return self.batch_id


class BatchCleared(Event, frozen=True):
    """An operator cleared a batch (or an open submission intent); its records are freed."""

    batch_id: str
    reason: str = ""

    def stream(self) -> str:
        return self.batch_id


class BatchResultsUnavailable(Event, frozen=True):
    """A succeeded batch's result file cannot be downloaded (gone: 403/404/410, expired after
    48 h, or failing transiently past ``[results] download_give_up_hours``): the batch ends and
    its records still in flight are freed for resubmission, no failure counted."""

    batch_id: str
    message: str = ""
    #: The download's HTTP status (0: none, e.g. a timeout or no result file named).
    code: int = 0
    submitted_at: str = ""

    def stream(self) -> str:
        return self.batch_id


# --- records -------------------------------------------------------------------------------------


class RecordValidated(Event, frozen=True):
    """The record's result validated and its output JSON was written."""

    record_key: str
    batch_id: str
    output_path: str
    output_sha256: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    #: The model that produced the result (prices are per model); "" in events before it existed.
    model: str = ""

    def stream(self) -> str:
        return self.record_key


class RecordFailed(Event, frozen=True):
    """The record's result was unusable; one failure is counted towards ``max_retries``."""

    record_key: str
    batch_id: str
    error_type: str
    message: str
    excerpt: str = ""
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    model: str = ""

    def stream(self) -> str:
        return self.record_key


class RecordDeadLettered(Event, frozen=True):
    """The record reached ``max_retries`` failures; the scanner skips it until a reset."""

    record_key: str
    failures: int
    max_retries: int

    def stream(self) -> str:
        return self.record_key


class ResultDiscarded(Event, frozen=True):
    """A result that arrived after the record had already been written from another batch: the
    first result wins, this one is not written (its tokens were still billed)."""

    record_key: str
    batch_id: str
    reason: str
    prompt_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    model: str = ""

    def stream(self) -> str:
        return self.record_key


class ResultLinesIgnored(Event, frozen=True):
    """Lines of a result file that named no pending record of the batch (duplicates, keys never
    in it) or were unreadable; the first line per record wins."""

    audit_only: ClassVar[bool] = True
    batch_id: str
    duplicates: list[str] = []
    unknown_keys: list[str] = []
    unreadable: int = 0

    def stream(self) -> str:
        return self.batch_id


class LateResultsAdopted(Event, frozen=True):
    """A batch given up on (failed, cleared, stuck) turned out to have results: its valid results
    for records not yet written were adopted; the batch is no longer watched."""

    batch_id: str
    adopted: int
    ignored: int
    #: The result file read (deleted from the File API once nothing needs it).
    result_file: str = ""
    #: The batch's project (whose key deletes the result file).
    project: str = DEFAULT_PROJECT

    def stream(self) -> str:
        return self.batch_id


class AbandonedBatchClosed(Event, frozen=True):
    """A batch given up on will bring no results (it ended without any, or its window passed)."""

    batch_id: str
    state: str
    reason: str = ""

    def stream(self) -> str:
        return self.batch_id


# --- operator actions and runs -------------------------------------------------------------------


class ResetFilter(msgspec.Struct, frozen=True, kw_only=True):
    """The filter an operator gave to ``reset-failures``."""

    all: bool = False
    states: list[str] = []
    schools: list[str] = []
    year_start: int | None = None
    year_end: int | None = None

    def describe(self) -> str:
        """A one-line human description, e.g. ``--states California --year-start 2020``."""
        if self.all:
            return "--all"
        parts: list[str] = []
        if self.states:
            parts.append("--states " + " ".join(self.states))
        if self.schools:
            parts.append("--schools " + " ".join(self.schools))
        if self.year_start is not None:
            parts.append(f"--year-start {self.year_start}")
        if self.year_end is not None:
            parts.append(f"--year-end {self.year_end}")
        return " ".join(parts)


class FailuresReset(Event, frozen=True):
    """An operator reset failure counts; the records become fresh candidates."""

    filter: ResetFilter
    record_keys: list[str]

    def stream(self) -> str:
        return "operator"


class RunStarted(Event, frozen=True):
    """A worker run began."""

    run_id: str
    command: str = "run"

    def stream(self) -> str:
        return self.run_id


class RunFinished(Event, frozen=True):
    """A worker run ended (``outcome`` is ``ok``, ``error`` or ``interrupted``)."""

    run_id: str
    outcome: str
    message: str = ""

    def stream(self) -> str:
        return self.run_id


# --- partition leases (several workers on one log) ---------------------------------------------


class LeaseAcquired(Event, frozen=True):
    """A worker took a partition nobody held (or one released); it holds it until ``expires_at``."""

    partition: str
    worker: str
    expires_at: str

    def stream(self) -> str:
        return f"lease:{self.partition}"


class LeaseTakenOver(Event, frozen=True):
    """A worker took a partition whose holder's lease had lapsed (killed, cut off)."""

    partition: str
    from_worker: str
    to_worker: str
    expires_at: str

    def stream(self) -> str:
        return f"lease:{self.partition}"


class LeaseRenewed(Event, frozen=True):
    """A worker is alive: its leases on ``partitions`` (and its own row) run to ``expires_at``."""

    worker: str
    partitions: list[str]
    expires_at: str
    run_id: str = ""

    def stream(self) -> str:
        return f"worker:{self.worker}"


class LeaseReleased(Event, frozen=True):
    """A worker let a partition go (its run ended, or it held more than its share)."""

    partition: str
    worker: str

    def stream(self) -> str:
        return f"lease:{self.partition}"


#: Every event type of the log, in definition order: derived from the class statements above.
ALL_EVENT_TYPES: tuple[type[Event], ...] = tuple(_DEFINED)

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """The event types a store can read, and the upcasters from older payload versions.

    Decoding an event stored at the type's current version is one msgspec call; an older payload is
    decoded to a dict, passed through the upcasters ``v -> v+1`` in turn, then converted.
    """

    def __init__(self, types: Iterable[type[Event]]) -> None:
        self.types: dict[str, type[Event]] = {}
        #: class -> (type tag, schema version), for the append hot path.
        self.type_info: dict[type[Event], tuple[str, int]] = {}
        for cls in types:
            tag = str(cls.__struct_config__.tag)
            self.types[tag] = cls
            self.type_info[cls] = (tag, cls.version)
        self._current = {tag: version for tag, version in self.type_info.values()}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        union = tuple(self.types.values())
        self._decoder = msgspec.json.Decoder(union[0] if len(union) == 1 else _union(union))
        self._encoder = msgspec.json.Encoder()
        self.encode = self._encoder.encode  # type: ignore[method-assign,assignment]

    def upcaster(self, type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register ``fn(payload) -> payload`` taking ``type_name`` from ``from_version`` on."""

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = fn
            return fn

        return register

    def current_version(self, type_name: str) -> int:
        return self.types[type_name].version

    def encode(self, event: Event) -> bytes:
        return self._encoder.encode(event)

    def decode(self, type_name: str, version: int, payload: bytes | str, seq: int = 0) -> Event:
        """Decode one stored payload, upcasting it when it was written by an older version.

        Raises :class:`EventDecodeError` naming ``seq`` when the type is unknown (a newer writer) or
        the payload does not fit.
        """
        if self._current.get(type_name) == version:  # the common case: one msgspec call
            try:
                return self._decoder.decode(payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                raise EventDecodeError(f"event {seq}: cannot decode {type_name}: {e}") from e
        cls = self.types.get(type_name)
        if cls is None:
            raise EventDecodeError(
                f"event {seq}: unknown type {type_name!r} "
                "(written by a newer version of this tool?)"
            )
        try:
            if version == cls.version:
                return self._decoder.decode(payload)
            if version > cls.version:
                raise EventDecodeError(
                    f"event {seq}: {type_name} version {version} is newer than this tool's "
                    f"{cls.version}"
                )
            data = msgspec.json.decode(payload)
            for v in range(version, cls.version):
                step = self._upcasters.get((type_name, v))
                if step is not None:
                    data = step(data)
            data["type"] = type_name
            return msgspec.convert(data, cls)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise EventDecodeError(f"event {seq}: cannot decode {type_name}: {e}") from e


def _union(types: tuple[type[Event], ...]) -> Any:
    """Build ``A | B | ...`` at run time for msgspec's tagged-union decoder."""
    result: Any = types[0]
    for t in types[1:]:
        result = result | t
    return result


REGISTRY = EventRegistry(ALL_EVENT_TYPES)


def record_keys_of(event: Event) -> list[str]:
    """Every record key an event names directly (its own key or its ``record_keys`` list)."""
    keys = getattr(event, "record_keys", None)
    if keys is not None:
        return list(keys)
    key = getattr(event, "record_key", None)
    return [key] if key is not None else []
