"""The walk of the input tree: ``<input_root>/<State>/<School>/<Year>/<Page>.<ext>`` page files
and ``<input_root>/<State>/<School>/<Year>.pdf`` documents (:mod:`commands.worker.documents`).

:func:`walk_years` reads directory entries only (like ``find``), so a scan of millions of pages
stays cheap; a document is read to count its pages, once per version of it in a process. Nothing
here raises on bad input: each problem comes back with its path and reason.
"""

from __future__ import annotations

import errno
import operator
import os
from collections.abc import Iterator
from pathlib import Path

from commands.pages import Entry, Problem, YearDir
from commands.worker import documents
from commands.worker.dataset import PDF, Inside, file_stamp
from eventlog.keys import fits, is_number, name_problem

#: Page files by extension (a ``.pdf`` page file is a one-page PDF, its text layer kept).
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}
LAYOUT = (
    "expected <State>/<School>/<Year>/<Page>.<png|jpg|jpeg|webp|pdf> or <State>/<School>/<Year>.pdf"
)


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
    inside = Inside(os.path.realpath(root))
    found = False
    for state in _subdirs(str(root), "state", problems, inside):
        for school in _subdirs(state.path, "school", problems, inside):
            for year, folder, document in _years(school.path, problems, inside):
                found = True
                prefix = f"{state.name}:{school.name}:{year}:"
                entries = _entries(folder, prefix, problems, inside) if folder else []
                year_dir = YearDir(
                    state.name,
                    school.name,
                    year,
                    folder or document[:-4],
                    entries,
                    school_path=school.path,
                )
                if document:
                    _add_document(year_dir, document, problems)
                yield year_dir
    if not found and not problems:
        problems.append(Problem(str(root), "input root is empty"))


def _years(path: str, problems: list[Problem], inside: Inside) -> Iterator[tuple[str, str, str]]:
    """A school's years in name order: each with its folder and its document (``<Year>.pdf``),
    either one "" when it has only the other."""
    folders: dict[str, str] = {}
    pdfs: dict[str, str] = {}
    for entry in _scandir(path, problems):
        kind = _kind(entry, problems)
        if kind is None:
            continue
        escape = inside.escape(entry)
        name = entry.name
        if escape is not None:
            problems.append(Problem(entry.path, escape))
        elif kind == "file" and name[-4:].lower() == ".pdf":
            _checked(name[:-4], entry.path, "year", problems, pdfs)
        elif kind != "dir":
            problems.append(Problem(entry.path, f"not a directory or a <Year>.pdf ({LAYOUT})"))
        else:
            _checked(name, entry.path, "year", problems, folders)
    for year in sorted(folders.keys() | pdfs.keys()):
        yield year, folders.get(year, ""), pdfs.get(year, "")


def _checked(
    name: str, path: str, level: str, problems: list[Problem], into: dict[str, str]
) -> None:
    problem = name_problem(name, level)
    if problem is None:
        into[name] = path
    else:
        problems.append(Problem(path, problem))


def _add_document(year: YearDir, document: str, problems: list[Problem]) -> None:
    """``document``'s pages added to ``year``'s entries (it is read once per version, to count
    them); a page also given as a page file is neither, and said once, naming both files."""
    stamp = file_stamp(document)
    found = documents.facts(document, stamp) if stamp else "cannot read it"
    if isinstance(found, str):
        problems.append(Problem(document, found))
        return
    year.documents.append((document, found.sha256, found.pages))
    files = {e[1]: e[2] for e in year.entries}
    twice = {str(i) for i in range(1, found.pages + 1)} & files.keys()
    for stem in sorted(twice, key=int):
        reason = (
            f"page {year.prefix}{stem} is given twice: {files[stem]} and page {stem} of "
            f"{document}; neither is sent until one of them is removed"
        )
        problems.append(Problem(files[stem], reason))
    entries = [e for e in year.entries if e[1] not in twice]
    entries += [
        (i, str(i), documents.locator(document, i), PDF)
        for i in range(1, found.pages + 1)
        if str(i) not in twice
    ]
    entries.sort()
    year.entries = entries


def _subdirs(
    path: str, level: str, problems: list[Problem], inside: Inside
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


def _entries(path: str, prefix: str, problems: list[Problem], inside: Inside) -> list[Entry]:
    """The page files of one year folder. The scan's innermost loop: one pass over the
    directory entries, the common case (``<digits>.<image extension>``, a regular file) decided
    first; a page number is ASCII digits (:func:`eventlog.keys.is_number`), at most
    :data:`eventlog.keys.MAX_NUMBER` (19 digits or more take the slow path, which checks)."""
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
                        and len(stem) < 19  # below 10**18: under the 64-bit limit
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
                number = is_number(stem) and fits(stem)
                if mime is None or not number or not is_file or escape is not None:
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
    elif not is_number(stem):
        problems.append(Problem(e.path, "page is not a number"))
    else:
        problems.append(Problem(e.path, name_problem(stem, "page") or "page is out of range"))
