"""One request file becomes one batch: the I/O around :mod:`commands.rules.submit`.

Upload the request file (the upload policy of every File API upload), wait until the service
says it is ACTIVE, append the intent (a unique display name; the project's room checked again in
the same transaction), create the batch, append the submission. Every step is appended the
moment it happens, so a crash at any point loses nothing and bills nothing twice:

* **Exactly-once.** The intent is appended before ``batches.create``; an open intent is resolved
  by looking the name up on the service (:mod:`commands.worker.reconcile`), never by creating
  again. ``create`` itself is attempted once; only a 400 FAILED_PRECONDITION (the file not
  ACTIVE yet: no job was made) is tried again, after waiting for the file.
* A project's creates go through :class:`Creates`: the first of a cycle alone (a quota storm or a
  refusal halts the project before anything else is sent), then a few side by side; a project
  halted meanwhile makes no more creates this cycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence

import msgspec

from commands.errors import GatewayError
from commands.gemini.port import RemoteBatch, RemoteFile
from commands.rules import uploads
from commands.rules.admission import has_room
from commands.rules.cleanup import file_deleted
from commands.rules.submit import (
    CREATE_REFUSED,
    CreateContext,
    CreateOutcome,
    OpenIntent,
    intended,
    judge_create_error,
    submit_goes_on,
    submitted,
)
from commands.rules.transport import batch_transport
from commands.worker.context import Worker
from commands.worker.dataset import file_stamp
from commands.worker.estimator import PageTokens
from commands.worker.request_files import RequestFile
from commands.worker.upload import upload_with_retries
from eventlog import crashpoints
from eventlog.events import BatchSubmissionDeferred, Event
from projections import queries
from projections.queries import ProjectLoad

log = logging.getLogger("commands.cycle")

__all__ = ["CREATES_AT_ONCE", "CREATE_PRECONDITION_ATTEMPTS", "Creates", "create_batch"]

#: Creates of one intent whose request file the service says is not ACTIVE yet (400
#: FAILED_PRECONDITION), each after a wait for the file; then it is deferred.
CREATE_PRECONDITION_ATTEMPTS = 3
#: Creates of one project in flight at once, once its first create of the cycle went through.
CREATES_AT_ONCE = 4


class Creates:
    """Each project's creates this cycle: its first flow's (the first :meth:`enter`-ed) goes
    alone and the others wait for it; then one at a time until one went through, then up to
    :data:`CREATES_AT_ONCE` at once. :attr:`halted` holds the projects that make no more (a
    create of theirs did not go through, or failed with an error that stops the run)."""

    def __init__(self) -> None:
        self.halted: set[str] = set()
        self._first: dict[str, asyncio.Event] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._opened: set[str] = set()

    def enter(self, project: str) -> bool:
        """Note a flow for ``project`` (in the order they start); True for its first."""
        if project in self._first:
            return False
        self._first[project] = asyncio.Event()
        self._slots[project] = asyncio.Semaphore(1)
        return True

    @contextlib.asynccontextmanager
    async def slot(self, project: str, first: bool) -> AsyncIterator[bool]:
        """Hold one of ``project``'s create slots (``first``: its first flow's); yields False
        when the project was halted meanwhile (then nothing may be created). An error inside
        halts the project."""
        done = self._first[project]
        try:
            if not first:
                await done.wait()
            async with self._slots[project]:
                try:
                    yield project not in self.halted
                except BaseException:
                    self.halted.add(project)
                    raise
        finally:
            if first:
                done.set()

    def first_ended(self, project: str) -> None:
        """The project's first flow ended, whether or not it reached its create (an upload that
        failed): the others go on, one at a time until a create goes through."""
        self._first[project].set()

    def went(self, project: str, outcome: CreateOutcome) -> None:
        """Note a create's outcome: one that did not go through halts the project; the first
        that did lets up to :data:`CREATES_AT_ONCE` go at once."""
        if not submit_goes_on(outcome):
            self.halted.add(project)
        elif outcome == "submitted" and project not in self._opened:
            self._opened.add(project)
            for _ in range(CREATES_AT_ONCE - 1):
                self._slots[project].release()


async def create_batch(
    w: Worker,
    request_file: RequestFile,
    project: str,
    estimates: Sequence[PageTokens],
    halvings: int,
    creates: Creates,
    on_intent: Callable[[], None] = lambda: None,
    first: bool = True,
) -> CreateOutcome:
    """Upload ``request_file``, wait until it is ACTIVE, append the intent, create the batch
    (``on_intent`` is called once the intent is in the log; ``first``: the project's first
    create of the cycle, :meth:`Creates.enter`).

    Returns ``submitted``; ``unanswered`` when the service did not answer the create (the
    intent stays open, its records reserved, and the next cycle looks it up); ``refused`` when
    it said no (the intent is abandoned); ``deferred`` when the request file could not be
    uploaded (the upload policy: attempts, backoff) or never became ACTIVE, or a create
    answered 400 FAILED_PRECONDITION after its bounded retries, or the project was halted
    meanwhile; ``quota`` when it answered 429 RESOURCE_EXHAUSTED (closed as deferred: no job was
    made); ``full`` when the project filled up before the intent. In every case but the first
    the pages wait.
    """
    items = request_file.items
    name = w.memory.next_name(w.run_id)
    transport = batch_transport("inline" if r is None else "file_api" for _, r in items)
    intent = OpenIntent(
        name,
        w.config.gemini.model,
        "",
        [page.key for page, _ in items],
        transport=transport,
        estimated_tokens=sum(e.total for e in estimates),
        project=project,
    )
    w.check_lease()
    request = await _upload_request_file(w, request_file, intent)
    if request is None:
        return "deferred"
    crashpoints.reach("after_request_file_upload")
    not_active = await _wait_active(w, request, name, project)
    if not_active is not None:
        log.error(
            "Cannot create %s: %s; its pages wait for the next cycle",
            name,
            not_active,
            extra={"display_name": name},
        )
        _discard(w, request.name, project)
        return "deferred"
    crashpoints.reach("after_request_file_active")
    intent = msgspec.structs.replace(intent, input_file=request.name)
    async with creates.slot(project, first) as going:
        if not going:
            _discard(w, request.name, project)
            return "deferred"
        outcome = await _intend_and_create(w, intent, items, estimates, halvings, on_intent)
        creates.went(project, outcome)
    if outcome == "full":
        _discard(w, request.name, project)
    return outcome


def _discard(w: Worker, name: str, project: str) -> None:
    """Delete, in the background, a request file no intent names (its batch was not made this
    cycle): the clean-up's sweep of the service would find it only later."""
    w.pools.background(_delete_unnamed(w, name, project, w.partition or ""))


