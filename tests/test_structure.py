"""The shape of the code, checked from its source with `ast` (nothing is imported):

* no import cycle among our modules (function-level imports count: they are still a dependency);
* the floors: models/ and clients/ import nothing above them, service/ nothing of benchmarks/;
* the environment is read in one module per installable package (service/config.py for the
  service, fgrm_client/_proto.py for the client, which a trainer installs alone);
* no function or method is longer than MAX_FUNCTION_LINES (issue 13): a long one is split into
  steps with one job each, so that each can be read, and tested, on its own.

Imports under `if TYPE_CHECKING:` are left out: they never run, and typing seams may point up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = {"models": REPO / "models", "service": REPO / "service", "benchmarks": REPO / "benchmarks",
         "fgrm_client": REPO / "clients" / "fgrm_client"}
# No known exceptions: every import inside models/ (and between the packages) points one way.
ALLOWED_EDGES: set[tuple[str, str]] = set()
# Modules that may touch os.environ, and why: the one reader per package, the CLI handing the
# environment to it, and the tooling that builds a child process's environment from its own.
ENV_READERS = {
    "service.config": "the service's settings",
    "service.cli": "passes os.environ to Settings.from_env and on to `bentoml serve`",
    "benchmarks.launch": "a server subprocess's environment: this one's minus FGRM_*",
    "fgrm_client._proto": "the client package's one reader (FGRM_PROTO, XDG_CACHE_HOME)",
}


def _modules() -> dict[str, Path]:
    out = {}
    for top, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [top, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" or (
        isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking_only(node)
            for child in node.body for n in ast.walk(child)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module; `from mod import name`, the module
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.startswith("clients.fgrm_client"):
                t = t[len("clients."):]
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles(graph):
    pruned = {v: {w for w in ws if (v, w) not in ALLOWED_EDGES} for v, ws in graph.items()}
    assert _cycles(pruned) == []


def test_the_floors_only_import_downwards(graph):
    above = {"models": ("service", "benchmarks", "fgrm_client"), "fgrm_client": ("models", "service", "benchmarks"),
             "service": ("benchmarks",)}
    wrong = [(v, w) for v, ws in graph.items() for w in ws
             if w.split(".")[0] in above.get(v.split(".")[0], ())]
    assert wrong == []


def test_the_environment_is_read_in_one_module_per_package():
    readers = set()
    for name, path in _modules().items():
        src = path.read_text()
        if "os.environ" in src or "getenv(" in src:
            readers.add(name)
    assert readers <= set(ENV_READERS), sorted(readers - set(ENV_READERS))


MAX_FUNCTION_LINES = 60
SHAPED_DIRS = ("service", "models", "clients", "benchmarks")
# "path:qualified.name" -> why it may be longer. Empty: an argument table too is a function of
# its own (build_parser / parse_args) and fits; add an entry only with a reason.
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}


def _functions(tree: ast.AST, prefix: str = ""):
    """(qualified name, node) of every function and method in `tree`, nested ones included."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            name = prefix + child.name
            if not isinstance(child, ast.ClassDef):
                yield name, child
            yield from _functions(child, name + ".")
        else:
            yield from _functions(child, prefix)


def _long_functions(source: str, limit: int) -> dict[str, int]:
    """Qualified name -> lines (the `def` line to the last line of its body) of the functions over `limit`."""
    return {name: n for name, node in _functions(ast.parse(source))
            if (n := node.end_lineno - node.lineno + 1) > limit}


def _long_functions_in_repo(limit: int) -> dict[str, int]:
    out = {}
    for top in SHAPED_DIRS:
        for path in sorted((REPO / top).rglob("*.py")):
            rel = path.relative_to(REPO)
            if {"tests", "_proto", "__pycache__"} & set(rel.parts):  # _proto: generated gRPC stubs
                continue
            out.update({f"{rel}:{name}": n for name, n in _long_functions(path.read_text(), limit).items()})
    return out


def test_the_length_finder_finds_a_long_method():
    body = "\n".join(f"        x = {i}" for i in range(60))
    source = f"class A:\n    def long(self):\n{body}\n\n    def short(self):\n        pass\n"
    assert _long_functions(source, 60) == {"A.long": 61}
    assert _long_functions(source, 61) == {}


def test_no_function_is_longer_than_the_limit():
    found = _long_functions_in_repo(MAX_FUNCTION_LINES)
    too_long = [f"{name} ({n} lines)" for name, n in sorted(found.items()) if name not in LONG_FUNCTIONS_ALLOWED]
    assert not too_long, (f"over {MAX_FUNCTION_LINES} lines, split them into steps with one job each:\n  "
                          + "\n  ".join(too_long))
    stale = sorted(set(LONG_FUNCTIONS_ALLOWED) - set(found))
    assert not stale, f"no longer over the limit (or gone), remove from LONG_FUNCTIONS_ALLOWED: {stale}"
