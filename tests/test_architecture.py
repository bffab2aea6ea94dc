"""The shape of the code, checked on its source: nothing is imported, nothing runs.

Layers, highest first: bots → tasks → generator → settings. A module may use its own layer
and any lower one (skipping is fine), never a higher one, and never the tests or benches.
Every arrow counts for that rule:
  * `import x` and `from x import y`, wherever they are: at module level, inside a function
    (a lazy import), under `if TYPE_CHECKING:`;
  * a string literal naming one of our modules ("bots.cli", "tasks.core.queue:JobQueue",
    "-m bots.cli"): importlib or a subprocess turns such a string into the same arrow, only
    hidden. A string counts when it holds a dotted path of at least two parts that is a real
    module of ours (so "settings.job_ttl" in a message is not an arrow).

No cycles between modules: the graph of every import that can run — at module level (class
bodies and top-level `if`/`try` included) and inside functions — has no cycle. A lazy import
that closes a loop is a cycle deferred, not removed (metrics ↔ queue was one), so lazy
imports are in the graph; deferring a heavy import (torch, a chat library) stays fine as
long as it points one way. Only imports under `if TYPE_CHECKING:` are left out: they never
run, and naming a type for an annotation is what they are for. They still obey the layers.

Sizes: no module over MAX_MODULE_LINES lines, no function over MAX_FUNCTION_LINES lines
(decorators not counted, nested functions counted in their parent too). One exemption: a
function that is mostly one data literal (a dict, list, tuple or set whose lines are more
than LITERAL_SHARE of the function's), such as a table of options; splitting a table only to
satisfy a line count makes it harder to read.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"settings": 0, "generator": 1, "tasks": 2, "bots": 3}  # higher may use lower
NEVER_IMPORTED = {"tests", "bench"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
LITERAL_SHARE = 0.8

_OURS = "|".join(sorted({*LAYERS, *NEVER_IMPORTED}))
_DOTTED = re.compile(rf"(?<![\w.])(?:{_OURS})(?:\.[A-Za-z_]\w*)+")
_RUN_MODULE = re.compile(rf"-m\s+((?:{_OURS})(?:\.[A-Za-z_]\w*)*)")


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    line: int
    how: str  # "import", "lazy import", "type-checking import", "string"

    def __str__(self) -> str:
        return f"{self.source}:{self.line} → {self.target} ({self.how})"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path
            for package in LAYERS for path in sorted((ROOT / package).rglob("*.py"))
            if "__pycache__" not in path.parts}


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _longest_module(dotted: str) -> str:
    """`dotted` cut down to the longest prefix that is a module of ours (else unchanged)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return dotted


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _Imports(ast.NodeVisitor):
    """Collects the arrows of one module, each marked by where it sits."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.arrows: list[Arrow] = []
        self._functions = 0
        self._type_checking = 0

    def _how(self) -> str:
        if self._type_checking:
            return "type-checking import"
        return "lazy import" if self._functions else "import"

    def _add(self, target: str, line: int, how: str | None = None) -> None:
        if target.split(".")[0] in {*LAYERS, *NEVER_IMPORTED}:
            self.arrows.append(Arrow(self.module, target, line, how or self._how()))

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._functions += 1
        self.generic_visit(node)
        self._functions -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self._type_checking += 1
        for child in node.body:
            self.visit(child)
        self._type_checking -= 1
        for child in node.orelse:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(_longest_module(alias.name), node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            anchor = self.package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            self._add(submodule if submodule in MODULES else _longest_module(base), node.lineno)

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, str):
            return
        named = {_longest_module(m.group(1)) for m in _RUN_MODULE.finditer(node.value)}
        for match in _DOTTED.finditer(node.value):
            target = _longest_module(match.group(0))
            if target.count(".") >= 1 and target in MODULES:
                named.add(target)
        for target in sorted(named):
            self._add(target, node.lineno, "string")


def _arrows(module: str) -> list[Arrow]:
    visitor = _Imports(module, MODULES[module].name == "__init__.py")
    visitor.visit(TREES[module])
    return visitor.arrows


ARROWS = {module: _arrows(module) for module in MODULES}


def _layer(module: str) -> int:
    return LAYERS.get(module.split(".")[0], -1)


def test_the_packages_are_found() -> None:
    assert {"bots.cli", "tasks.names", "generator.engine", "settings"} <= MODULES.keys()
    imports = {a.target for a in ARROWS["tasks.worker.celery_tasks"]}
    assert {"tasks.core.delivery", "generator.engine"} <= imports


def test_arrows_point_down_the_layers() -> None:
    wrong = [str(arrow) for arrows in ARROWS.values() for arrow in arrows
             if arrow.target.split(".")[0] in NEVER_IMPORTED
             or _layer(arrow.target) > _layer(arrow.source)]
    assert not wrong, "imports against bots → tasks → generator → settings:\n" + "\n".join(wrong)


def test_strings_naming_modules_are_seen() -> None:
    source = 'CMD = ["python", "-m", "bots.cli"]\nX = "-m bots.cli"\nY = "bots.web.app:create"\n'
    visitor = _Imports("tasks.example", False)
    visitor.visit(ast.parse(source))
    assert [(a.target, a.how) for a in visitor.arrows] == [
        ("bots.cli", "string"), ("bots.cli", "string"), ("bots.web.app", "string")]


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm, iterative so deep graphs cannot hit the recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.get(node, ()):
                    yield sorted(component)


def test_imports_have_no_cycle() -> None:
    runs = {"import", "lazy import"}
    graph = {module: {a.target for a in arrows if a.how in runs and a.target in MODULES}
             for module, arrows in ARROWS.items()}
    cycles = list(_cycles(graph))
    assert not cycles, "import cycles:\n" + "\n".join(" ↔ ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(_cycles(graph)) == [["a", "b", "c"], ["e"]]


def test_modules_are_small() -> None:
    lines = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    large = [f"{module}: {count} lines" for module, count in lines.items()
             if count > MAX_MODULE_LINES]
    assert not large, f"modules over {MAX_MODULE_LINES} lines:\n" + "\n".join(large)


def _span(node: ast.stmt | ast.expr) -> int:
    return (node.end_lineno or node.lineno) - node.lineno + 1


def mostly_one_literal(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True when one dict/list/tuple/set literal covers over LITERAL_SHARE of the lines."""
    literals = [node for node in ast.walk(function)
                if isinstance(node, (ast.Dict, ast.List, ast.Tuple, ast.Set))]
    largest = max((_span(node) for node in literals), default=0)
    return largest > LITERAL_SHARE * _span(function)