async def _delete_unnamed(w: Worker, name: str, project: str, partition: str) -> None:
    with w.acting_for(partition):
        try:
            existed = await w.pools.call(w.port(project).delete_file, name)
        except GatewayError as e:
            log.warning("Cannot delete unused request file %s yet (%s)", name, e)
            return
        w.append([file_deleted(name, existed=existed)])


async def _upload_request_file(
    w: Worker, request_file: RequestFile, intent: OpenIntent
) -> RemoteFile | None:
    """The request file on the File API, or None after its pages were charged the failure."""
    settings, name = w.config.uploads, intent.display_name
    extra = {"display_name": name}
    uploaded = await w.pools.call(
        upload_with_retries,
        w.port(intent.project),
        request_file.path,
        mime_type="jsonl",
        display_name=f"{name}-requests",
        attempts=settings.upload_retry_attempts,
        backoff_seconds=settings.upload_retry_backoff_seconds,
        sleep=w.sleep,
        extra=extra,
    )
    if uploaded.remote is not None:
        return uploaded.remote
    error = uploaded.failures[-1][1] if uploaded.failures else "no attempt"
    log.error(
        "Cannot upload the request file of %s: %s; its pages wait for the next cycle",
        name,
        error,
        extra=extra,
    )
    pages = [(page.key, page.path) for page, _ in request_file.items]
    stamps = {key: tuple(file_stamp(path) or (-1, -1)) for key, path in pages}
    w.append(
        uploads.request_file_failed(
            pages,
            failed=len(uploaded.failures),
            transient=uploaded.transient,
            why=f"request file {name}-requests: {error}",
            budget=queries.failed_uploads_of(w.store, [key for key, _ in pages]),
            stamps={k: (s[0], s[1]) for k, s in stamps.items()},
            max_attempts=settings.max_upload_attempts,
        )
    )
    crashpoints.reach("after_upload_events")
    return None


