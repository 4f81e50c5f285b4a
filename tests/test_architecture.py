"""The architecture, read from the import graph (ast, no imports run): the direction of imports
the README's Architecture section draws, and the boundaries only one package may cross."""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Code that ships (tests and benchmarks may import anything).
SHIPPED = ("eventlog", "projections", "commands", "gemini_emulator", "scripts", "replay.py")
#: Entry points: the only places that may import the CLI.
ENTRY_POINTS = ("commands.__main__", "replay", "scripts.")
#: Each layer may import its own and lower layers only (the README's arrows).
LAYERS = {
    "eventlog": 0,
    "projections": 1,
    "commands.config": 2,
    "commands.models": 2,
    "commands.errors": 2,
    "commands.actor": 2,
    "commands.schema": 2,
    "commands.pages": 2,
    "commands.installation": 2,
    "commands.rules": 3,
    "commands.gemini": 3,
    "commands.worker": 4,
    "commands.views": 4,
    "commands.actions": 4,
    "commands.integrations": 5,
    "commands.cli": 6,
}
#: What a pure rule may not import: storage, the network, the file system, processes, clocks.
IO_MODULES = (
    "apsw",
    "psycopg",
    "sqlite3",
    "google.genai",
    "httpx",
    "socket",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "io",
    "subprocess",
    "urllib",
    "http",
    "threading",
    "concurrent",
    "time",
    "commands.worker",
    "commands.gemini.sdk",
    "projections",
)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _shipped_files() -> Iterator[Path]:
    for top in SHIPPED:
        path = ROOT / top
        if path.is_file():
            yield path
        else:
            yield from sorted(path.rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Every module ``path`` imports (absolute names), with its line, lazy imports included."""
    tree = ast.parse(path.read_text(), str(path))
    package = _module_name(path).rpartition(".")[0] if path.name != "__init__.py" else ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _module_name(path) if path.name == "__init__.py" else package
                anchor = ".".join(anchor.split(".")[: len(anchor.split(".")) - node.level + 1])
                base = f"{anchor}.{base}".strip(".")
            yield base, node.lineno
            for alias in node.names:  # ``from commands import cli`` imports commands.cli
                yield f"{base}.{alias.name}", node.lineno


GRAPH = {_module_name(p): [(name, line) for name, line in _imports(p)] for p in _shipped_files()}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer(name: str) -> int | None:
    best = max((p for p in LAYERS if _within(name, p)), key=len, default=None)
    return LAYERS[best] if best is not None else None


def _violations(rule: str) -> list[str]:
    out = []
    for module, imports in GRAPH.items():
        for name, line in imports:
            if _breaks(rule, module, name):
                out.append(f"{module}:{line} imports {name}")
    return sorted(set(out))


def _breaks(rule: str, module: str, name: str) -> bool:
    if rule == "cli":
        return (
            _within(name, "commands.cli")
            and not _within(module, "commands.cli")
            and not any(module == e or module.startswith(e) for e in ENTRY_POINTS)
        )
    if rule == "pure rules":
        return _within(module, "commands.rules") and any(_within(name, m) for m in IO_MODULES)
    if rule in ("apsw", "psycopg"):  # the storage drivers: the log and its projections only
        return _within(name, rule) and not (
            _within(module, "eventlog") or _within(module, "projections")
        )
    if rule == "google.genai":
        return _within(name, "google.genai") and module != "commands.gemini.sdk"
    if rule == "datasette":  # the optional extra `dashboard`: the core never imports it
        return any(_within(name, m) for m in DASHBOARD_MODULES) and module != DASHBOARD
    if rule == "layers":
        mine, theirs = _layer(module), _layer(name)
        return mine is not None and theirs is not None and theirs > mine
    raise AssertionError(rule)


#: The dashboard extra's libraries, and the one module that may import them.
DASHBOARD_MODULES = ("datasette", "datasette_dashboards", "uvicorn")
DASHBOARD = "commands.integrations.dashboard"


@pytest.mark.parametrize(
    "rule", ["cli", "pure rules", "apsw", "psycopg", "google.genai", "datasette", "layers"]
)
def test_no_module_crosses_a_boundary(rule: str) -> None:
    assert _violations(rule) == []


def test_the_graph_sees_what_it_checks() -> None:
    """The checks above would catch a breach: the graph has the imports it must have."""
    assert any(_within(n, "google.genai") for n, _ in GRAPH["commands.gemini.sdk"])
    assert any(_within(n, "apsw") for n, _ in GRAPH["eventlog.store"])
    assert any(_within(n, "datasette") for n, _ in GRAPH[DASHBOARD])
    assert _breaks("datasette", "commands.cli.dashboard", "datasette.app")
    assert any(_within(n, "psycopg") for n, _ in GRAPH["eventlog.postgres"])
    assert _breaks("psycopg", "commands.views.status", "psycopg")
    assert any(_within(n, "commands.cli") for n, _ in GRAPH["commands.__main__"])
    assert _breaks("pure rules", "commands.rules.x", "os")
    assert _breaks("layers", "projections.x", "commands.worker.cycle")
    assert not _breaks("layers", "commands.cli.app", "eventlog.store")


PACKAGES = sorted(
    _module_name(p)
    for p in (ROOT / "commands").rglob("__init__.py")
    if p.parent != ROOT / "commands"
)


@pytest.mark.parametrize("package", PACKAGES)
def test_each_room_says_its_role_and_lists_its_public_names(package: str) -> None:
    module = importlib.import_module(package)
    doc = (module.__doc__ or "").strip()
    assert doc and doc.splitlines()[0].endswith((".", ":")), f"{package}: no one-line role"
    public = module.__all__
    folder = ROOT / package.replace(".", "/")
    modules = sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    for name in public:
        assert hasattr(module, name) or name in modules, f"{package}.__all__ names {name}"
    if package != "commands.cli":  # the CLI's __all__ names its entry points and families
        assert sorted(public) == modules, f"{package}.__all__ should list its modules"


#: Where no SQL may be written and the store's connection is never touched: the application.
APPLICATION = ("commands", "scripts", "replay.py")


def _application_lines() -> Iterator[tuple[str, int, str]]:
    for path in _shipped_files():
        rel = str(path.relative_to(ROOT))
        if rel.startswith(APPLICATION):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                yield rel, i, line


def test_no_sql_outside_the_log_and_the_projections() -> None:
    """Reads go through ``projections.queries`` (``grep -rn SELECT commands/`` finds nothing)."""
    assert [f"{f}:{i}" for f, i, line in _application_lines() if "SELECT" in line] == []


def test_the_store_keeps_its_connection_private() -> None:
    found = [f"{f}:{i}" for f, i, line in _application_lines() if re.search(r"\._?conn\b", line)]
    assert found == []


# --- sizes, and who makes events ----------------------------------------------------------------

#: No module of ``commands/`` over this many lines, no function over ``MAX_FUNCTION_LINES``.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
#: ``commands/worker/cycle.py`` only sequences and schedules the stages.
SEQUENCER, MAX_SEQUENCER_LINES = "commands/worker/cycle.py", 300
#: Where an event may be constructed: the pure decisions, and the store itself.
EVENT_MAKERS = ("commands.rules", "eventlog")


def _event_names() -> frozenset[str]:
    from eventlog import events

    return frozenset(
        name
        for name, value in vars(events).items()
        if isinstance(value, type) and issubclass(value, events.Event) and value is not events.Event
    )


EVENTS = _event_names()


def _oversized(text: str, where: str) -> list[str]:
    """``where`` if ``text`` is over ``MAX_MODULE_LINES`` lines, and each function of it over
    ``MAX_FUNCTION_LINES`` (its decorators, signature and body)."""
    out = []
    lines = len(text.splitlines())
    if lines > MAX_MODULE_LINES:
        out.append(f"{where}: {lines} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - first + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return out


def _constructions(text: str, where: str) -> list[str]:
    """Each call in ``text`` that constructs an event (by its name, an alias of it, or
    ``events.<Name>``)."""
    tree = ast.parse(text)
    aliases = {
        alias.asname or alias.name: alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "eventlog.events"
        for alias in node.names
    }
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        fn = node.func
        name = aliases.get(fn.id, fn.id) if isinstance(fn, ast.Name) else None
        if isinstance(fn, ast.Attribute):
            name = fn.attr
        if name in EVENTS:
            out.append(f"{where}:{node.lineno} {name}(...)")
    return out


def test_no_module_of_commands_is_too_long_nor_any_function() -> None:
    found = [
        problem
        for path in sorted((ROOT / "commands").rglob("*.py"))
        for problem in _oversized(path.read_text(), str(path.relative_to(ROOT)))
    ]
    assert found == []


def test_the_cycle_only_sequences_its_stages() -> None:
    assert len((ROOT / SEQUENCER).read_text().splitlines()) <= MAX_SEQUENCER_LINES


def test_events_are_constructed_in_rules_and_the_store_only() -> None:
    found = [
        problem
        for path in _shipped_files()
        if not any(_within(_module_name(path), m) for m in EVENT_MAKERS)
        for problem in _constructions(path.read_text(), _module_name(path))
    ]
    assert found == []


def test_the_size_and_event_checks_catch_a_probe() -> None:
    """The checks above would catch a breach: probes that break each rule are found."""
    body = "\n".join(f"    x = {i}" for i in range(MAX_FUNCTION_LINES))
    assert _oversized(f"def f() -> None:\n{body}\n", "probe") == ["probe:1 f: 81 lines"]
    assert _oversized(f"@d\nasync def f() -> None:\n{body}\n", "p") == ["p:2 f: 82 lines"]
    assert _oversized("x = 1\n" * (MAX_MODULE_LINES + 1), "probe") == ["probe: 501 lines"]
    assert _oversized(f"def f() -> None:\n{body[: body.rindex(chr(10))]}\n", "ok") == []
    assert "RunStarted" in EVENTS and "RecordValidated" in EVENTS and "Event" not in EVENTS
    made = "from eventlog.events import RunStarted as Started\nx = Started(run_id='r')\n"
    assert _constructions(made, "probe") == ["probe:2 RunStarted(...)"]
    assert _constructions("import eventlog.events as e\ne.FileDeleted(file_name='f')\n", "p") == [
        "p:2 FileDeleted(...)"
    ]
    assert _constructions("isinstance(e, RunStarted)\nRunStarted\n", "probe") == []
