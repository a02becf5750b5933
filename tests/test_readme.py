"""The README's map of the code ("Where each idea lives") and its examples follow the tree as it is."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of a Markdown text."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section '## {title}'"
    return match.group(1)


def table_paths(text: str) -> list[str]:
    """The paths in the library column (the second) of the section's table: code spans holding a '/'."""
    paths = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) >= 2 and not set(cells[1]) <= set("-: "):
            paths += [span for span in re.findall(r"`([^`]+)`", cells[1]) if "/" in span]
    return paths


def modules() -> list[str]:
    """Every module of the library, as a path from the repository root (``__init__.py`` files aside)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "effnetv2_mini").rglob("*.py") if p.name != "__init__.py")


def unmapped(text: str, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """(paths in the table that do not exist, library modules missing from the table)."""
    listed = table_paths(text)
    return ([p for p in listed if not (root / p).exists()],
            [m for m in modules() if m not in listed])


def test_every_path_in_where_each_idea_lives_exists_and_every_module_is_listed():
    missing, unlisted = unmapped(section(README, "Where each idea lives"))
    assert missing == [], f"README 'Where each idea lives' names paths that do not exist: {missing}"
    assert unlisted == [], f"modules missing from README 'Where each idea lives': {unlisted}"


def test_the_checks_catch_a_wrong_path_and_a_missing_module():
    table = ("| paper | library | notebook |\n|---|---|---|\n"
             "| Fig. 2 | `effnetv2_mini/paper/blocks.py`, `effnetv2_mini/paper/gone.py` | 01 |\n")
    missing, unlisted = unmapped(table)
    assert missing == ["effnetv2_mini/paper/gone.py"]
    assert "effnetv2_mini/paper/configs.py" in unlisted and "effnetv2_mini/paper/blocks.py" not in unlisted


def _resolves(dotted: str) -> bool:
    """Whether ``a.b.c`` imports: the longest module prefix that imports, then attributes (or submodules)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        try:
            for name in parts[cut:]:
                target = getattr(target, name)
        except AttributeError:
            return False
        return True
    return False


IMPORTS = sorted(set(re.findall(r"^from (effnetv2_mini[\w.]*) import ([\w, ]+)$", README, re.M)))
DOTTED = sorted(set(re.findall(r"\b(effnetv2_mini(?:\.\w+)+)", README)))


@pytest.mark.parametrize("module, names", IMPORTS, ids=[m for m, _ in IMPORTS])
def test_the_readme_examples_import_what_exists(module, names):
    missing = [name for name in (n.strip() for n in names.split(",")) if not _resolves(f"{module}.{name}")]
    assert missing == [], f"README: from {module} import {', '.join(missing)} fails"


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_in_the_readme_resolves(dotted):
    assert _resolves(dotted), f"README names {dotted}, which does not import"
