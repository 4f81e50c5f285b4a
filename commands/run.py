"""``run``: the worker. ``--once`` does one cycle; ``--loop`` repeats it every
``poll_interval_seconds`` until interrupted. Each run is bracketed by ``RunStarted`` and
``RunFinished`` events and leaves a Markdown report."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from commands import report
from commands.config import Config
from commands.cycle import Cycle, CycleSummary
from commands.errors import OperatorError
from commands.gateway import Gateway, api_key_from_env
from commands.runlock import RunLock
from commands.schema import load_schema
from eventlog.events import RunFinished, RunStarted
from eventlog.store import EventStore
from projections import open_store

log = logging.getLogger("commands.run")


class RunResult(msgspec.Struct):
    run_id: str
    outcome: str
    cycles: int
    last: CycleSummary
    report_path: Path | None


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


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
) -> RunResult:
    """Run cycles: one (default), forever (``loop``), up to ``max_cycles``, or until nothing is in
    flight or left to submit (``until_idle``). Checks the API key and schema before any work."""
    key = api_key or api_key_from_env(config)
    schema = load_schema(
        config.gemini.output_schema, config.source.parent if config.source else None
    )
    run_id = new_run_id()
    with RunLock(config.paths.database).acquire(wait_for_lock):
        store = open_store(config.paths.database, create=True)
        gateway = Gateway.from_config(config, api_key=key)
        actor = f"run:{run_id}"
        store.append(
            [RunStarted(run_id=run_id, command="run --loop" if loop else "run")], actor=actor
        )
        log.info("Run %s started", run_id, extra={"run_id": run_id})
        cycle = Cycle(config, store, gateway, run_id=run_id, schema=schema, sleep=sleep)
        outcome, message, cycles, last = "ok", "", 0, CycleSummary()
        try:
            while True:
                last = cycle.run()
                cycles += 1
                if on_cycle is not None:
                    on_cycle(cycles, last)
                if max_cycles is not None and cycles >= max_cycles:
                    break
                if until_idle and last.idle:
                    break
                if not (loop or until_idle):
                    break
                sleep(config.batching.poll_interval_seconds)
        except KeyboardInterrupt:
            outcome, message = "interrupted", "stopped by the operator (Ctrl+C)"
            log.warning("Run %s interrupted: everything finished so far is in the log", run_id)
        except OperatorError as e:
            outcome, message = "error", str(e)
            raise
        except Exception as e:
            outcome, message = "error", f"{type(e).__name__}: {e}"
            raise
        finally:
            store.append(
                [RunFinished(run_id=run_id, outcome=outcome, message=message[:500])], actor=actor
            )
            path = _write_report(store, config, run_id)
            gateway.close()
            store.close()
        log.info(
            "Run %s finished (%s) after %d cycle(s); report: %s",
            run_id,
            outcome,
            cycles,
            path,
            extra={"run_id": run_id},
        )
        return RunResult(run_id, outcome, cycles, last, path)


def _write_report(store: EventStore, config: Config, run_id: str) -> Path | None:
    try:
        built = report.build(store, run_id, config.batching.max_retries)
        return report.write(config.paths.reports_dir, built)
    except OSError as e:
        log.error("Cannot write the run report to %s: %s", config.paths.reports_dir, e)
        return None
