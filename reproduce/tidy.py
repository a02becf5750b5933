"""Executed notebooks made fit to publish: progress bars reduced to their final line, paths of the
machine that ran them replaced, relative links rewritten for where the copy goes.

Progress bars (tqdm) redraw themselves with carriage returns: a training cell's output holds
hundreds of ``\\r``-separated states, shown by a terminal as one line. :func:`tidy_outputs` merges
a cell's consecutive stream outputs and keeps what a terminal would show (nbconvert's
``CoalesceStreamsPreprocessor``), then drops the lines a bar blanked out when it closed
(``leave=False``): at most a bar's final line stays.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["tidy_outputs", "without_progress", "PathScrubber", "relink", "LINK"]

CSI = re.compile(
    r"\x1b\[[0-9;?]*[A-Za-z]"
)  # terminal control sequences (a nested bar moves the cursor)
FOLDER_VARIABLES = ["EFFNETV2_CACHE"]  # effnetv2_mini.data.cache: where decoded images go
# a live widget: nothing to show once its kernel is gone
WIDGET = "application/vnd.jupyter.widget-view+json"
LINK = re.compile(
    r"(!?)\[([^\]\n]*)\]\(([^)\s]+)\)"
)  # Markdown links and images: (!, text, target)


def without_progress(text: str) -> str:
    """A stream's text as a terminal ends up showing it: each line what was written after its last
    carriage return, lines that a progress bar cleared (only blanks after a carriage return) left
    out."""
    from nbconvert.preprocessors.coalescestreams import CR_PAT

    text = CR_PAT.sub("", CSI.sub("", text.replace("\r\n", "\n")))
    kept = [line.replace("\r", "") for line in text.split("\n")]
    return "\n".join(
        line for line, raw in zip(kept, text.split("\n")) if line.strip() or "\r" not in raw
    )


def tidy_outputs(nb) -> None:
    """Merge each code cell's consecutive stream outputs, reduce progress bars to their final line,
    and replace live widgets by their text (in place, on an ``nbformat`` notebook)."""
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    merge = CoalesceStreamsPreprocessor()
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.get("outputs"):
            continue
        merge.preprocess_cell(cell, {}, index)
        outputs = []
        for output in cell.outputs:
            if output.output_type == "stream":
                output.text = without_progress(output.text)
                if not output.text.strip():
                    continue
            elif WIDGET in output.get("data", {}):
                del output.data[WIDGET]
                if not output.data:
                    continue
            outputs.append(output)
        cell.outputs = outputs


class PathScrubber:
    """Replace the absolute paths of the machine that ran a notebook: the run directory by
    ``runs/<name>``, the checkout by ``.``, the Python environment by ``$VENV`` (when outside the
    home folder), ``$EFFNETV2_CACHE`` by its name, the home folder by ``~``. :meth:`found` lists
    any of them left in a text (the check after publishing and building)."""

    def __init__(self, run_dirs: list[Path], checkouts: list[Path], run_name: str):
        pairs = {}
        for path in {Path.home(), Path.home().resolve()}:
            pairs[str(path)] = "~"
        for path in {Path(sys.prefix), Path(sys.prefix).resolve()} - {Path.home()}:
            if not path.is_relative_to(Path.home()):
                pairs[str(path)] = "$VENV"
        for variable in FOLDER_VARIABLES:  # a folder set by the environment, e.g. the image cache's
            if os.path.isabs(os.environ.get(variable, "")):
                pairs[os.path.normpath(os.environ[variable])] = f"${variable}"
        for checkout in checkouts:
            pairs.update({str(checkout): ".", str(Path(checkout).resolve()): "."})
        for run_dir in map(Path, run_dirs):  # where it ran, and where it is now
            pairs.update(
                {
                    str(run_dir.absolute()): f"runs/{run_name}",
                    str(run_dir.resolve()): f"runs/{run_name}",
                }
            )
        self.pairs = {path: new for path, new in pairs.items() if path not in ("/", "")}
        alternatives = "|".join(re.escape(p) for p in sorted(self.pairs, key=len, reverse=True))
        self.pattern = re.compile(f"(?:{alternatives})(?![\\w.-])")

    def __call__(self, text: str) -> str:
        return self.pattern.sub(lambda match: self.pairs[match.group(0)], text)

    def found(self, text: str) -> list[str]:
        return sorted({match.group(0) for match in self.pattern.finditer(text)})

    def notebook(self, nb) -> None:
        """Scrub a notebook in place: sources, text outputs, errors, metadata (not images)."""
        for cell in nb.cells:
            cell.source = self(cell.source)
            for output in cell.get("outputs", []):
                if "text" in output:
                    output.text = self(output.text)
                for mime, data in output.get("data", {}).items():
                    if mime.startswith("text/") or mime.endswith("json"):
                        output.data[mime] = _scrubbed(data, self)
                if output.output_type == "error":
                    output.evalue = self(output.evalue)
                    output.traceback = [self(line) for line in output.traceback]
            cell.metadata = _scrubbed(cell.metadata, self)
        nb.metadata = _scrubbed(nb.metadata, self)


def _scrubbed(value, scrub: Callable[[str], str]):
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, list):
        return [_scrubbed(v, scrub) for v in value]
    if isinstance(value, dict):
        return type(value)((k, _scrubbed(v, scrub)) for k, v in value.items())
    return value


def relink(
    text: str, origin: Path, new_place: Path, available: Callable[[Path], Path | None]
) -> str:
    """Rewrite the relative links and images of Markdown written in the folder ``origin`` for a copy
    in the folder ``new_place``: ``available(file)`` says where the linked file is seen from there
    (None: nowhere, and the link becomes its plain text). Web links and links within a page stay."""

    def rewrite(match: re.Match) -> str:
        bang, label, target = match.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            return match.group(0)
        path, _, fragment = target.partition("#")
        found = available(Path(os.path.normpath(Path(origin) / path)))
        if found is None:
            return label
        new = Path(os.path.relpath(found, new_place)).as_posix()
        return f"{bang}[{label}]({new}{'#' + fragment if fragment else ''})"

    return LINK.sub(rewrite, text)
