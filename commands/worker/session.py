"""``run``: the worker. ``--once`` does one cycle; ``--loop`` repeats it every
``poll_interval_seconds`` until interrupted. Each run is a :func:`session`: the run lock,
``RunStarted`` ... ``RunFinished`` in the log, and a Markdown report at the end. The Prefect flow
(``commands.integrations.prefect_flow``) uses the same session, with each step of the cycle a
task."""

from __future__ import annotations

import contextlib
import logging
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from commands.config import Config
from commands.errors import GatewayError
from commands.gemini.port import GeminiPort
from commands.gemini.sdk import Gateway, api_key_from_env, project_key_from_env
from commands.rules import runs
from commands.rules.scan import ScanDecision
from commands.schema import load_schema
from commands.views import report
from commands.worker.context import Worker
from commands.worker.cycle import Cycle, CycleSummary
from commands.worker.leases import LeaseKeeper, default_worker_id
from commands.worker.pools import Pools
from commands.worker.progress import NoProgress, Progress
from commands.worker.runlock import RunLock, hold_in_database
from commands.worker.runlog import bind_run
from commands.worker.scan import cycle_limit, scan_dataset
from eventlog import interrupts
from eventlog.actors import run_actor
from eventlog.errors import DatabaseBusy, DatabaseError, RunEnded, WalLost
from eventlog.store import EventStore
from eventlog.timestamps import format_ts
from projections import open_store, queries

log = logging.getLogger("commands.run")


class RunResult(msgspec.Struct):
    run_id: str
    outcome: str
    cycles: int
    last: CycleSummary
    report_path: Path | None
    #: The signal that stopped an ``interrupted`` run (``SIGINT``, ``SIGTERM``), else "".
    signal: str = ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl+C is, so the run ends the same way."""

    signal_name = "SIGTERM"


def sigterm_as_interrupt() -> Callable[[], None]:
    """From now on SIGTERM raises :class:`Terminated` (once: a repeated SIGTERM is ignored
    while the run records its end) and SIGINT ``KeyboardInterrupt``, even where the shell that
    started the worker in the background set it to be ignored; either waits for the log's
    statement or write transaction under way to end (:mod:`eventlog.interrupts`), so the
    connection is free to record the run's end. Returns the function that restores the previous
    handlers. Outside the main thread (where no handler can be set) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_term(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        interrupts.interrupt(Terminated())

    def on_int(signum: int, frame: object) -> None:
        interrupts.interrupt(KeyboardInterrupt())

    previous = signal.signal(signal.SIGTERM, on_term), signal.signal(signal.SIGINT, on_int)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])

    return restore


@dataclass
class Session:
    """One worker run in progress; ``report`` is filled in when the session ends."""

    run_id: str
    cycle: Cycle
    store: EventStore
    #: How the run waits between cycles (in shared mode renewing its leases meanwhile).
    wait: Callable[[float], None] = time.sleep
    outcome: str = "ok"
    message: str = ""
    signal: str = ""
    report: report.RunReport | None = None
    report_path: Path | None = None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


