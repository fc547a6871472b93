"""The layering of docs/ARCHITECTURE.md, from the imports themselves.

metrics_protocol is at the bottom and imports nothing of the project; metrics_server and
metrics_tui stand on it and neither imports the other, except the monitor's ``--demo``, which
imports the server lazily; no module imports one that (directly or not) imports it back.
"""

from __future__ import annotations

import ast
import importlib.metadata
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PROJECT = ("metrics_protocol", "metrics_server", "metrics_tui")
#: The one import of the server in the monitor, inside the --demo path.
DEMO_IMPORT = ("metrics_tui.cli", "metrics_server.app")


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the module imported (a submodule where ``from package import module``)
    lazy: bool  # inside a function: runs only when called
    line: int


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[Import] = []

    def visit(node: ast.AST, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                out.extend(Import(name, a.name, inner, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for a in child.names:
                    sub = f"{base}.{a.name}"
                    target = sub if sub in modules else base
                    out.append(Import(name, target, inner, child.lineno))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return out


def _all_imports() -> list[Import]:
    modules = _modules()
    return [i for name, path in modules.items() for i in _imports(name, path, modules)]


def _top(module: str) -> str:
    return module.partition(".")[0]


def test_the_parser_sees_what_it_must() -> None:
    """The checks below are only as good as the import graph: spot-check it."""
    found = {(i.source, i.target, i.lazy) for i in _all_imports()}
    assert ("metrics_server.hub", "metrics_protocol.wire", False) in found
    assert ("metrics_server.hub", "metrics_server.service", False) in found  # relative
    assert ("metrics_tui.app", "metrics_tui.formatting", False) in found  # from pkg import mod
    assert (*DEMO_IMPORT, True) in found


def test_the_protocol_package_imports_only_itself_and_the_standard_library() -> None:
    bad = [
        i
        for i in _all_imports()
        if _top(i.source) == "metrics_protocol"
        and _top(i.target) != "metrics_protocol"
        and _top(i.target) not in sys.stdlib_module_names
    ]
    assert bad == []


def test_neither_program_imports_the_other_but_for_the_demo() -> None:
    crossing = [
        i
        for i in _all_imports()
        if {_top(i.source), _top(i.target)} == {"metrics_server", "metrics_tui"}
    ]
    assert {(i.source, i.target, i.lazy) for i in crossing} == {(*DEMO_IMPORT, True)}


def test_no_import_cycle_between_modules() -> None:
    graph: dict[str, set[str]] = {}
    for i in _all_imports():
        if _top(i.target) in PROJECT and i.target != i.source:
            graph.setdefault(i.source, set()).add(i.target)
    path: list[str] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def walk(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)):
            raise AssertionError("import cycle: " + " -> ".join(cycle))


def _top_imports(path: Path) -> set[str]:
    """The top-level names a file imports (absolute imports; relative ones stay inside)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(_top(a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(_top(node.module))
    return names


def test_tests_stand_on_the_benches_and_the_benches_on_the_programs() -> None:
    """ARCHITECTURE's Tests and Benchmarks: the tests import the bench package (its harness),
    the benches never import a test, and the programs import neither."""
    root = SRC.parent
    rules = [(SRC, {"bench", "tests", "conftest"}), (root / "bench", {"tests", "conftest"})]
    bad = [
        (str(path.relative_to(root)), sorted(_top_imports(path) & banned))
        for where, banned in rules
        for path in sorted(where.rglob("*.py"))
        if _top_imports(path) & banned
    ]
    assert bad == []
    assert "bench" in _top_imports(root / "tests" / "conftest.py")


# --------------------------------------------------------------------------- at run time

HIDE_SERVER = """
import sys

class HideServer:
    def find_spec(self, name, path=None, target=None):
        if name == "metrics_server" or name.startswith("metrics_server."):
            raise ImportError(f"{name} is hidden")
        return None

sys.meta_path.insert(0, HideServer())
"""


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=SRC.parent
    )


def test_the_monitor_imports_without_the_server() -> None:
    done = _python(
        HIDE_SERVER
        + "import metrics_tui, metrics_tui.app, metrics_tui.cli, metrics_tui.client\n"
        + "import metrics_tui.once, metrics_tui.wire, metrics_tui.widgets.cards\n"
        + "assert not [m for m in sys.modules if m.startswith('metrics_server')]\n"
        + "print(metrics_tui.__version__)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == importlib.metadata.version("metrics-tui")


def test_demo_without_the_server_says_so_in_one_line() -> None:
    done = _python(
        HIDE_SERVER + "from metrics_tui.cli import main\nsys.exit(main(['--demo', '--once']))\n"
    )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("metrics-tui: --demo needs metrics-server, which is not installed")


def test_the_version_does_not_depend_on_the_distribution_name() -> None:
    """Both programs give the one version even where no distribution metadata answers (a
    source tree, a vendored copy, a distribution under another name)."""
    done = _python(
        "import importlib.metadata as md\n"
        "def version(name):\n"
        "    raise md.PackageNotFoundError(name)\n"
        "md.version = version\n"
        "import metrics_server, metrics_tui\n"
        "print(metrics_server.__version__, metrics_tui.__version__)\n"
    )
    assert done.returncode == 0, done.stderr
    installed = importlib.metadata.version("metrics-tui")
    assert done.stdout.split() == [installed, installed]
    cli = subprocess.run(
        [sys.executable, "-m", "metrics_tui", "--version"], capture_output=True, text=True
    )
    assert cli.stdout.strip() == f"metrics-tui {installed}"
