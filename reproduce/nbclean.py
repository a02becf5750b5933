"""Keep committed notebooks clean: outputs only in cells marked ``# NBVAL_CHECK_OUTPUT``.

    python -m reproduce clean notebooks/*.ipynb     # strip in place
    python -m reproduce clean --check notebooks/*.ipynb

Checked cells keep their (deterministic) text outputs so nbval can compare them, and an execution count equal
to their position among the code cells (nbval skips "unrun" cells); every other output, every other execution
count and papermill's run metadata are removed.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

MARKER = "# NBVAL_CHECK_OUTPUT"


def is_checked(cell) -> bool:
    return cell.cell_type == "code" and cell.source.lstrip().startswith(MARKER)


def problems(nb) -> list[str]:
    found = []
    code_index = 0
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        code_index += 1
        expected = code_index if is_checked(cell) else None
        if cell.get("execution_count") != expected:
            found.append(f"cell {i}: execution_count is {cell.get('execution_count')}, expected {expected}")
        if cell.outputs and not is_checked(cell):
            found.append(f"cell {i}: has outputs but is not marked {MARKER}")
        for output in cell.outputs:
            if output.get("output_type") in ("display_data", "error") or "image/png" in output.get("data", {}):
                found.append(f"cell {i}: keeps a {output.get('output_type')} output (images and errors are not committed)")
    if "papermill" in nb.metadata:
        found.append("notebook metadata carries papermill's run record")
    return found


def clean(nb):
    code_index = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        code_index += 1
        cell.execution_count = code_index if is_checked(cell) else None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
        if is_checked(cell):
            kept = []
            for output in cell.outputs:
                if output.get("output_type") == "stream":
                    kept.append(output)
                elif output.get("output_type") == "execute_result":
                    output["execution_count"] = code_index
                    kept.append(output)
            cell.outputs = kept
        else:
            cell.outputs = []
    nb.metadata.pop("papermill", None)
    return nb


def clean_file(path: Path, check: bool = False) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    if check:
        return [f"{path}: {p}" for p in problems(nb)]
    nbformat.write(clean(nb), path)
    return []