@contextlib.contextmanager
def session(
    config: Config,
    *,
    command: str = "run",
    api_key: str | None = None,
    wait_for_lock: float = 0.0,
    sleep: Callable[[float], None] = time.sleep,
    progress: Progress | None = None,
    gateway: GeminiPort | None = None,
    worker_id: str | None = None,
) -> Iterator[Session]:
    """Check the API key and the schema before any work, take the run lock, open the log, ask the
    service whether it takes the key (:func:`check_service`), append ``RunStarted``; on the way
    out append ``RunFinished`` (``ok``, ``interrupted`` on Ctrl+C or SIGTERM, ``error``
    otherwise) and write the report, whatever happened.

    The run talks to Gemini through ``gateway`` when one is given (it stays the caller's to
    close, and no API key is needed), else through the SDK adapter built from the config (with
    ``api_key`` or the one the config names), closed when the session ends. With
    ``[[gemini.projects]]`` it builds one adapter per project, each with the key its
    ``api_key_env`` names (``api_key`` is for the implicit single project only).

    With ``[workers] mode = "shared"`` there is no run lock: the run is worker ``worker_id``
    (default ``host:pid``), holding partition leases (:mod:`commands.worker.leases`) that it
    takes with its ``RunStarted`` and releases when it ends; it marks crashed only the
    unfinished runs of no live worker."""
    keys = _api_keys(config, api_key) if gateway is None else {}
    schema = load_schema(
        config.gemini.output_schema, config.source.parent if config.source else None
    )
    run_id = new_run_id()
    shared = config.workers.mode == "shared"
    me = worker_id or default_worker_id()
    with _run_lock(config, shared, wait_for_lock):
        announce = _announcer(config, me, run_id, sleep) if shared else None
        store, ports, early = _open(config, keys, gateway, wait_for_lock, announce)
        leases = LeaseKeeper(store, config, me, run_id, sleep) if shared else None
        # Built before RunStarted: an error it can raise must not leave a run "still running".
        worker = Worker(
            config,
            store,
            gateway if gateway is not None else next(iter(ports.values())),
            run_id,
            schema,
            sleep,
            progress or NoProgress(),
            ports=ports,
            leases=leases,
            pools=Pools(max(config.network.max_calls_in_flight, config.uploads.upload_concurrency)),
        )
        s = Session(run_id, Cycle(worker), store, leases.sleep if leases else sleep)
        _start(s, command, leases)
        if early is not None:
            s.cycle.scanned_early(early)
        restore_sigterm = sigterm_as_interrupt()  # till the end: RunFinished is not cut off
        silent = False  # nothing more may be appended: the error says what to do
        try:
            yield s
        except KeyboardInterrupt as e:
            _interrupted(s, getattr(e, "signal_name", "SIGINT"))
        except Exception as e:
            s.outcome, s.message = "error", f"{type(e).__name__}: {e}"
            silent = isinstance(e, (WalLost, RunEnded))
            raise
        finally:
            try:
                s.cycle.close()  # what a stage left running is cancelled
                _close_all(ports)  # and the calls still on the wire end with the clients
                if not silent:
                    _finish(s, config, leases)
            finally:
                store.close()
                log.info("Run %s finished (%s); report: %s", run_id, s.outcome, s.report_path)
                bind_run(None)
                restore_sigterm()


def _announcer(
    config: Config, me: str, run_id: str, sleep: Callable[[float], None]
) -> Callable[[EventStore], None]:
    """Shared mode: the worker says it is live as soon as the log is open, while the SDK loads,
    so that workers starting together count each other before any of them takes a share."""
    return lambda opened: LeaseKeeper(opened, config, me, run_id, sleep).announce()


def _run_lock(
    config: Config, shared: bool, wait_for_lock: float
) -> contextlib.AbstractContextManager[object]:
    """The run lock on the database (none in shared mode: the workers hold leases)."""
    if shared:
        return contextlib.nullcontext()
    return RunLock(config.paths.database).acquire(wait_for_lock)


def _api_keys(config: Config, api_key: str | None) -> dict[str, str]:
    """Each project's API key, read from the environment (``api_key`` for the one implicit
    project); a one-line error for one that is not set."""
    if config.gemini.projects:
        return {p.name: project_key_from_env(p) for p in config.gemini.projects}
    return {p.name: api_key or api_key_from_env(config) for p in config.projects()}


def _open(
    config: Config,
    keys: dict[str, str],
    gateway: GeminiPort | None,
    wait_for_lock: float,
    announce: Callable[[EventStore], None] | None,
) -> tuple[EventStore, dict[str, GeminiPort], ScanDecision | None]:
    """The log, opened (on PostgreSQL, with its run lock held unless shared), and one SDK
    adapter per project (none when ``gateway`` is given), each of which the service took: one
    cheap authenticated call (:func:`check_service`). On any error everything opened is closed
    again and nothing was appended (but, in shared mode, ``announce``'s renewal of no partition:
    it lapses by itself).

    The SDK (google-genai takes most of a second to import) is loaded and the service asked on a
    thread; meanwhile, when nothing is in flight (the first cycle's stages before the scan have
    nothing to do), the first cycle's scan is made: the third value, None otherwise."""
    store = open_store(
        config.log_location,
        create=True,
        busy_timeout_ms=config.database.busy_timeout_ms,
        scratch=config.paths.database,
    )
    shared = announce is not None
    try:
        # A worker stopped inside a write transaction holds the others up this long at most
        # (PostgreSQL; SQLite cannot bound it): well inside a lease, so no lease lapses for it.
        store.bound_idle_transactions(idle_transaction_bound(config))
        if announce is not None:
            announce(store)
        else:  # PostgreSQL: runs on other machines too; shared mode has leases
            hold_in_database(store, wait_for_lock)
        early = gateway is None and not shared and _nothing_in_flight(store)
        with ThreadPoolExecutor(1, thread_name_prefix="connect") as connecting:
            ports = connecting.submit(_connect, config, keys, gateway)
            try:
                scan = scan_dataset(store, config, limit=cycle_limit(config)) if early else None
            except BaseException:
                ports.add_done_callback(_close_when_built)
                raise
            return store, ports.result(), scan
    except BaseException:
        store.close()
        raise


