"""Where a cycle's work runs: one event loop on the worker's thread, and thread pools for the I/O.

* The **event loop** (:mod:`asyncio`) runs every stage's flows (one per batch, per lookup, per
  delete) on the worker's own thread: every read of the log and every append happens there, so
  the log keeps one writer, and each flow appends its batch's events in its own causal order.
  Flows of different batches interleave at their ``await`` points.
* **Files** (a chunk of outputs written and flushed) run on a small pool of their own
  (:meth:`Pools.files`), so results are written while the next chunk is judged.
* **Service calls** (the Gemini port is synchronous: google-genai over httpx) run on a bounded
  pool of threads (:meth:`Pools.call`): ``[network] max_calls_in_flight`` at once, whatever the
  number of flows waiting.
* **Background** tasks (:meth:`Pools.background`: the deletes of finished jobs, and of request
  files no intent came to name) go on while the next stages run, off the critical path;
  :meth:`Pools.settle` waits for them at the end of the cycle, so their events are in the log
  before the cycle ends.

:func:`gather` runs flows side by side and lets every one of them finish (and record what it
did) before the first error is raised: one batch's failure never cancels another's work.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from eventlog.errors import DatabaseError

__all__ = ["DEFAULT_CALLS", "Pools", "gather", "retrieved"]

T = TypeVar("T")
log = logging.getLogger("commands.cycle")
#: Service calls in flight at once by default (``[network] max_calls_in_flight``).
DEFAULT_CALLS = 16
#: Chunks of outputs written at once (each flushes its files on the outputs' own threads).
FILE_THREADS = 4


class Pools:
    """The event loop and the thread pools of one worker (its session); :meth:`close` ends
    them."""

    def __init__(self, calls: int = DEFAULT_CALLS) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # made on first use
        self._calls = ThreadPoolExecutor(max(1, calls), thread_name_prefix="calls")
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="files")
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run(self, flow: Coroutine[Any, Any, T]) -> T:
        """Run ``flow`` (a stage) on the loop until it ends; background tasks go on meanwhile
        and between stages stay where they are."""
        return self.loop.run_until_complete(flow)

    async def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the service-call pool; its result or its exception."""
        bound = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await self.loop.run_in_executor(self._calls, bound)

    async def files(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` on the file pool (a chunk of outputs written and flushed):
        the service calls never wait behind the disk."""
        bound = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
        return await self.loop.run_in_executor(self._files, bound)

    def background(self, flow: Coroutine[Any, Any, None]) -> None:
        """Start ``flow`` now and let it run beside the next stages (:meth:`settle` waits)."""
        task = self.loop.create_task(flow)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for every background task (and any they start); the first error is raised once
        all have ended."""
        while self._background:
            await gather(list(self._background))

    def cancel_all(self) -> None:
        """Cancel every task left on the loop (a stage that failed) and let them unwind."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._background.clear()

    def close(self) -> None:
        """Cancel what is left (a run interrupted), let it unwind, stop the threads. The
        session closes the ports next, which ends the calls still on the wire."""
        if self._closed:
            return
        self._closed = True
        try:
            self.cancel_all()
        finally:
            self._calls.shutdown(wait=False, cancel_futures=True)
            self._files.shutdown(wait=False, cancel_futures=True)
            if self._loop is not None:
                self._loop.close()
                self._loop = None


async def gather(flows: Iterable[Awaitable[T]]) -> list[T]:
    """Run ``flows`` side by side until every one has ended; then raise the first error one
    raised (in the order given), or return their results (a flow may return an exception as
    its value: it is returned, not raised). A flow is not cancelled because another failed:
    what it did is recorded before the error goes up; the other errors are logged. Only a
    failure of the log itself (:class:`~eventlog.errors.DatabaseError`: locked past the busy
    timeout, its -wal file gone) cancels the rest at once: nothing more could be recorded."""
    tasks = [asyncio.ensure_future(flow) for flow in flows]
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        if any(_database_failed(t) for t in tasks if t.done()):
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            break
    failed = [t for t in tasks if t.cancelled() or t.exception() is not None]
    if not failed:
        return [task.result() for task in tasks]
    first = next((t for t in failed if _database_failed(t)), failed[0])
    for task in failed:
        if task is not first and not task.cancelled():
            error = task.exception()
            log.error("Another flow of the stage failed too: %s: %s", type(error).__name__, error)
    first.result()  # raises the CancelledError or the flow's error
    raise AssertionError("unreachable")


def retrieved(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """``task``, its error marked as seen once it ends: a flow whose error is raised by another
    path (the stage's own, or the run's end) is not reported again, with a traceback, when
    the task is collected ("Task exception was never retrieved")."""
    task.add_done_callback(lambda t: None if t.cancelled() else t.exception())
    return task


def _database_failed(task: asyncio.Task[Any]) -> bool:
    return not task.cancelled() and isinstance(task.exception(), DatabaseError)
