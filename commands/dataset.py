"""The dataset on disk: ``<input_root>/<State>/<School>/<Year>/<Page>.<ext>`` and the outputs
``<output_root>/<State>/<School>/<Year>/<Page>.json``.

:func:`walk_inputs` only reads directory entries (like ``find``), so a scan of millions of pages
stays cheap; a page's bytes are checked (:func:`check_image`) only when it is about to be uploaded.
Nothing here raises on bad input: each problem comes back with its path and reason.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import msgspec

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
}
#: The File API's limit per file.
MAX_IMAGE_BYTES = 2 * 1024**3
LAYOUT = "expected <State>/<School>/<Year>/<Page>.<png|jpg|jpeg|webp>"


class Page(msgspec.Struct, frozen=True, gc=False):
    """One page image; ``key`` is ``State:School:Year:Page``."""

    key: str
    state: str
    school: str
    year: str
    page: str
    path: str
    mime_type: str

    def output_path(self, output_root: Path) -> Path:
        return output_path(output_root, self.key)


class Problem(msgspec.Struct, frozen=True):
    """An input that is skipped, and why."""

    path: str
    reason: str


def name_problem(name: str, what: str) -> str | None:
    """Why a path component cannot be part of a record key (None if it can)."""
    if not name:
        return f"{what} name is empty"
    if ":" in name:
        return f"{what} name contains ':' (the record key separator)"
    if "\\" in name or "/" in name:
        return f"{what} name contains a path separator"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return f"{what} name contains a control character"
    if name in (".", ".."):
        return f"{what} name is '{name}'"
    return None


def output_path(output_root: Path, key: str) -> Path:
    """Where a record's output goes; raises ValueError for a key that would leave the root."""
    parts = key.split(":")
    if len(parts) != 4:
        raise ValueError(f"record key {key!r} does not have 4 parts")
    for part, what in zip(parts, ("state", "school", "year", "page"), strict=True):
        problem = name_problem(part, what)
        if problem is not None:
            raise ValueError(f"record key {key!r}: {problem}")
    state, school, year, page = parts
    path = output_root / state / school / year / f"{page}.json"
    if not path.resolve().is_relative_to(output_root.resolve()):
        raise ValueError(f"record key {key!r} would write outside the output root")
    return path


def _entries(path: str) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as it:
        yield from sorted(it, key=lambda e: e.name)


def walk_inputs(root: Path) -> tuple[list[Page], list[Problem]]:
    """Every well-formed page under ``root``, and every problem found on the way (never raises)."""
    pages: list[Page] = []
    problems: list[Problem] = []
    if not root.exists():
        return pages, [Problem(str(root), "input root does not exist")]
    if not root.is_dir():
        return pages, [Problem(str(root), "input root is not a directory")]
    levels = ("state", "school", "year")

    def descend(path: str, names: tuple[str, ...]) -> None:
        try:
            entries = list(_entries(path))
        except OSError as e:
            problems.append(Problem(path, f"cannot list directory: {e.strerror or e}"))
            return
        depth = len(names)
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files (.DS_Store, editor swap files) are not pages
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError as e:
                reason = (
                    "broken or looping symlink"
                    if e.errno == errno.ELOOP
                    else f"cannot stat: {e.strerror or e}"
                )
                problems.append(Problem(entry.path, reason))
                continue
            if not is_dir and not is_file:
                reason = (
                    "broken or looping symlink"
                    if entry.is_symlink()
                    else "not a regular file or directory"
                )
                problems.append(Problem(entry.path, reason))
                continue
            if depth < 3:
                if not is_dir:
                    problems.append(Problem(entry.path, f"not a directory ({LAYOUT})"))
                    continue
                problem = name_problem(entry.name, levels[depth])
                if problem is None and depth == 2 and not entry.name.isdigit():
                    problem = "year is not a number"
                if problem is not None:
                    problems.append(Problem(entry.path, problem))
                    continue
                descend(entry.path, (*names, entry.name))
                continue
            if is_dir:
                problems.append(Problem(entry.path, f"unexpected directory ({LAYOUT})"))
                continue
            stem, ext = os.path.splitext(entry.name)
            mime = IMAGE_TYPES.get(ext.lower())
            if mime is None:
                problems.append(Problem(entry.path, f"not an image extension ({LAYOUT})"))
                continue
            if not stem.isdigit():
                problems.append(Problem(entry.path, "page is not a number"))
                continue
            state, school, year = names
            pages.append(
                Page(f"{state}:{school}:{year}:{stem}", state, school, year, stem, entry.path, mime)
            )

    descend(str(root), ())
    if not pages and not problems:
        problems.append(Problem(str(root), "input root is empty"))
    return _drop_duplicates(pages, problems), problems


def _drop_duplicates(pages: list[Page], problems: list[Problem]) -> list[Page]:
    """Two images for one page (``4.png`` and ``4.jpg``) are ambiguous: skip both, say so."""
    seen: dict[str, list[Page]] = {}
    for p in pages:
        seen.setdefault(p.key, []).append(p)
    if all(len(v) == 1 for v in seen.values()):
        return pages
    out = []
    for key, group in seen.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        names = ", ".join(os.path.basename(p.path) for p in group)
        problems.extend(Problem(p.path, f"several images for page {key} ({names})") for p in group)
    return out


def walk_outputs(root: Path) -> set[str]:
    """The record keys whose output JSON exists under ``root`` (directory entries only)."""
    keys: set[str] = set()
    if not root.is_dir():
        return keys
    for state in _dirs(str(root)):
        for school in _dirs(state.path):
            for year in _dirs(school.path):
                prefix = f"{state.name}:{school.name}:{year.name}:"
                try:
                    with os.scandir(year.path) as it:
                        for e in it:
                            if e.name.endswith(".json") and not e.name.startswith("."):
                                keys.add(prefix + e.name[:-5])
                except OSError:
                    continue
    return keys


def _dirs(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return [e for e in it if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []


_MAGIC = {
    "image/png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
}


def check_image(page: Page, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Why ``page``'s file cannot be uploaded (None if it can): unreadable, empty, too big, or
    not the image its extension claims."""
    try:
        size = os.stat(page.path).st_size
        if size == 0:
            return "empty file (0 bytes)"
        if size > max_bytes:
            return f"larger than the File API limit ({size} > {max_bytes} bytes)"
        with open(page.path, "rb") as fh:
            head = fh.read(12)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if not _MAGIC[page.mime_type](head):
        return f"not a {page.mime_type.split('/')[1].upper()} image (its bytes do not match)"
    return None
