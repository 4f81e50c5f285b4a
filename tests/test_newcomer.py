"""A newcomer's first hour (issue 22's acceptance): every command the README's first screen and
the demo's closing lines print, run exactly as printed, exits 0.

* The README's opening fenced block is read line by line (its ``#`` comments dropped) and each
  line run as a shell would split it, from a fresh folder, with ``$UV_PROJECT`` naming this
  checkout: for uv that is the same as typing it at the checkout's root, without the demo
  writing ``./demo`` into the checkout. ``uv run pytest`` is the exception: run whole it would run
  this test again, so it is checked to resolve instead, ``uv run pytest --co -q`` on one file
  (the suite's own options kept, collection in one process: ``-n0``), from the checkout's root.
* The demo's closing lines (``explore: ...``, ``dashboard: ...``) are run as printed, from the
  same folder. Each is typed with the prefix :func:`commands.installation.command_prefix` gives a
  checkout under uv (``uv run python -m commands``). The dashboard serves until Ctrl-C: it must
  announce itself, answer its page, and exit 0 on SIGINT (sent to its process group, as a
  terminal's Ctrl-C is; SIGINT is restored to its default action in the child, so this holds
  however the suite itself was started). ``--open`` opens a browser through ``$BROWSER``, set
  here to ``true`` (a program that does nothing). Its port is the default, 8001: if another
  program holds it, the test waits for it, up to a minute.

Each runs in a newcomer's shell (:func:`env`): the checkout's ``.venv`` neither active nor on
the PATH, so a hint printed as a bare ``python -m commands`` fails here as it did when pasted
(``No module named 'msgspec'`` in the checkout). Run the suite as the README says (``uv run
pytest``): ``uv`` must be on the PATH.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from commands.installation import Installation, command_prefix
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
#: How long the dashboard may take to start, and to wait for its port.
START_SECONDS = 60


def first_screen() -> list[list[str]]:
    """The README's opening fenced block: each line's words, as a shell splits them."""
    body = README[README.index("```") :].split("\n", 1)[1]
    block = body[: body.index("```")]
    return [words for line in block.splitlines() if (words := shlex.split(line, comments=True))]


#: What ``uv run pytest`` put in this process's environment, and a newcomer's shell has not.
NOT_IN_A_SHELL = ("GEMINI_BATCHES_CONFIG", "VIRTUAL_ENV", "UV", "UV_RUN_RECURSION_DEPTH")


def env() -> dict[str, str]:
    """A newcomer's shell: the checkout's ``.venv`` neither active nor on the PATH (so a bare
    ``python`` is not the project's), ``$UV_PROJECT`` naming the checkout, ``$BROWSER`` a no-op."""
    out = {k: v for k, v in os.environ.items() if k not in NOT_IN_A_SHELL}
    venv = (ROOT / ".venv").resolve()
    path = [p for p in out.get("PATH", "").split(os.pathsep) if not _inside(Path(p), venv)]
    return {**out, "PATH": os.pathsep.join(path), "UV_PROJECT": str(ROOT), "BROWSER": "true"}


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


def run(words: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``words`` as a shell runs them, found on the newcomer's PATH."""
    found = shutil.which(words[0], path=env()["PATH"])
    assert found, f"{words[0]} is not on the PATH: {shlex.join(words)} cannot run as printed"
    return subprocess.run(
        words, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout
    )


def test_the_first_screen_is_the_demo_and_the_test_suite() -> None:
    """The commands the tests below run; a new one on the first screen is to be run here too."""
    assert first_screen() == [
        ["uv", "run", "python", "-m", "commands", "demo"],
        ["uv", "run", "pytest"],
    ], "the README's first screen changed: run its new commands in this module too"


def test_uv_run_pytest_resolves() -> None:
    """``uv run pytest`` from the checkout: collects (not runs) one file of the suite."""
    assert ["uv", "run", "pytest"] in first_screen()
    one = ["--co", "-q", "-n0", "-p", "no:cacheprovider", "tests/test_packaging.py"]
    done = run(["uv", "run", "pytest", *one], ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 tests collected" in done.stdout


def closing_lines(stdout: str) -> dict[str, str]:
    """The demo's last lines that are commands: ``label: <command>``."""
    lines = stdout.rstrip("\n").splitlines()
    tail = lines[next(i for i, line in enumerate(lines) if line.startswith("report: ")) + 1 :]
    return dict(line.split(": ", 1) for line in tail)


def serve_until_ctrl_c(words: list[str], cwd: Path) -> None:
    """Start the printed dashboard command, fetch its page, Ctrl-C it; assert exit 0."""
    assert shutil.which(words[0], path=env()["PATH"]), f"{words[0]} is not on the PATH"
    deadline = time.monotonic() + START_SECONDS
    while True:
        proc = subprocess.Popen(
            words,
            cwd=cwd,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert proc.stdout is not None and proc.stderr is not None
        ready = proc.stdout.readline()  # the line it prints once serving, or "" if it exits
        if ready or time.monotonic() > deadline:
            break
        err = proc.stderr.read()
        proc.wait()
        if "is in use" not in err:  # the default port held by someone else: wait for it
            raise AssertionError(f"dashboard exited {proc.returncode}: {err}")
        time.sleep(2)
    try:
        assert ready.startswith("dashboard: http://127.0.0.1:8001/"), ready + proc.stderr.read()
        url = ready.split()[1]
        with urllib.request.urlopen(url, timeout=30) as page:
            assert page.status == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, proc.stderr.read()


def test_the_demo_and_its_closing_lines_run_as_printed(tmp_path: Path) -> None:
    (demo,) = [words for words in first_screen() if words[-1] == "demo"]
    done = run(demo, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "demo" / "gemini_batches.toml").is_file()

    hints = closing_lines(done.stdout)
    assert set(hints) == {"explore", "dashboard"}, hints
    explore = run(shlex.split(hints["explore"]), tmp_path)
    assert explore.returncode == 0, f"{hints['explore']}: {explore.stderr}"
    assert "dead letters           1" in explore.stdout
    serve_until_ctrl_c(shlex.split(hints["dashboard"]), tmp_path)

    # Both typed with the prefix the one function gives a checkout under uv.
    prefix = command_prefix(
        Installation("uv-checkout", ROOT), cwd=tmp_path, environ={"UV_PROJECT": str(ROOT)}
    )
    assert prefix == "uv run python -m commands"
    for command in hints.values():
        assert command.startswith(f"{prefix} --config demo/gemini_batches.toml "), command