def test_functions_are_short() -> None:
    long = []
    for module, tree in TREES.items():
        for node in ast.walk(tree):
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and _span(node) > MAX_FUNCTION_LINES and not mostly_one_literal(node)):
                long.append(f"{module}:{node.lineno} {node.name}: {_span(node)} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)


def test_the_literal_exemption_is_narrow() -> None:
    table = "def options():\n    return {\n" + "".join(f"        'k{i}': {i},\n" for i in range(70)) \
        + "    }\n"
    steps = "def steps():\n" + "".join(f"    x{i} = [{i}]\n" for i in range(70))
    half = ("def half():\n" + "".join(f"    y{i} = {i}\n" for i in range(30))
            + "    return [\n" + "".join(f"        {i},\n" for i in range(40)) + "    ]\n")
    verdicts = {}
    for source in (table, steps, half):
        function = ast.parse(source).body[0]
        assert isinstance(function, ast.FunctionDef)
        verdicts[function.name] = mostly_one_literal(function)
    assert verdicts == {"options": True, "steps": False, "half": False}


def test_a_worker_imports_only_the_chat_libraries_it_delivers_to() -> None:
    """The CLI's adapter factories are lazy: a generate worker (which only asks whether a
    platform wants deliveries) loads no chat library, a webhook delivery loads no Slack or
    Discord, a Slack delivery loads Slack only."""
    script = textwrap.dedent("""
        import sys
        from bots.adapters import delivery_adapters
        from settings import Settings
        import tasks.worker.main

        def loaded():
            return sorted({m.split(".")[0] for m in sys.modules} & {"slack_sdk", "discord"})

        registry = delivery_adapters()
        seen = [registry.has_adapter("slack"), registry.has_adapter("web"), loaded()]
        registry.create("webhook", Settings())
        seen.append(loaded())
        registry.create("slack", Settings())
        seen.append(loaded())
        print(seen)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "SLACK_BOT_TOKEN": "xoxb-test"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, False, [], [], ['slack_sdk']]"
