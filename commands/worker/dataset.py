"""The dataset on disk: ``<input_root>/<State>/<School>/<Year>/<Page>.<ext>`` and the outputs
``<output_root>/<State>/<School>/<Year>/<Page>.json``.

:func:`walk_years` only reads directory entries (like ``find``), so a scan of millions of pages
stays cheap; a page's bytes are checked (:func:`check_image`) only when it is about to be uploaded.
Nothing here raises on bad input: each problem comes back with its path and reason.
"""

from __future__ import annotations

import errno
import functools
import logging
import operator
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from commands.pages import Entry, Page, Problem, YearDir
from eventlog.keys import is_number, key_problem, name_problem

IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".pdf": "application/pdf",  # a page as a one-page PDF document (its text layer kept)
}
#: The File API's limit per file.
MAX_IMAGE_BYTES = 2 * 1024**3
LAYOUT = "expected <State>/<School>/<Year>/<Page>.<png|jpg|jpeg|webp|pdf>"


def output_path(output_root: Path, key: str) -> Path:
    """Where a record's output goes; raises ValueError for a key that would leave the root
    (a key that is not one, or a folder on its way that is a symlink out of the root)."""
    return OutputTree(output_root).path(key)


class OutputTree:
    """Output paths of many records, with the guard of :func:`output_path` made once per year
    folder: the folder's real path must stay under the output root's (a folder swapped for a
    symlink out of it is refused; one that stays inside is written through). The file itself
    needs no check: an output replaces its name by a rename, which never follows a symlink.
    Make one per chunk of outputs: a folder changed later is checked again by the next."""

    def __init__(self, output_root: Path) -> None:
        self.root = output_root
        self._real_root: Path | None = None
        self._folders: dict[tuple[str, str, str], Path | str] = {}

    def path(self, key: str) -> Path:
        """Where ``key``'s output goes; ValueError (its reason) if it may not go there."""
        problem = key_problem(key)
        if problem is not None:
            raise ValueError(problem)
        state, school, year, page = key.split(":")
        folder = self._folders.get((state, school, year))
        if folder is None:
            folder = self._check(self.root / state / school / year, key)
            self._folders[(state, school, year)] = folder
        if isinstance(folder, str):
            raise ValueError(folder)
        return folder / f"{page}.json"

    def _check(self, folder: Path, key: str) -> Path | str:
        if self._real_root is None:
            self._real_root = self.root.resolve()
        if not folder.resolve().is_relative_to(self._real_root):
            return f"record key {key!r} would write outside the output root"
        return folder


def _scandir(path: str, problems: list[Problem]) -> list[os.DirEntry[str]]:
    """Entries of ``path`` in name order, hidden ones left out (.DS_Store, editor files)."""
    try:
        with os.scandir(path) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=_name)
    except OSError as e:
        problems.append(Problem(path, f"cannot list directory: {e.strerror or e}"))
        return []


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _kind(entry: os.DirEntry[str], problems: list[Problem]) -> str | None:
    """``dir``, ``file``, or None after recording why the entry is neither."""
    try:
        if entry.is_dir():
            return "dir"
        if entry.is_file():
            return "file"
    except OSError as e:
        reason = (
            "broken or looping symlink"
            if e.errno == errno.ELOOP
            else f"cannot stat: {e.strerror or e}"
        )
        problems.append(Problem(entry.path, reason))
        return None
    reason = (
        "broken or looping symlink" if entry.is_symlink() else "not a regular file or directory"
    )
    problems.append(Problem(entry.path, reason))
    return None


