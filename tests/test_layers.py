"""The package layout: layers import only downwards, and no module imports itself in a circle.

Read from the source with `ast` (nothing is imported), so a new import that breaks the seam
between files and runtimes fails here. Imports under `if TYPE_CHECKING:` are annotations only
and do not count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparsebench"

# lowest first; a module may import from its own layer and the layers below it
LAYERS = [
    ("base", ["errors", "registry", "options", "device", "io", "_optional", "environment",
              "results", "metadata", "inputs", "progress"]),
    ("adapters", ["adapt"]),
    ("building blocks", ["zoo", "data", "masks", "measure", "arch", "checkpoint", "verify",
                         "prune", "train", "hf"]),
    ("torch files", ["load"]),
    ("runtimes", ["runtimes"]),
    ("formats", ["formats"]),
    ("artifact seam", ["artifact"]),
    ("pipeline", ["export", "profiler", "compare", "check", "bench"]),
    ("reports", ["report"]),
    ("recipes", ["reproduce"]),
    ("interface", ["cli", "commands", "__main__", "__init__"]),
]  # fmt: skip


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The sparsebench modules `path` imports (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            base = _resolve(node, package)
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("sparsebench."):
                    found.add(alias.name.removeprefix("sparsebench."))
    return {m for m in found if m in modules}


def _resolve(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return (node.module or "").removeprefix("sparsebench").lstrip(".")
    parts = package.split(".") if package else []
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def _graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(p) for p in paths} | {""}
    return {_module_name(p): _imports(p, modules) - {""} for p in paths}


def _layer(module: str) -> int:
    top = module.split(".")[0] if module != "__init__" else "__init__"
    for index, (_, names) in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"module sparsebench.{module} belongs to no layer in LAYERS")


GRAPH = _graph()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_every_module_imports_only_its_layer_or_below(module):
    upward = [t for t in GRAPH[module] if _layer(t) > _layer(module)]
    names = [f"{t} ({LAYERS[_layer(t)][0]})" for t in sorted(upward)]
    assert not upward, f"{module} ({LAYERS[_layer(module)][0]}) imports upwards: {names}"


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for target in sorted(GRAPH.get(node, ())):
            if state.get(target) == 1:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, [*stack, target])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_the_checker_sees_imports():
    """Guard against a checker that passes because it parses nothing."""
    assert "load" in GRAPH["artifact"] and "formats.base" in GRAPH["formats.csr"]
    assert "artifact" in GRAPH["export"]


def test_a_new_format_or_runtime_needs_only_its_file_and_one_registration(monkeypatch):
    from typer.testing import CliRunner

    from sparsebench.cli import app
    from sparsebench.formats.base import FORMATS, Exporter
    from sparsebench.runtimes import RUNTIMES, Runtime, get_runtime, runtime_for_file

    class NewFormat(Exporter):
        name = "newfmt"

    class NewRuntime(Runtime):
        name, description, accepts, suffixes = "newrt", "a new runtime", ("newfile",), (".new",)

    monkeypatch.setitem(FORMATS._entries, "newfmt", NewFormat())
    monkeypatch.setitem(RUNTIMES._entries, "newrt", NewRuntime())
    assert get_runtime("torch").accepts_format("newfmt")  # eager torch runs it unchanged
    assert isinstance(runtime_for_file(Path("model.new")), NewRuntime)  # load() dispatches
    listing = CliRunner().invoke(app, ["runtimes"]).output
    assert "newfmt" in listing and "newrt: a new runtime" in listing