async def _wait_active(w: Worker, request_file: RemoteFile, name: str, project: str) -> str | None:
    """Ask ``files.get`` until the request file is ACTIVE (bounded by
    ``request_file_active_timeout_seconds``). None when it is; else why not."""
    settings = w.config.uploads
    state = request_file.state
    polls = math.ceil(
        settings.request_file_active_timeout_seconds / settings.request_file_active_poll_seconds
    )
    for poll in range(polls + 1):
        if state == "ACTIVE":
            return None
        if state == "FAILED":
            return f"the service could not process request file {request_file.name} (FAILED)"
        if poll == polls:
            break
        log.info(
            "Request file %s of %s is %s; asking again in %gs",
            request_file.name,
            name,
            state,
            settings.request_file_active_poll_seconds,
            extra={"display_name": name},
        )
        await w.pause(settings.request_file_active_poll_seconds)
        try:
            state = (await w.pools.call(w.port(project).get_file, request_file.name)).state
        except GatewayError as e:
            log.warning("Cannot read request file %s's state: %s", request_file.name, e)
    return (
        f"request file {request_file.name} still {state} after "
        f"{settings.request_file_active_timeout_seconds:g}s"
    )


async def _intend_and_create(
    w: Worker,
    intent: OpenIntent,
    items: Sequence[tuple[object, RemoteFile | None]],
    estimates: Sequence[PageTokens],
    halvings: int,
    on_intent: Callable[[], None],
) -> CreateOutcome:
    """Append the intent (if the project still has room, read in the same transaction), then
    create the batch and append its submission."""
    name, project = intent.display_name, intent.project
    extra = {"display_name": name}
    limits = next(p for p in w.config.projects() if p.name == project)

    def room() -> bool:  # read again inside the intent's own transaction
        load = queries.project_loads(w.store).get(project, ProjectLoad())
        return has_room(
            load.batches,
            load.tokens,
            limits.max_active_batches or 0,
            limits.max_enqueued_tokens or 0,
            intent.estimated_tokens,
        )

    files = [remote.name for _, remote in items if remote is not None]
    event = intended(
        intent,
        files=files,
        estimated_input_tokens=sum(e.input for e in estimates),
        partition=w.partition or "",
    )
    if not w.append([event], admit=room):
        log.info(
            "Not creating %s: project %s filled up meanwhile (another worker's batches); its "
            "%d pages wait for the next cycle",
            name,
            project,
            len(intent.record_keys),
            extra=extra,
        )
        return "full"
    on_intent()
    crashpoints.reach("after_intent")
    w.check_lease()
    outcome = await _create_once_ready(w, intent, halvings)
    if not isinstance(outcome, RemoteBatch):
        return outcome
    job = outcome
    crashpoints.reach("after_create_before_event")
    w.append([submitted(intent, job.name, job.state)])
    crashpoints.reach("after_submitted_event")
    w.memory.absent_in_a_row[project] = 0
    log.info(
        "Batch Submitted: %s (%s, %d records)",
        job.name,
        name,
        len(intent.record_keys),
        extra={"batch_id": job.name, "transport": intent.transport, "project": project, **extra},
    )
    return "submitted"


