"""Rules every committed notebook keeps (nbval itself runs them: see the Makefile's test target)."""

from pathlib import Path

import nbformat
import pytest

from reproduce.nbclean import MARKER, clean, is_checked, problems
from reproduce.plans import notebook_parameters

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


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
