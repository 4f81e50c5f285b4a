"""A chunk's page images made ready for its request lines: each checked and routed (inline or the
File API, :func:`commands.worker.request_files.route_page`), referenced again while still on the
File API, or uploaded by the upload policy (:mod:`commands.worker.upload`), its events appended
as pages finish (group-committed) and a page whose budget is spent given up on
(:func:`commands.rules.uploads.given_up`).
"""

from __future__ import annotations

import logging
import time

import msgspec

from commands.gemini.port import RemoteFile
from commands.pages import Page
from commands.rules import uploads
from commands.rules.cleanup import image_reusable_since
from commands.rules.scan import rejected
from commands.rules.transport import Transport
from commands.worker.context import Worker
from commands.worker.dataset import Probe, Stamp, file_stamp
from commands.worker.request_files import Ready, route_page
from commands.worker.summary import CycleSummary
from commands.worker.upload import Uploaded, upload_pages
from eventlog import crashpoints
from eventlog.events import Event, UploadGivenUp
from projections import queries

log = logging.getLogger("commands.cycle")

__all__ = ["UPLOAD_EVENTS_PER_COMMIT", "Images", "give_up", "ready_images", "reject"]

#: Upload events appended in one transaction (a commit per upload would cost an fsync each).
UPLOAD_EVENTS_PER_COMMIT = 200


class Images(msgspec.Struct):
    """A chunk's pages ready for their lines (each with its uploaded file, or None: inline),
    and each page's file as it was checked (its line or upload is made from bytes read once and
    checked against this)."""

    ready: list[Ready]
    stamps: dict[str, Stamp | None]


def reject(w: Worker, page: Page, reason: str) -> None:
    """A page that cannot go at all: skipped, and said once (``InputRejected``)."""
    log.warning("Skipping %s: %s", page.path, reason, extra={"record_key": page.key})
    w.append([rejected(page.path, reason)])


def _route(
    w: Worker, pages: list[Page], stamps: dict[str, Stamp | None], probes: dict[str, Probe]
) -> list[tuple[Page, Transport]]:
    """The pages that can go, each with its transport; the others are rejected. A page's file
    as its estimate read it (``probes``) is what is checked, and its stamp what its line or
    upload must still find."""
    routed: list[tuple[Page, Transport]] = []
    for page in pages:
        probe = probes.get(page.key)
        stamps[page.key] = probe.stamp if probe is not None else file_stamp(page.path)
        route = route_page(page, w.config.uploads, probe)
        if route.transport is None:
            reject(w, page, route.reason)
        else:
            routed.append((page, route.transport))
    return routed


async def ready_images(
    w: Worker,
    take: list[Page],
    project: str,
    summary: CycleSummary,
    probes: dict[str, Probe] | None = None,
) -> Images:
    """``take``'s pages that can go this cycle, with ``project``'s key: inline ones as they
    are, File API ones reused or uploaded (a page whose upload failed waits, or is given up
    on). ``probes``: their files as their estimates read them."""
    stamps: dict[str, Stamp | None] = {}
    routed = _route(w, take, stamps, probes or {})
    ready: list[Ready] = [(page, None) for page, how in routed if how == "inline"]
    to_upload = [page for page, how in routed if how == "file_api"]
    reused = _reuse(w, to_upload, project)
    ready += reused
    again = {page.key for page, _ in reused}
    to_upload = [page for page in to_upload if page.key not in again]
    if to_upload:
        ready += await _upload(w, to_upload, project, stamps, summary)
    return Images(ready, stamps)


def _reuse(w: Worker, pages: list[Page], project: str) -> list[Ready]:
    """The pages whose image is still on ``project``'s File API (uploaded for a deferred
    submission, young enough): referenced again instead of uploaded again."""
    found = queries.reusable_images(
        w.store, [p.key for p in pages], image_reusable_since(w.store.clock()), project
    )
    out: list[Ready] = []
    for page in pages:
        image = found.get(page.key)
        if image is not None:
            remote = RemoteFile(
                image.file_name, image.file_uri, image.mime_type, image.size_bytes, page.key
            )
            out.append((page, remote))
    if out:
        log.info("Reusing %d page image(s) already on the File API", len(out))
    return out


async def _upload(
    w: Worker,
    pages: list[Page],
    project: str,
    stamps: dict[str, Stamp | None],
    summary: CycleSummary,
) -> list[Ready]:
    """Upload ``pages``' images by the upload policy with ``project``'s key; the ones
    uploaded, with their files. Their events are group-committed: a crash before a flush leaves
    files the log never heard of, which the clean-up finds on the service and deletes."""
    settings = w.config.uploads
    uploaded: list[Ready] = []
    bar = w.progress.start(f"uploading {len(pages)} pages", len(pages))
    pending: list[Event] = []
    last_flush = time.monotonic()
    budget = queries.failed_uploads_of(w.store, [p.key for p in pages])
    async for outcome in upload_pages(
        w.pools,
        w.port(project),
        pages,
        attempts=settings.upload_retry_attempts,
        backoff_seconds=settings.upload_retry_backoff_seconds,
        concurrency=settings.upload_concurrency,
        sleep=w.sleep,
        project=project,
        stamps=stamps,
    ):
        crashpoints.reach("after_image_upload")
        pending += outcome.events
        given_up = None
        if outcome.remote is None:
            given_up = give_up(w, outcome, budget.get(outcome.page.key, 0))
            if given_up is not None:
                pending.append(given_up)
        if len(pending) >= UPLOAD_EVENTS_PER_COMMIT or time.monotonic() - last_flush > 1.0:
            w.append(pending)
            crashpoints.reach("after_upload_events")
            pending, last_flush = [], time.monotonic()
        bar.update(1)
        if outcome.remote is not None:
            uploaded.append((outcome.page, outcome.remote))
        elif given_up is None:
            summary.deferred += 1
    w.append(pending)
    crashpoints.reach("after_upload_events")
    bar.close()
    return uploaded


def give_up(w: Worker, outcome: Uploaded, failed_before: int) -> UploadGivenUp | None:
    """The ``UploadGivenUp`` of a page whose upload failed this cycle, if its budget
    (``max_upload_attempts``, counted from the log) is spent or the service refused the file;
    None when it is tried again next cycle. Logged at WARNING."""
    page = outcome.page
    stamp = outcome.stamp or file_stamp(page.path) or Stamp(-1, -1)
    given_up = uploads.given_up(
        page.key,
        page.path,
        failed_before=failed_before,
        failed_now=outcome.attempts,
        refused=outcome.refused,
        message=outcome.message,
        stamp=(stamp.size, stamp.mtime_ns),
        max_attempts=w.config.uploads.max_upload_attempts,
    )
    if given_up is not None:
        log.warning(
            "Giving up on %s: %s; it is skipped until its file changes or reset-failures",
            page.key,
            given_up.reason,
            extra={"record_key": page.key},
        )
    return given_up