def idle_transaction_bound(config: Config) -> float:
    """How long a worker's connection may sit idle inside a transaction (PostgreSQL): a third
    of a lease in shared mode (the others renew every third), else the busy timeout."""
    if config.workers.mode == "shared":
        return config.workers.lease_seconds / 3
    return config.database.busy_timeout_ms / 1000


def _nothing_in_flight(store: EventStore) -> bool:
    """No batch active or watched and no open submission: the first cycle begins with its scan."""
    return queries.count_submissions_in_progress(store) == 0 and not queries.watched_batch_ids(
        store
    )


def _connect(
    config: Config, keys: dict[str, str], gateway: GeminiPort | None
) -> dict[str, GeminiPort]:
    """One SDK adapter per project, each checked (:func:`check_service`); ``gateway`` (a port
    given by the caller) is checked instead. On an error the adapters built are closed."""
    ports: dict[str, GeminiPort] = {}
    try:
        ports = {name: Gateway.from_config(config, api_key=key) for name, key in keys.items()}
        for project, each in ports.items() if gateway is None else [("", gateway)]:
            check_service(each, config, project)
    except BaseException:
        _close_all(ports)
        raise
    return ports


def _close_all(ports: dict[str, GeminiPort]) -> None:
    for port in ports.values():
        port.close()


def _close_when_built(built: Future[dict[str, GeminiPort]]) -> None:
    if built.exception() is None:
        _close_all(built.result())


def _start(s: Session, command: str, leases: LeaseKeeper | None) -> None:
    """Append ``RunStarted`` (after a ``RunFinished(crashed)`` for each run that is dead: any
    unfinished one while the run lock is held; in shared mode, those of no live worker)."""
    store, run_id = s.store, s.run_id
    if leases is not None:
        with store.snapshot():
            now = format_ts(store.clock())
            live = {w.run_id for w in queries.workers(store) if w.expires_at > now}
            dead = [d for d in queries.unfinished_run_ids(store) if d not in live]
        leases.rebalance(runs.started(run_id, command, dead))
        store.fence = lambda: _not_ended(store, run_id, leases)
        log.info("Run %s started as worker %s", run_id, leases.me)
    else:
        dead = queries.unfinished_run_ids(store)
        store.append(runs.started(run_id, command, dead), actor=run_actor(run_id))
    bind_run(run_id)
    log.info("Run %s started", run_id)


def _not_ended(store: EventStore, run_id: str, leases: LeaseKeeper) -> None:
    """A shared-mode worker's fence, inside each write transaction: its run has not been
    recorded as ended by another worker (which does so once this one's renewal lapsed: it was
    paused, or cut off from the log, past its lease). Else :class:`RunEnded`, and the run stops
    without appending anything more, its end included: it is over in the log already."""
    if queries.run_has_ended(store, run_id):
        raise RunEnded(
            f"run {run_id} (worker {leases.me}) was recorded as ended by another worker while "
            f"this one was paused or cut off from the log past its lease "
            f"({leases.workers.lease_seconds:g} s); it stopped and recorded nothing more: "
            "start the worker again (a new run)"
        )


def _interrupted(s: Session, signal_name: str) -> None:
    s.signal, s.outcome = signal_name, "interrupted"
    s.message = (
        "stopped by the operator (Ctrl+C)"
        if signal_name == "SIGINT"
        else f"stopped by {signal_name} (kill, systemd or a container stop)"
    )
    log.warning(
        "Run %s interrupted (%s): everything finished so far is in the log",
        s.run_id,
        signal_name,
    )


def _finish(s: Session, config: Config, leases: LeaseKeeper | None) -> None:
    """Append ``RunFinished`` (in shared mode with the release of the leases) and write the
    report. A log that fails now (disk full, locked) leaves the run's end unrecorded, said at
    ERROR: the next run starts cleanly anyway, and the original error is what propagates."""
    try:
        end = runs.finished(s.run_id, s.outcome, s.message)
        if leases is not None:
            leases.release_all(after=[end])
        else:
            s.store.append([end], actor=run_actor(s.run_id))
        s.report = report.build(s.store, s.run_id, config)
        s.report_path = _write_report(config, s.report)
    except DatabaseError as e:
        log.error("Cannot record the end of run %s: %s", s.run_id, e)