async def _create_once_ready(
    w: Worker, intent: OpenIntent, halvings: int
) -> RemoteBatch | CreateOutcome:
    """``batches.create`` for the open ``intent``: the job, or how the failure was closed.

    A 400 FAILED_PRECONDITION (the request file not ACTIVE yet: no job was made) waits for
    the file and creates again, at most ``CREATE_PRECONDITION_ATTEMPTS`` times in all.
    """
    name, batching = intent.display_name, w.config.batching
    attempt = 1
    while True:
        try:
            return await w.pools.call(
                w.port(intent.project).create_batch,
                model=intent.model,
                input_file=intent.input_file,
                display_name=name,
            )
        except GatewayError as e:
            error = e
        context = CreateContext(
            intent,
            w.store.clock(),
            halvings=halvings,
            backoff_seconds=batching.quota_backoff_seconds,
            backoff_max_seconds=batching.quota_backoff_max_seconds,
            precondition_attempt=attempt,
            precondition_attempts=CREATE_PRECONDITION_ATTEMPTS,
            max_retries=batching.max_retries,
            failures=queries.failure_counts_of(w.store, intent.record_keys),
        )
        verdict = judge_create_error(name, error, context)
        if verdict.outcome != "precondition":
            break
        log.warning(
            "Create of %s: its request file is not ACTIVE yet (%s); waiting for it, "
            "then creating again (attempt %d/%d)",
            name,
            error,
            attempt + 1,
            CREATE_PRECONDITION_ATTEMPTS,
            extra={"display_name": name},
        )
        pending = RemoteFile(intent.input_file, "", "", 0, state="PROCESSING")
        if await _wait_active(w, pending, name, intent.project) is None:
            attempt += 1
            continue
        context = msgspec.structs.replace(
            context, precondition_attempt=CREATE_PRECONDITION_ATTEMPTS
        )
        verdict = judge_create_error(name, error, context)
        break
    return _close(w, intent, error, verdict.outcome, verdict.events)


def _close(
    w: Worker, intent: OpenIntent, error: GatewayError, outcome: str, events: list[Event]
) -> CreateOutcome:
    """Record a create that failed (``outcome`` its verdict's) and say so."""
    name = intent.display_name
    extra = {"display_name": name}
    if outcome == "unanswered":
        w.memory.unanswered.add(name)
        log.error(
            "Create of %s unanswered (%s): its %d records stay reserved; the next "
            "cycle looks it up by name",
            name,
            error,
            len(intent.record_keys),
            extra=extra,
        )
        return "unanswered"
    w.append(events)
    if outcome == "quota":
        crashpoints.reach("after_deferred_event")
        deferred = events[0]
        assert isinstance(deferred, BatchSubmissionDeferred)
        log.warning(
            "Create of %s: held back by the service's quota (%s); no job was made, its %d "
            "pages wait until %s (batches now 1/%d of batch_size)",
            name,
            error,
            len(intent.record_keys),
            deferred.retry_after,
            2**deferred.halvings,
            extra=extra,
        )
        return "quota"
    if outcome == "deferred":
        crashpoints.reach("after_deferred_event")
        log.error("Create of %s deferred: %s", name, error, extra=extra)
        return "deferred"
    if outcome == "stop":
        key_env = next(
            (p.api_key_env for p in w.config.projects() if p.name == intent.project),
            w.config.gemini.api_key_env,
        )
        raise GatewayError(
            f"the service refused to create {name} ({error}): the API key "
            f"(${key_env}) or [gemini] model "
            f"{intent.model!r} is wrong; no page counted a failure, fix it and run again",
            code=error.code,
            status=error.status,
        )
    log.error(
        "Create of %s refused: %s; each of its %d page(s) counts a failure (%s); a page "
        "refused again goes in a batch of its own",
        name,
        error,
        len(intent.record_keys),
        CREATE_REFUSED,
        extra=extra,
    )
    return "refused"
