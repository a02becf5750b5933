"""The shape of the house, checked by scanning the source (no imports): no import cycle, the paper's and the
machinery's modules never reach up into the study layer, and every function fits on a screen."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("effnetv2_mini", "reproduce")
MAX_FUNCTION_LINES = 60
# The package facade: `effnetv2_mini/__init__.py` re-exports names lazily for users, and modules read its
# `__version__`; it is no layer of its own.
FACADE = "effnetv2_mini"
# Lower layers never import from these (they may be imported by them).
UPPER = ("effnetv2_mini.study", "effnetv2_mini.cli", "reproduce")
LOWER = ("effnetv2_mini.paper", "effnetv2_mini.data", "effnetv2_mini.engine")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """Every project module that ``path`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {target for target in targets if target in known}
    return found - {name}


def import_graph() -> dict[str, set[str]]:
    modules = source_modules()
    known = set(modules)
    return {name: imported_modules(name, path, known) - {FACADE} for name, path in modules.items() if name != FACADE}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_chain():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_scanner_sees_relative_absolute_and_function_level_imports(tmp_path):
    package = tmp_path / "effnetv2_mini"
    (package / "data").mkdir(parents=True)
    (package / "data" / "cache.py").write_text("def f():\n    from .datasets import x\n")
    (package / "data" / "datasets.py").write_text("from effnetv2_mini.data import cache\n")
    known = {"effnetv2_mini.data.cache", "effnetv2_mini.data.datasets", "effnetv2_mini.data"}
    assert imported_modules("effnetv2_mini.data.cache", package / "data" / "cache.py", known) == {"effnetv2_mini.data.datasets"}
    assert imported_modules("effnetv2_mini.data.datasets", package / "data" / "datasets.py", known) == {
        "effnetv2_mini.data.cache"}


def test_no_module_imports_one_that_imports_it_back():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_paper_data_and_engine_never_import_the_study_layer():
    wrong = sorted((module, target) for module, targets in import_graph().items() if module.startswith(LOWER)
                   for target in targets if target.startswith(UPPER))
    assert not wrong, "lower layers import upper ones: " + "; ".join(f"{a} -> {b}" for a, b in wrong)


def test_the_transfer_recipes_import_only_the_paper_layer():
    """paper/transfer.py holds the recipes and rules of sections 5.2 and 5.3; data, devices and
    processes are the engine's (engine/finetune.py) and the study's."""
    imported = import_graph()["effnetv2_mini.paper.transfer"]
    outside = sorted(t for t in imported if not t.startswith("effnetv2_mini.paper"))
    assert not outside, f"effnetv2_mini.paper.transfer imports {outside}"


def long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    found = []
    for path in source_modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > limit:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


def test_every_function_fits_on_a_screen():
    found = long_functions()
    assert not found, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(found)


def test_the_length_check_sees_a_long_function():
    assert long_functions(limit=3), "every module has functions over 3 lines: the scan must find them"
