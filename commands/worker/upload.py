"""Uploading page images, by the seed's policy: re-upload on every attempt, exponential backoff
from ``upload_retry_backoff_seconds``, at most ``upload_retry_attempts``, then the page is skipped
for this cycle. Each attempt becomes an event. Uploads run ``upload_concurrency`` at a time.

Worker threads only talk to the service; the caller's thread appends the events, as each page
finishes, so a crash loses at most the pages still uploading (their files are cleaned up later).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import msgspec

from commands.errors import GatewayError
from commands.gemini.port import GeminiPort, RemoteFile
from commands.rules.retry import backoff_delay
from commands.worker.dataset import Page
from eventlog.events import Event, FileUploaded, UploadAbandoned, UploadFailed

log = logging.getLogger("commands.upload")


class Uploaded(msgspec.Struct):
    """How one page's upload ended: ``remote`` is None when every attempt failed."""

    page: Page
    remote: RemoteFile | None
    events: list[Event]
    #: The service refused the file itself (a 4xx): retrying it next cycle would not help.
    refused: bool = False
    message: str = ""


def upload_one(
    gateway: GeminiPort,
    page: Page,
    *,
    attempts: int,
    backoff_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> Uploaded:
    """Try up to ``attempts`` times; a non-transient refusal (4xx) stops at once."""
    events: list[Event] = []
    last = ""
    transient = True
    for attempt in range(1, attempts + 1):
        try:
            remote = gateway.upload(
                Path(page.path), mime_type=page.mime_type, display_name=page.key
            )
        except GatewayError as e:
            last = str(e)
            events.append(
                UploadFailed(
                    record_key=page.key,
                    attempt=attempt,
                    error_type=f"http_{e.code}" if e.code else "network",
                    message=last,
                )
            )
            log.warning(
                "Upload of %s failed (attempt %d/%d): %s",
                page.key,
                attempt,
                attempts,
                e,
                extra={"record_key": page.key, "attempt": attempt},
            )
            transient = e.transient
            if not transient:
                break
            if attempt < attempts:
                sleep(backoff_delay(backoff_seconds, attempt))
            continue
        events.append(
            FileUploaded(
                record_key=page.key,
                file_name=remote.name,
                file_uri=remote.uri,
                mime_type=remote.mime_type,
                size_bytes=remote.size_bytes,
                attempt=attempt,
            )
        )
        return Uploaded(page, remote, events)
    events.append(UploadAbandoned(record_key=page.key, attempts=len(events), message=last))
    log.warning(
        "Skipping %s this cycle: upload failed %d time(s)",
        page.key,
        len(events) - 1,
        extra={"record_key": page.key},
    )
    return Uploaded(page, None, events, refused=not transient, message=last)


def upload_pages(
    gateway: GeminiPort,
    pages: list[Page],
    *,
    attempts: int,
    backoff_seconds: float,
    concurrency: int,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Uploaded]:
    """Upload ``pages`` concurrently; yields each page's outcome as it finishes."""
    if not pages:
        return
    with ThreadPoolExecutor(
        max_workers=min(concurrency, len(pages)), thread_name_prefix="upload"
    ) as pool:
        futures = [
            pool.submit(
                upload_one,
                gateway,
                p,
                attempts=attempts,
                backoff_seconds=backoff_seconds,
                sleep=sleep,
            )
            for p in pages
        ]
        for future in as_completed(futures):
            yield future.result()
