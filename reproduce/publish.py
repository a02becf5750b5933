"""``python -m reproduce publish RUN_DIR [--to FOLDER]``: a run's notebooks as pages GitHub renders.

Copies the executed notebooks of a run directory, in plan order, into a folder of their own (default
``published/<plan>/``, outside ``notebooks/`` and ``tests/``, so that nbval and the clean-notebook
test leave it alone), with

- progress bars reduced to their final line, live widgets to their text (:mod:`.tidy`);
- the paths of the machine that ran them replaced (``runs/<plan>``, ``.``, ``~``), relative links
  rewritten for the new folder (a link to a file that is not in the repository becomes its text);
- ``report.md`` and the figures it shows, as files beside it;
- ``README.md``: the index page: commit, machine, date, each notebook's time, how to refresh it;
- ``run.json``: the same facts for ``python -m reproduce book``.

The folder is then checked (:func:`.sitecheck.check_publication`): valid notebooks, every link and
image resolves, no progress-bar noise, no path of this machine; a problem is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from .plans import ROOT
from .provenance import RUN_INFO, run_info
from .tidy import PathScrubber, relink, tidy_outputs

__all__ = ["publish", "PublishError", "index_page", "executed_notebooks", "DEFAULT_BOOK_SOURCE"]

DEFAULT_BOOK_SOURCE = (
    "published/laptop"  # the run the repository publishes, and ``make book``'s source
)


class PublishError(ValueError):
    """A run directory that cannot be published, or a publication that fails its checks; says what
    to do."""


def executed_notebooks(run_dir: Path) -> list[Path]:
    """The executed notebooks of a run directory, or a :class:`PublishError` naming the directory
    and the fix."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PublishError(
            f"run directory {run_dir} does not exist: run a plan first, e.g. `python -m reproduce "
            "run smoke` (it writes runs/smoke/), or give the directory a plan ran into"
        )
    found = sorted(run_dir.glob("*.ipynb"))
    if not found:
        raise PublishError(
            f"{run_dir} holds no executed notebook (*.ipynb): run a plan into it first, e.g. "
            f"`python -m reproduce run {run_dir.name.removesuffix('-rehearsal')}`"
        )
    return found


def publish(run_dir: Path, to: Path | None = None) -> Path:
    """Publish ``run_dir`` into ``to`` (default ``published/<plan>``); return the index page's
    path."""
    import nbformat

    run_dir = Path(run_dir)
    executed_notebooks(run_dir)
    if (run_dir / RUN_INFO).exists():
        raise PublishError(
            f"{run_dir} is already a published folder; build its book with "
            f"`python -m reproduce book {run_dir}`"
        )
    info = run_info(run_dir)
    to = Path(to) if to else ROOT / "published" / info["plan"]
    _prepare(to, run_dir)
    checkouts, run_dirs = _recorded_places(run_dir)
    scrub = PathScrubber([run_dir, *run_dirs], [ROOT, *checkouts], run_dir.name)
    in_repo = _inside(to.resolve(), ROOT)
    for entry in info["notebooks"]:
        source = run_dir / f"{entry['name']}.ipynb"
        if not source.exists():
            continue
        nb = nbformat.read(source, as_version=4)
        tidy_outputs(nb)
        scrub.notebook(nb)
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = relink(
                    cell.source, ROOT / "notebooks", to, lambda p: _in_repo(p, in_repo)
                )
        nbformat.validate(nb)
        nbformat.write(nb, to / source.name)
    _copy_report(run_dir, to, scrub)
    info["notebooks"] = [n for n in info["notebooks"] if (to / f"{n['name']}.ipynb").exists()]
    (to / RUN_INFO).write_text(json.dumps(info, indent=1) + "\n")
    index = to / "README.md"
    index.write_text(index_page(info, to))
    from .sitecheck import check_publication, possible_paths

    problems = check_publication(to, scrub)
    if problems:
        raise PublishError(f"{to} fails its checks:\n  " + "\n  ".join(problems))
    for path in possible_paths(to):
        print(f"publish: check this absolute path: {path}", file=sys.stderr)
    return index


def _prepare(to: Path, run_dir: Path) -> None:
    """An empty folder at ``to``: a former publication there is replaced; anything else is left
    alone (an error)."""
    if to.resolve() == run_dir.resolve() or _inside(to.resolve(), run_dir.resolve()):
        raise PublishError(
            f"--to {to} is inside the run directory {run_dir}: publish to a folder of its own"
        )
    if to.exists() and any(to.iterdir()) and not (to / RUN_INFO).exists():
        raise PublishError(
            f"--to {to} exists and is not a published run (no {RUN_INFO}): choose another folder "
            "or empty it"
        )
    shutil.rmtree(to, ignore_errors=True)
    to.mkdir(parents=True)