def walk_years(root: Path, problems: list[Problem]) -> Iterator[YearDir]:
    """Each year folder under ``root`` in order, its page files listed; problems are appended to
    ``problems`` as they are found. Reads directory entries only (like ``find``), never file
    contents, and never raises. A symlink (to a file or a folder) whose target is outside
    ``root`` is a problem, not a page: the input tree is what the operator pointed at."""
    if not root.exists():
        problems.append(Problem(str(root), "input root does not exist"))
        return
    if not root.is_dir():
        problems.append(Problem(str(root), "input root is not a directory"))
        return
    inside = _Inside(os.path.realpath(root))
    found = False
    for state in _subdirs(str(root), "state", problems, inside):
        for school in _subdirs(state.path, "school", problems, inside):
            for year in _subdirs(school.path, "year", problems, inside):
                found = True
                prefix = f"{state.name}:{school.name}:{year.name}:"
                yield YearDir(
                    state.name,
                    school.name,
                    year.name,
                    year.path,
                    _entries(year.path, prefix, problems, inside),
                )
    if not found and not problems:
        problems.append(Problem(str(root), "input root is empty"))


class _Inside:
    """Whether a symlink's target stays under a (real) root folder."""

    def __init__(self, real_root: str) -> None:
        self.root = real_root
        self.prefix = real_root.rstrip(os.sep) + os.sep

    def escape(self, entry: os.DirEntry[str]) -> str | None:
        """Why the symlink ``entry`` leaves the root (None if it stays, or is no symlink)."""
        if not entry.is_symlink():
            return None
        target = os.path.realpath(entry.path)
        if target == self.root or target.startswith(self.prefix):
            return None
        return f"symlink leaves the input root (to {target})"


def _subdirs(
    path: str, level: str, problems: list[Problem], inside: _Inside
) -> Iterator[os.DirEntry[str]]:
    for entry in _scandir(path, problems):
        kind = _kind(entry, problems)
        if kind is None:
            continue
        escape = inside.escape(entry)
        if escape is not None:
            problems.append(Problem(entry.path, escape))
            continue
        if kind != "dir":
            problems.append(Problem(entry.path, f"not a directory ({LAYOUT})"))
            continue
        problem = name_problem(entry.name, level)
        if problem is not None:
            problems.append(Problem(entry.path, problem))
            continue
        yield entry


def _entries(path: str, prefix: str, problems: list[Problem], inside: _Inside) -> list[Entry]:
    """The page files of one year folder. The scan's innermost loop: one pass over the
    directory entries, the common case (``<digits>.<image extension>``, a regular file) decided
    first; a page number is ASCII digits (:func:`eventlog.keys.is_number`)."""
    out: list[Entry] = []
    append, types = out.append, IMAGE_TYPES
    try:
        with os.scandir(path) as it:
            for e in it:
                name = e.name
                dot = name.rfind(".")
                stem = name[:dot]
                mime = types.get(name[dot:])  # ".png" etc. need dot > 0: is_number(stem) says so
                try:
                    if (  # stem.isascii() and stem.isdigit(): eventlog.keys.is_number inlined
                        mime is not None  # (the fast path: no call per directory entry)
                        and stem.isascii()
                        and stem.isdigit()
                        and e.is_file(follow_symlinks=False)  # a symlink takes the slow path
                    ):
                        append((int(stem), stem, e.path, mime))
                        continue
                    is_file = e.is_file()
                except OSError:  # a looping symlink: _page_problem says so
                    is_file = False
                if name[0] == ".":
                    continue  # hidden files (.DS_Store, editor swap files) are not pages
                if dot <= 0:
                    mime = None
                elif mime is None:
                    mime = types.get(name[dot:].lower())
                escape = inside.escape(e) if is_file else None
                if mime is None or not is_number(stem) or not is_file or escape is not None:
                    _page_problem(e, stem, mime, problems, escape)
                    continue
                append((int(stem), stem, e.path, mime))  # an upper-case extension or a symlink
    except OSError as err:
        problems.append(Problem(path, f"cannot list directory: {err.strerror or err}"))
        return []
    out.sort()
    if len(set(map(_STEM, out))) < len(out):  # two images for one page
        return _drop_duplicates(out, prefix, problems)
    return out


_STEM = operator.itemgetter(1)