def check_service(port: GeminiPort, config: Config, project: str = "") -> None:
    """One cheap authenticated call before any work; a refused key, an unreachable service or a
    URL that does not answer as the Gemini API raises :class:`GatewayError` with one line that
    says which (nothing is appended, no page is touched). A busy service (429, 5xx after the
    retries) only logs a warning: the cycle copes with that as it does mid-run. ``project``
    names the ``[[gemini.projects]]`` entry whose key ``port`` holds ("": the one project)."""
    key_env = next(
        (p.api_key_env for p in config.gemini.projects if p.name == project),
        config.gemini.api_key_env,
    )
    try:
        port.check_access()
    except GatewayError as e:
        where = config.gemini.base_url or "the Gemini API"
        if e.transient and e.code is not None:
            log.warning("The service at %s is busy (%s); starting anyway", where, e)
            return
        if e.code in (401, 403) or (e.code == 400 and "key" in str(e).lower()):
            message = (
                f"the service at {where} refused the API key (from ${key_env}): {e}; check the key"
            )
        elif e.code is None:
            message = (
                f"cannot reach the Gemini API at {where}: {e}; "
                "check [gemini] base_url and the network"
            )
        else:
            message = f"{where} does not answer as the Gemini API: {e}; check [gemini] base_url"
        raise GatewayError(message, code=e.code, status=e.status) from None


#: Cycles in a row in which the service answered nothing about batches before ``run --until-idle``
#: ends (the batches and open submissions stay in the log for the next run).
BLIND_CYCLES = 10


def run(
    config: Config,
    *,
    loop: bool = False,
    max_cycles: int | None = None,
    until_idle: bool = False,
    wait_for_lock: float = 0.0,
    api_key: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    on_cycle: Callable[[int, CycleSummary], None] | None = None,
    progress: Progress | None = None,
    gateway: GeminiPort | None = None,
    worker_id: str | None = None,
) -> RunResult:
    """Run cycles: one (default), forever (``loop``), up to ``max_cycles``, or until nothing is in
    flight or left to submit (``until_idle``), in one :func:`session` (``gateway`` as there).
    ``until_idle`` also ends when all that is left is held back by a hold that lasted as long as
    the back-off goes (``CycleSummary.stalled``: the service keeps refusing or leaving creates
    unanswered), logged at WARNING; or when the service answered none of its questions about
    batches for ``BLIND_CYCLES`` cycles in a row (an outage, a batch it can no longer read).
    With ``loop`` a cycle that meets a database locked past the busy timeout is logged and tried
    again after ``poll_interval_seconds``; elsewhere the lock is an error."""
    cycles, blind, last = 0, 0, CycleSummary()
    command = "run --loop" if loop else "run --until-idle" if until_idle else "run --once"
    with session(
        config,
        command=command,
        api_key=api_key,
        wait_for_lock=wait_for_lock,
        sleep=sleep,
        progress=progress,
        gateway=gateway,
        worker_id=worker_id,
    ) as s:
        while True:
            try:
                s.store.check_wal()  # a worker whose -wal file vanished stops at once
                last = s.cycle.run()
            except DatabaseBusy as e:
                if not loop:
                    raise
                # Another process held the log past the busy timeout (a backup, an operator's
                # sqlite3 shell): the cycle's transactions rolled back; wait and try again.
                log.warning(
                    "Cycle skipped, database busy (%s); retrying in %ss",
                    e,
                    config.batching.poll_interval_seconds,
                )
                sleep(config.batching.poll_interval_seconds)
                continue
            cycles += 1
            if on_cycle is not None:
                on_cycle(cycles, last)
            if max_cycles is not None and cycles >= max_cycles:
                break
            if until_idle and last.idle:
                break
            blind = blind + 1 if last.blind else 0
            if until_idle and blind >= BLIND_CYCLES:
                log.warning(
                    "Run ends: the service answered none of its questions about batches for %d "
                    "cycles in a row (last: %s); %d batch(es) and %d open submission(s) wait for "
                    "the next run",
                    blind,
                    last.last_error,
                    last.active,
                    last.open_intents,
                )
                break
            if until_idle and last.stalled:
                log.warning(
                    "Run ends with %d page(s) held back: %s; run again later",
                    last.held_back,
                    last.hold,
                )
                break
            if not (loop or until_idle):
                break
            s.wait(config.batching.poll_interval_seconds)
    return RunResult(s.run_id, s.outcome, cycles, last, s.report_path, s.signal)


def _write_report(config: Config, built: report.RunReport) -> Path | None:
    try:
        return report.write(config.paths.reports_dir, built)
    except OSError as e:
        log.error("Cannot write the run report to %s: %s", config.paths.reports_dir, e)
        return None
