"""The README's demo transcript is what a real run prints (issue 22, item 8: it showed upload
retries the default transport no longer makes, and only WARNING lines).

``python -m commands demo`` runs as a subprocess in a fresh folder (so its folder is ``./demo``, as
in the README), with ``$UV_PROJECT`` naming this checkout: the hints it prints are then typed as
from the checkout's root, where the README's commands are typed (``uv run python -m commands
...``, the form :func:`commands.installation.command_prefix` gives a checkout under uv; run the
suite with ``uv run pytest``, as the README says).

Every line of the README's transcript (the first fenced block under "## The demo") must be a line
of the real standard output, in order; a line ``...`` stands for lines left out, and between two
``...`` the lines must follow one another. Before comparing, both sides are normalised, and only
in what varies from run to run (:data:`NORMALISE`):

* the emulator's port, run ids, timestamps, batch ids;
* the event count (how many polls saw a batch RUNNING depends on timing), the wall time;
* in a cycle line, the cycle's number and its active / submitted / written counts (how many
  cycles a batch spans depends on the machine's speed; the page total and the dead-lettered
  count are kept);
* paths: the run prints absolute paths, the README the same relative to the folder the demo ran
  in, whose absolute prefix is removed.

The log lines the README shows after it (the second fenced block) must each be a line of standard
error, without its timestamp and normalised the same way, ``(...)`` standing for the rest of the
line; and "about N INFO and WARNING lines" must be within a quarter of the real count.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli

README = (ROOT / "README.md").read_text()

#: What varies between runs, and what it is replaced by (applied to both sides, in order).
NORMALISE = [
    (re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "), ""),  # a log line's timestamp
    (re.compile(r"http://127\.0\.0\.1:\d+"), "http://127.0.0.1:<port>"),
    (re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{4}"), "<run>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<time>"),
    (re.compile(r"batches/[0-9a-f]+"), "batches/<id>"),
    (re.compile(r"^events        \d+"), "events        <n>"),
    (re.compile(r"finished in \d+\.\d+s"), "finished in <s>s"),
    (
        re.compile(r"cycle \d+: \d+ active, \d+ submitted, \d+/"),
        "cycle <n>: <a> active, <s> submitted, <w>/",
    ),
]
ELIDED = "..."
#: In a log line of the README: the rest of the line is left out.
REST = " (...)"


def normalise(line: str, folder: Path | None = None) -> str:
    if folder is not None:
        line = line.replace(f"{folder}{os.sep}", "")
    for pattern, replacement in NORMALISE:
        line = pattern.sub(replacement, line)
    return line


def demo_block(n: int) -> list[str]:
    """The lines of the ``n``-th fenced block under "## The demo" (0: the transcript, 1: the
    log lines)."""
    section = README[README.index("## The demo\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```$", section, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) > n, f"the demo section has no fenced block {n + 1}"
    lines: list[str] = blocks[n].rstrip("\n").split("\n")
    return lines


def chunks(lines: list[str]) -> list[list[str]]:
    """The transcript cut at each ``...`` line: runs of lines that follow one another."""
    out: list[list[str]] = [[]]
    for line in lines:
        if line.strip() == ELIDED:
            out.append([])
        else:
            out[-1].append(line)
    return [c for c in out if c]


def find_in_order(wanted: list[list[str]], real: list[str]) -> list[str]:
    """The chunks of ``wanted`` not found in ``real`` as contiguous runs, in order."""
    missing, at = [], 0
    for chunk in wanted:
        n = len(chunk)
        found = next((i for i in range(at, len(real) - n + 1) if real[i : i + n] == chunk), None)
        if found is None:
            missing.append("\n".join(chunk))
        else:
            at = found + n
    return missing


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    folder = tmp_path_factory.mktemp("readme-demo")
    done = run_cli("demo", cwd=folder, env={"UV_PROJECT": str(ROOT)}, timeout=120)
    assert done.code == 0, done.err[-3000:]
    return folder, done.out, done.err


def test_the_readme_transcript_is_a_real_runs_stdout(demo_run: tuple[Path, str, str]) -> None:
    folder, out, _ = demo_run
    wanted = [[normalise(line) for line in chunk] for chunk in chunks(demo_block(0))]
    real = [normalise(line, folder) for line in out.rstrip("\n").split("\n")]
    missing = find_in_order(wanted, real)
    assert missing == [], "\n".join(["not in the real stdout, normalised:", *real])
    # The transcript shows the run from its first line to its last.
    assert real[0] == wanted[0][0] and real[-1] == wanted[-1][-1]


def test_the_readme_log_lines_are_real_stderr_lines(demo_run: tuple[Path, str, str]) -> None:
    folder, _, err = demo_run
    real = [normalise(line, folder) for line in err.splitlines()]
    for line in demo_block(1):
        shown = normalise(line)
        if shown.endswith(REST):
            head = shown.removesuffix(REST)
            assert any(r.startswith(f"{head} (") for r in real), shown
        else:
            assert shown in real, shown
    about = re.search(r"about (\d+) INFO and WARNING lines", README)
    assert about is not None
    count = sum(1 for r in real if r.startswith(("INFO ", "WARNING ")))
    assert abs(count - int(about.group(1))) <= int(about.group(1)) / 4, count