def _drop_duplicates(entries: list[Entry], prefix: str, problems: list[Problem]) -> list[Entry]:
    """Two images for one page (``4.png`` and ``4.jpg``) are ambiguous: skip both, say so."""
    by_stem: dict[str, list[Entry]] = {}
    for entry in entries:
        by_stem.setdefault(entry[1], []).append(entry)
    out = []
    for stem, group in by_stem.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        names = ", ".join(sorted(os.path.basename(p) for _, _, p, _ in group))
        problems.extend(
            Problem(p, f"several images for page {prefix}{stem} ({names})") for _, _, p, _ in group
        )
    return out


def _page_problem(
    e: os.DirEntry[str], stem: str, mime: str | None, problems: list[Problem], escape: str | None
) -> None:
    kind = _kind(e, problems)
    if kind is None:
        return
    if escape is not None:
        problems.append(Problem(e.path, escape))
    elif kind == "dir":
        problems.append(Problem(e.path, f"unexpected directory ({LAYOUT})"))
    elif mime is None:
        problems.append(Problem(e.path, f"not an image extension ({LAYOUT})"))
    else:
        problems.append(Problem(e.path, "page is not a number"))


class OutputFolders:
    """Refuses a year whose output folder (or its school's or state's) is a symlink out of the
    output root, *before* its pages are submitted: :func:`output_path` would refuse to write
    there after they were billed. One ``lstat`` per folder level; state and school verdicts are
    remembered for the scan."""

    def __init__(self, output_root: Path) -> None:
        self.root = str(output_root)
        self.inside = _Inside(os.path.realpath(output_root))
        self._seen: dict[str, str | None] = {}

    def problem(self, year: YearDir) -> Problem | None:
        path = self.root
        for depth, part in enumerate((year.state, year.school, year.year)):
            path = os.path.join(path, part)
            reason = self._seen.get(path, "") if depth < 2 else ""
            if reason == "":
                reason = self._check(path)
                if depth < 2:
                    self._seen[path] = reason
            if reason is not None:
                return Problem(path, reason)
        return None

    def _check(self, path: str) -> str | None:
        if not os.path.islink(path):
            return None
        target = os.path.realpath(path)
        if target == self.inside.root or target.startswith(self.inside.prefix):
            return None
        return (
            f"output folder is a symlink out of the output root (to {target}); "
            "its pages are not submitted"
        )


def output_names(output_root: Path, year: YearDir) -> set[str]:
    """The page numbers (file stems) that have an output JSON in this year's output folder."""
    try:
        names = os.listdir(os.path.join(output_root, year.state, year.school, year.year))
    except OSError:
        return set()
    # Hidden files need no filter: their stems start with "." and never match a page number.
    return {n[:-5] for n in names if n[-5:] == ".json"}


#: The bytes that say what image a file is (the longest signature checked: WebP's 12).
SIGNATURE_BYTES = 12
_MAGIC = {
    "image/png": lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": lambda b: b.startswith(b"\xff\xd8\xff"),
    "image/webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "application/pdf": lambda b: b.startswith(b"%PDF-"),
}


def check_image(page: Page, max_bytes: int = MAX_IMAGE_BYTES) -> str | None:
    """Why ``page``'s file cannot be uploaded (None if it can): unreadable, empty, too big, or
    not the image its extension claims."""
    return inspect_image(page, max_bytes)[1]


def inspect_image(
    page: Page, max_bytes: int | None = None, probe: Probe | None = None
) -> tuple[int, str | None]:
    """``page``'s size and why its file cannot go (None if it can): unreadable, empty, over
    ``max_bytes`` (None: no limit here), or not the image its extension claims. One stat and
    one 12-byte read, or none with a ``probe`` of the file made just before."""
    try:
        if probe is not None and probe.stamp is None:
            raise OSError(probe.error)
        size = probe.stamp.size if probe is not None and probe.stamp else os.stat(page.path).st_size
        if size == 0:
            return 0, "empty file (0 bytes)"
        if max_bytes is not None and size > max_bytes:
            return size, f"larger than the File API limit ({size} > {max_bytes} bytes)"
        if probe is not None:
            head = probe.head[:SIGNATURE_BYTES]
        else:
            with open(page.path, "rb") as fh:
                head = fh.read(SIGNATURE_BYTES)
    except OSError as e:
        return 0, f"cannot read: {e.strerror or e}"
    if not _MAGIC[page.mime_type](head):
        return size, f"not a {page.mime_type.split('/')[1].upper()} image (its bytes do not match)"
    if page.mime_type == PDF:
        return size, pdf_page_problem(page.path)
    return size, None


