"""The shape of the house, checked by scanning the source (no imports): no import cycle, the layers import only
downward (paper < data < engine < study < cli/reproduce), the paper's modules need nothing but torch, torchvision
and the standard library, and every function fits on a screen."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("effnetv2_mini", "reproduce")
MAX_FUNCTION_LINES = 60
# The package facade: `effnetv2_mini/__init__.py` re-exports names lazily for users, and modules read its
# `__version__`; it is no layer of its own.
FACADE = "effnetv2_mini"
# The layers, lowest first: a module may import its own layer and lower ones, never a higher one.
LAYERS = ("paper", "data", "engine", "study", "top")
# The package's top-level modules, placed in a layer each:
TOP_LEVEL = {
    "baselines": "engine",  # torchvision's ResNets for Table 12: machinery around a network that is not the paper's
    "models": "engine",  # any network by name: the paper's builder and the baselines meet here, above paper/
    "measure": "engine",  # parameters, FLOPs, throughput and memory (uses the engine's device helpers)
    "compat": "engine",  # torchvision's weights mapped onto ours (uses the engine's checkpoint loading)
    "argtypes": "engine",  # the range checks of every option: TrainConfig, the CLI, plans and benches share them
    "zoo": "study",  # the model zoo's table: measurements beside the paper's numbers
    "cli": "top",
}
# Imports allowed against the order, each with its reason. None today: keep it so.
EXCEPTIONS: dict[tuple[str, str], str] = {}
PAPER_MAY_IMPORT = {"torch", "torchvision"}  # besides the standard library and paper/ itself


def layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "reproduce":
        return "top"
    return TOP_LEVEL.get(parts[1], parts[1])


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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {name: i for i, name in enumerate(LAYERS)}
    return sorted(f"{module} ({layer(module)}) -> {target} ({layer(target)})"
                  for module, targets in graph.items() for target in targets
                  if rank[layer(module)] < rank[layer(target)] and (module, target) not in EXCEPTIONS)


def test_every_module_imports_only_its_own_layer_and_lower_ones():
    """Module level and inside functions alike (the scanner sees both)."""
    wrong = upward_imports(import_graph())
    assert not wrong, "imports of a higher layer: " + "; ".join(wrong)


def test_the_layer_check_sees_an_upward_import():
    graph = {"effnetv2_mini.paper.nas": {"effnetv2_mini.engine.loop", "effnetv2_mini.paper.configs"},
             "effnetv2_mini.data.loaders": {"effnetv2_mini.engine.distributed"},
             "effnetv2_mini.engine.loop": {"effnetv2_mini.data.loaders", "effnetv2_mini.measure"},
             "effnetv2_mini.measure": {"effnetv2_mini.zoo"}, "reproduce.runner": {"effnetv2_mini.study.claims"}}
    assert upward_imports(graph) == [
        "effnetv2_mini.data.loaders (data) -> effnetv2_mini.engine.distributed (engine)",
        "effnetv2_mini.measure (engine) -> effnetv2_mini.zoo (study)",
        "effnetv2_mini.paper.nas (paper) -> effnetv2_mini.engine.loop (engine)"]


def test_every_top_level_module_has_a_layer():
    top = {path.stem for path in (ROOT / "effnetv2_mini").glob("*.py") if path.stem != "__init__"}
    assert top == set(TOP_LEVEL), f"place these in TOP_LEVEL: {sorted(top - set(TOP_LEVEL))}"


def third_party_imports(path: Path) -> set[str]:
    """Top-level package names that ``path`` imports, besides the standard library and relative imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names.add((node.module or "").split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "__future__"}


def test_the_papers_modules_need_only_torch_torchvision_and_each_other():
    found = {path.name: sorted(third_party_imports(path) - PAPER_MAY_IMPORT)
             for path in sorted((ROOT / "effnetv2_mini" / "paper").glob("*.py"))}
    wrong = {name: names for name, names in found.items() if names}
    assert not wrong, f"paper/ imports beyond torch and torchvision: {wrong}"


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
