"""Writing a chunk of outputs: atomic (no half file under an output's name), durable in order
(every file flushed before any rename, every folder synced after the renames), and all or nothing
when a file of the chunk fails, with the failing file named."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from commands.worker import outputs
from commands.worker.outputs import OutputWriteError, write_outputs


def chunk(root: Path, n: int = 40) -> list[tuple[Path, bytes]]:
    return [
        (root / f"S{i % 3}" / "School" / "2020" / f"{i}.json", f'{{"page": {i}}}'.encode() * 50)
        for i in range(n)
    ]


def leftovers(root: Path) -> list[Path]:
    return sorted(root.rglob(".*.tmp"))


def test_a_chunk_is_written_whole_with_its_digests(tmp_path: Path) -> None:
    items = chunk(tmp_path)
    digests = write_outputs(items)
    assert set(digests) == {p for p, _ in items}
    for path, data in items:
        assert path.read_bytes() == data
    assert leftovers(tmp_path) == []
    # Writing again (a collect repeated after a crash) replaces each file with the same bytes.
    assert write_outputs(items) == digests


def test_every_flush_precedes_every_rename_and_folders_sync_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = chunk(tmp_path)
    steps: list[tuple[str, str]] = []
    flush, replace, sync_folder = outputs._flush, os.replace, outputs._sync_folder

    def flushed(fd: int) -> None:
        flush(fd)
        tmp = Path(os.readlink(f"/proc/self/fd/{fd}"))
        output = tmp.with_name(tmp.name[1:].rsplit(".", 2)[0])  # .1.json.<pid>.tmp -> 1.json
        assert output.suffix == ".json" and not output.exists()  # nothing visible yet
        steps.append(("flush", str(tmp)))

    def renamed(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        replace(src, dst)
        steps.append(("rename", str(dst)))

    def synced(folder: Path) -> None:
        sync_folder(folder)
        steps.append(("folder", str(folder)))

    monkeypatch.setattr(outputs, "_flush", flushed)
    monkeypatch.setattr(outputs.os, "replace", renamed)
    monkeypatch.setattr(outputs, "_sync_folder", synced)
    write_outputs(items)
    kinds = [kind for kind, _ in steps]
    n = len(items)
    assert kinds == ["flush"] * n + ["rename"] * n + ["folder"] * 3, kinds
    # Each flush was of a temporary file, never of an output under its own name.
    assert all(Path(name).name.startswith(".") for kind, name in steps if kind == "flush")
    assert {name for kind, name in steps if kind == "folder"} == {str(p.parent) for p, _ in items}


def test_a_file_failing_mid_chunk_leaves_nothing_new_and_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = chunk(tmp_path)
    old, _ = items[0]
    old.parent.mkdir(parents=True)
    old.write_bytes(b"the previous output")
    failing = items[17][0]
    flush = outputs._flush

    def disk_full_on_one(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(f"{failing.parent}/.{failing.name}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        flush(fd)

    monkeypatch.setattr(outputs, "_flush", disk_full_on_one)
    with pytest.raises(OutputWriteError) as raised:
        write_outputs(items)
    assert str(raised.value) == f"cannot write output {failing}: No space left on device"
    assert old.read_bytes() == b"the previous output"  # untouched, not half-replaced
    assert [p for p, _ in items[1:] if p.exists()] == []  # no output of the chunk renamed
    assert leftovers(tmp_path) == []  # and no temporary file left behind


def test_a_folder_that_cannot_be_made_fails_the_chunk_before_any_rename(tmp_path: Path) -> None:
    items = chunk(tmp_path)
    (tmp_path / "S1").write_bytes(b"a file where a folder should be")
    with pytest.raises(OutputWriteError, match=r"cannot write output .*/S1/School/2020/1\.json"):
        write_outputs(items)
    assert [p for p, _ in items if p.exists()] == []
    assert leftovers(tmp_path) == []


def test_a_path_given_twice_gets_its_last_bytes(tmp_path: Path) -> None:
    path = tmp_path / "a" / "1.json"
    digests = write_outputs([(path, b"first"), (path, b"second")])
    assert path.read_bytes() == b"second" and len(digests) == 1


def test_temporary_files_a_killed_writer_left_are_removed_when_its_outputs_are_written(
    tmp_path: Path,
) -> None:
    """A writer killed mid-chunk leaves ``.<name>.<its pid>.tmp``; writing those outputs again
    (the next run repeats the collect) removes them. Another output's file is left alone."""
    items = chunk(tmp_path, 6)
    folder = items[0][0].parent
    folder.mkdir(parents=True)
    dead = 2**22 + 17  # above any pid this machine hands out
    stale = [folder / f".{p.name}.{dead}.tmp" for p, _ in items if p.parent == folder]
    stale.append(folder / f".{items[0][0].name}.{dead}-7.tmp")
    other = folder / f".99.json.{dead}.tmp"
    # A live writer's file (pid 1 is always running) is its own: it is not swept.
    alive = folder / f".{items[0][0].name}.1-3.tmp"
    for path in [*stale, other, alive]:
        path.write_bytes(b'{"half')
    write_outputs(items)
    assert leftovers(tmp_path) == sorted([other, alive])