PDF = "application/pdf"


def pdf_page_problem(path: str) -> str | None:
    """Why the PDF at ``path`` cannot go as one page (None if it can): damaged, encrypted,
    empty, or more than one page (a page file is one page; a document goes as ``<Year>.pdf``).
    Reads the whole file (pypdf: its cross-reference table and page tree) once per version of
    it in a process: the scan and the submission ask again."""
    stamp = file_stamp(path)
    if stamp is None:
        return "cannot read: it is gone"
    return _pdf_page_problem(path, stamp)


@functools.lru_cache(maxsize=4096)
def _pdf_page_problem(path: str, stamp: Stamp) -> str | None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(path, strict=True)
        if reader.is_encrypted:
            return "an encrypted PDF (it cannot be read without its password)"
        pages = len(reader.pages)
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, RecursionError) as e:
        return f"a damaged PDF ({type(e).__name__}: {str(e)[:120]})"
    if pages != 1:
        return f"a PDF page file must hold exactly one page (it has {pages})"
    return None


class Stamp(NamedTuple):
    """What identifies one version of a file: its size and modification time (ns)."""

    size: int
    mtime_ns: int


class Probe(NamedTuple):
    """A file's first bytes and its :class:`Stamp` when they were read (None, and why, when it
    could not be read): one open, one fstat and one read tell a page's size, its type and its
    dimensions."""

    head: bytes
    stamp: Stamp | None
    error: str = ""


def probe_file(path: str, head_bytes: int) -> Probe:
    """The first ``head_bytes`` of the file at ``path`` and its stamp; never raises."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            return Probe(fh.read(head_bytes), Stamp(st.st_size, st.st_mtime_ns))
    except OSError as e:
        return Probe(b"", None, e.strerror or str(e))


def file_stamp(path: str) -> Stamp | None:
    """``path``'s :class:`Stamp` now (None if it cannot be stat-ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return Stamp(st.st_size, st.st_mtime_ns)


def warn_not_this_cycle(logger: logging.Logger, doing: str, key: str, why: str) -> None:
    """The one WARNING for a page not ``doing`` (``sending``, ``uploading``) this cycle because
    ``why`` (what :func:`read_once` said, or another unreadable input): it is checked again
    next cycle. ``logger`` is the caller's, so the logger names stay."""
    logger.warning(
        "Not %s %s this cycle: %s; it is checked again next cycle",
        doing,
        key,
        why,
        extra={"record_key": key},
    )


def read_once(page: Page, expected: Stamp | None = None) -> tuple[bytes | None, Stamp | None, str]:
    """``page``'s bytes, read once (the upload and the inline part are made from them, never from
    the path again), with the :class:`Stamp` they were read at; or None and why: the file
    changed while it was read (its size or mtime moved under the read), it differs from
    ``expected`` (what the scan saw), or its bytes are no longer the image its extension says.
    Never raises."""
    try:
        with open(page.path, "rb") as fh:
            before = os.fstat(fh.fileno())
            data = fh.read()
            after = os.fstat(fh.fileno())
    except OSError as e:
        return None, None, f"cannot read: {e.strerror or e}"
    first = Stamp(before.st_size, before.st_mtime_ns)
    if first != Stamp(after.st_size, after.st_mtime_ns) or len(data) != before.st_size:
        reason = f"the file changed while it was read ({before.st_size} -> {len(data)} bytes)"
        return None, first, reason
    if expected is not None and first != expected:
        reason = f"the file changed since it was checked ({expected.size} -> {first.size} bytes)"
        return None, first, reason
    if not data or not _MAGIC[page.mime_type](data[:12]):
        return None, first, "the file changed: its bytes are no longer the image it was"
    return data, first, ""
