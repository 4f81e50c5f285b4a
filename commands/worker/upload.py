"""Uploading to the File API, by the seed's policy: re-upload on every attempt, exponential backoff
from ``upload_retry_backoff_seconds``, at most ``upload_retry_attempts``, then the page (or the
request file's pages) is skipped for this cycle. :func:`upload_with_retries` is that policy for any
file; for a page image each attempt becomes an event. Images upload ``upload_concurrency`` at a
time, on the worker's service-call threads (:mod:`commands.worker.pools`).

A page image is uploaded from its bytes read once (:func:`commands.worker.dataset.read_once`),
never from its path: a file truncated, grown or replaced meanwhile cannot make the SDK's resumable
loop spin, and bytes that differ from what the scan saw (size, mtime, image signature) are not
uploaded at all: that attempt fails as ``file_changed`` and the page is checked again next cycle.
Whether a page whose uploads keep failing is given up on is
:func:`commands.rules.retry.upload_gives_up`'s to say (the caller's, with the page's budget).

The threads only talk to the service; the worker's own thread appends the events, as pages
finish, so a crash loses at most the pages still uploading (their files are cleaned up later).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import NamedTuple

import msgspec

from commands.errors import GatewayError
from commands.gemini.port import GeminiPort, RemoteFile
from commands.pages import Page
from commands.rules import uploads
from commands.rules.retry import backoff_delay
from commands.worker.dataset import (
    Stamp,
    read_once,
    warn_not_this_cycle,
)
from commands.worker.pools import Pools
from eventlog.events import DEFAULT_PROJECT, Event

log = logging.getLogger("commands.upload")


class Uploaded(msgspec.Struct):
    """How one page's upload ended: ``remote`` is None when every attempt failed."""

    page: Page
    remote: RemoteFile | None
    events: list[Event]
    #: The service refused the file itself (a 4xx): retrying it next cycle would not help.
    refused: bool = False
    message: str = ""
    #: Failed attempts this cycle.
    attempts: int = 0
    #: The file's size and mtime when its bytes were read (None: it could not be read).
    stamp: Stamp | None = None


class Attempts(NamedTuple):
    """How one file's upload went: ``remote`` is None when every attempt failed; ``failures``
    holds each failed attempt (its number, its error)."""

    remote: RemoteFile | None
    failures: list[tuple[int, GatewayError]]

    @property
    def transient(self) -> bool:
        """Whether the last failure may pass if tried later (True when none failed)."""
        return not self.failures or self.failures[-1][1].transient


def upload_with_retries(
    gateway: GeminiPort,
    source: Path | bytes,
    *,
    mime_type: str,
    display_name: str,
    attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    extra: Mapping[str, object] | None = None,
) -> Attempts:
    """The upload policy for any File API upload (a page image, a request file): up to
    ``attempts`` tries, backoff from ``backoff_seconds`` doubled each time, a non-transient
    refusal (4xx) stops at once. Each failed attempt is logged; nothing is appended."""
    failures: list[tuple[int, GatewayError]] = []
    for attempt in range(1, attempts + 1):
        try:
            remote = gateway.upload(source, mime_type=mime_type, display_name=display_name)
        except GatewayError as e:
            failures.append((attempt, e))
            log.warning(
                "Upload of %s failed (attempt %d/%d): %s",
                display_name,
                attempt,
                attempts,
                e,
                extra={**(extra or {}), "attempt": attempt},
            )
            if not e.transient:
                break
            if attempt < attempts:
                sleep(backoff_delay(backoff_seconds, attempt))
            continue
        return Attempts(remote, failures)
    return Attempts(None, failures)


def upload_one(
    gateway: GeminiPort,
    page: Page,
    *,
    attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    expected: Stamp | None = None,
    project: str = DEFAULT_PROJECT,
) -> Uploaded:
    """Read the page's bytes once (checked against ``expected``, what the scan saw), then try up
    to ``attempts`` times; a non-transient refusal (4xx) stops at once. ``project`` names the
    key ``gateway`` holds (recorded on ``FileUploaded``)."""
    data, stamp, changed = read_once(page, expected)
    if data is None:
        warn_not_this_cycle(log, "uploading", page.key, changed)
        events = uploads.changed(page.key, changed)
        return Uploaded(page, None, events, message=changed, attempts=1, stamp=stamp)
    outcome = upload_with_retries(
        gateway,
        data,
        mime_type=page.mime_type,
        display_name=page.key,
        attempts=attempts,
        backoff_seconds=backoff_seconds,
        sleep=sleep,
        extra={"record_key": page.key},
    )
    remote = outcome.remote
    events = uploads.attempted(page.key, outcome.failures, remote, project)
    if remote is not None:
        return Uploaded(page, remote, events, stamp=stamp)
    last = str(outcome.failures[-1][1]) if outcome.failures else ""
    failed = len(outcome.failures)
    log.warning(
        "Skipping %s this cycle: upload failed %d time(s)",
        page.key,
        failed,
        extra={"record_key": page.key},
    )
    return Uploaded(
        page,
        None,
        events,
        refused=not outcome.transient,
        message=last,
        attempts=failed,
        stamp=stamp,
    )


async def upload_pages(
    pools: Pools,
    gateway: GeminiPort,
    pages: list[Page],
    *,
    attempts: int,
    backoff_seconds: float,
    concurrency: int,
    sleep: Callable[[float], None] = time.sleep,
    project: str = DEFAULT_PROJECT,
    stamps: Mapping[str, Stamp | None] | None = None,
) -> AsyncIterator[Uploaded]:
    """Upload ``pages``, ``concurrency`` at a time on ``pools``' service-call threads (each
    checked against its stamp in ``stamps``, by record key, when given); yields each page's
    outcome as it finishes."""
    if not pages:
        return
    limit = asyncio.Semaphore(concurrency)

    async def one(p: Page) -> Uploaded:
        async with limit:
            return await pools.call(
                upload_one,
                gateway,
                p,
                attempts=attempts,
                backoff_seconds=backoff_seconds,
                sleep=sleep,
                project=project,
                expected=(stamps or {}).get(p.key),
            )

    tasks = [asyncio.ensure_future(one(p)) for p in pages]  # started in the pages' order
    for finished in asyncio.as_completed(tasks):
        yield await finished
