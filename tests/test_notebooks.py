"""Rules every committed notebook keeps (nbval itself runs them: see the Makefile's test target)."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from reproduce.nbclean import MARKER, clean, is_checked, problems
from reproduce.plans import notebook_parameters

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PAPER_NUMBERS = ROOT / "effnetv2_mini" / "study" / "paper_numbers.yaml"


def test_there_are_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean(path):
    assert problems(nbformat.read(path, as_version=4)) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_tagged_parameters_with_profile(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    assert {"profile", "output_dir"} <= notebook_parameters(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_checked_cells_carry_outputs_to_compare(path):
    nb = nbformat.read(path, as_version=4)
    checked = [c for c in nb.cells if is_checked(c)]
    assert checked, f"{path.name} has no {MARKER} cell"
    assert all(c.outputs for c in checked)


def test_clean_strips_unchecked_outputs_and_counts():
    nb = nbformat.v4.new_notebook()
    plain = nbformat.v4.new_code_cell("print(1)", execution_count=3,
                                      outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")])
    checked = nbformat.v4.new_code_cell(f"{MARKER}\nprint(2)", execution_count=9,
                                        outputs=[nbformat.v4.new_output("stream", name="stdout", text="2\n"),
                                                 nbformat.v4.new_output("display_data", data={"image/png": "xx"})])
    nb.cells = [plain, checked]
    nb.metadata["papermill"] = {"duration": 1}
    assert problems(nb)
    clean(nb)
    assert problems(nb) == []
    assert plain.outputs == [] and plain.execution_count is None
    assert [o.output_type for o in checked.outputs] == ["stream"] and checked.execution_count == 2


# ---- prose that cannot go stale ------------------------------------------------------------------------------------
# A notebook's Markdown says what to look at and why; the numbers of a run come from the run (a Markdown cell
# rendered by a code cell, or claims.conclusion). Typed into prose, a measured number goes stale at the next rerun.
# The quantities caught: percentages ("61%", "32.8-40.8%"), differences in points ("3.5 points", "+1.2 pp") and
# ratios ("0.78x", "0.78-0.91x", "2.8x faster", "3 times"). Allowed: the paper's numbers (every number in
# paper_numbers.yaml), and anything in code spans or code blocks. "3x3" (a kernel) and "x0.97" are not ratios.

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_QUANTITY = re.compile(rf"(?P<first>{_NUMBER})(?:\s*(?:-|–|to|->|→)\s*[+-]?(?P<second>{_NUMBER}))?"
                       r"(?:\s*(?:%|percent\b|percentage points?\b|points?\b|pp\b)|(?:x|×)(?!\w)|\s+times\b)")
_CODE = re.compile(r"```.*?```|~~~.*?~~~|`[^`\n]*`", re.S)


def paper_numbers_allowed(path: Path = PAPER_NUMBERS) -> set[float]:
    """Every number in paper_numbers.yaml: its values, and the numbers its keys and sources mention."""
    numbers: set[float] = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                walk(key)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            numbers.add(abs(float(node)))
        elif isinstance(node, str):
            numbers.update(float(n.replace(",", "")) for n in re.findall(_NUMBER, node))

    walk(yaml.safe_load(path.read_text()))
    return numbers


def typed_quantities(markdown: str, allowed: set[float]) -> list[str]:
    """The percentages, points and ratios in ``markdown`` (outside code) with a number that is not in ``allowed``."""
    prose = _CODE.sub(" ", markdown)
    return [m.group(0).strip() for m in _QUANTITY.finditer(prose)
            if any(float(n.replace(",", "")) not in allowed for n in (m["first"], m["second"]) if n)]


def test_the_checker_catches_typed_results_and_lets_the_papers_numbers_code_and_kernels_pass():
    allowed = paper_numbers_allowed()
    assert {83.9, 0.7, 84.7, 85.0, 98.7} <= allowed  # Table 7, the adaptive-regularization gain, B7, Table 8
    bad = ("The `demo_v2_tiny` run reached 61% top-1; adaptive regularization gained 2.4 points, progressive took "
           "0.78-0.91x the time, trained 2.8x faster and ended 6.5 pp lower, within 32.8-40.8%; 2.45 times")
    assert typed_quantities(bad, allowed) == ["61%", "2.4 points", "0.78-0.91x", "2.8x", "6.5 pp", "32.8-40.8%",
                                              "2.45 times"]
    assert typed_quantities("the paper's 84.7 -> 85.0%, 0.7 points and 83.9%", allowed) == []
    good = ("3x3 and 1x1 convolutions, decay x0.97 every 2.4 epochs, images of `224 px`, the 2021 paper, "
            "`0.78x` and\n```\ntop-1 61.0%\n```\n")
    assert typed_quantities(good, allowed) == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_prose_quotes_no_measured_number(path):
    allowed = paper_numbers_allowed()
    nb = nbformat.read(path, as_version=4)
    typed = {i: found for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown"
             and (found := typed_quantities(cell.source, allowed))}
    assert typed == {}, (f"{path.name}: Markdown cells (by index) quote numbers that are not the paper's: {typed}. "
                         "Say what to look at, and render the run's own numbers from its results in a code cell.")