def _recorded_places(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """The checkouts whose notebooks ran, and the folders they ran into, as papermill recorded them
    in each executed notebook (``run_dir`` may have been moved or copied since)."""
    checkouts, run_dirs = set(), set()
    for path in run_dir.glob("*.ipynb"):
        try:
            record = json.loads(path.read_text())["metadata"]["papermill"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        places = {
            "input": record.get("input_path"),
            "output": record.get("output_path"),
            "dir": (record.get("parameters") or {}).get("output_dir"),
        }
        if isinstance(places["input"], str) and Path(places["input"]).is_absolute():
            checkouts.add(Path(places["input"]).parent.parent)
        if isinstance(places["output"], str) and Path(places["output"]).is_absolute():
            run_dirs.add(Path(places["output"]).parent)
        if isinstance(places["dir"], str) and Path(places["dir"]).is_absolute():
            run_dirs.add(Path(places["dir"]))
    return sorted(checkouts), sorted(run_dirs)


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _in_repo(path: Path, in_repo: bool) -> Path | None:
    """A file of this checkout a notebook links to, seen from a publication inside the checkout;
    None otherwise."""
    return path if in_repo and path.exists() and _inside(path.resolve(), ROOT) else None


def _copy_report(run_dir: Path, to: Path, scrub: PathScrubber) -> None:
    """``report.md`` with the files it links to inside the run directory (its figures), paths
    scrubbed."""
    report = run_dir / "report.md"
    if not report.exists():
        raise PublishError(
            f"{run_dir} has no report.md: write it with `python -m reproduce report "
            f"{run_dir.name.removesuffix('-rehearsal')} --runs-dir {run_dir.parent}`"
        )

    def copied(path: Path) -> Path | None:
        if not (path.is_file() and _inside(path.resolve(), run_dir.resolve())):
            return None
        target = to / path.resolve().relative_to(run_dir.resolve())
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        return target

    (to / "report.md").write_text(relink(scrub(report.read_text()), run_dir, to, copied))


def duration(seconds: float | None) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 42 min``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def index_page(info: dict, to: Path) -> str:
    """The published run's first page: what ran, where, when, how long, and how to refresh it."""
    plan, where = info["plan"], _shown_path(to)
    book = "make book" if where == DEFAULT_BOOK_SOURCE else f"python -m reproduce book {where}"
    m = info.get("machine")
    machine = (
        f"{m['cpu']}, {m['cores']} logical cores, {m['memory_gb']} GB memory, {m['os']}"
        if m
        else "not recorded by this run (it predates the runner's machine record)"
    )
    commits = ", ".join(f"`{c}`" for c in info.get("commits") or []) or "not recorded by this run"
    if "+changes" in commits:
        commits += " (`+changes`: the checkout had uncommitted changes)"
    rehearse = " --rehearse" if info["run_dir"].endswith("-rehearsal") else ""
    readme = "the README"
    if _inside(Path(to).resolve(), ROOT):
        readme = f"[the README]({os.path.relpath(ROOT / 'README.md', Path(to).resolve())}#data)"
    rows = [
        f"| {i} | [{n['name']}]({n['name']}.ipynb) | {n['state']} | {duration(n['seconds'])} |"
        for i, n in enumerate(info["notebooks"], 1)
    ]
    total = sum(n["seconds"] or 0 for n in info["notebooks"])
    return "\n".join(
        [
            f"# The `{plan}` plan, executed: every notebook with its outputs",
            "",
            (info.get("description") or "").strip(),
            "",
            "These are the executed notebooks of one run of the plan, as `python -m reproduce "
            "run` left them, with their figures, numbers and verdicts; progress bars are cut to "
            "their final line and the paths of the machine that ran them are replaced "
            f"(`runs/{info['run_dir']}`, `.` for the checkout, `~` for the home folder). "
            "[report.md](report.md) gathers every claim: the paper's number, ours, and the "
            "verdict.",
            "",
            f"- **commit**: {commits}",
            f"- **machine**: {machine}; device `{info.get('device')}`",
            f"- **finished**: {info.get('finished') or 'not recorded'} (UTC)",
            "",
            "| # | notebook | state | time |",
            "|---|---|---|---|",
            *rows,
            f"| | total | | {duration(total)} |",
            "",
            "## Refresh it",
            "",
            f"From the repository's root, with the plan's data in place (see {readme}):",
            "",
            "```bash",
            f"python -m reproduce run {plan}{rehearse} --force   # every notebook again, into "
            f"runs/{info['run_dir']}/",
            f"python -m reproduce publish runs/{info['run_dir']} --to {where}",
            f"{book:<41} # the site of this folder: build/book/html/index.html",
            "```",
            "",
        ]
    )


def _shown_path(path: Path) -> str:
    """A folder as the refresh commands name it: relative to the checkout, or FOLDER (no path of
    this machine)."""
    path = Path(path).resolve()
    return path.relative_to(ROOT).as_posix() if _inside(path, ROOT) else "FOLDER"
