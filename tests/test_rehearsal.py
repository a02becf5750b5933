"""Rehearsals: every notebook of the laptop, quick and full plans runs through its plan's code paths (the full plan's
trainings under torchrun) on miniature data, and the report claims nothing but parameter and FLOP counts."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reproduce.plans import load_plan

ROOT = Path(__file__).resolve().parent.parent


PLANS = ["laptop", "quick", "full"]


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory):
    """The three rehearsals, run side by side (one thread each: this machine has two cores and a rehearsal is
    mostly process start-up and Python overhead), as a user runs them: ``python -m reproduce run PLAN --rehearse``."""
    runs_dir = tmp_path_factory.mktemp("rehearsals")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    processes = {plan: subprocess.Popen([sys.executable, "-m", "reproduce", "run", plan, "--rehearse", "--runs-dir",
                                         str(runs_dir)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True) for plan in PLANS}
    outputs = {}
    for plan, process in processes.items():
        try:
            outputs[plan] = (process.communicate(timeout=900)[0], process.returncode)
        except subprocess.TimeoutExpired:
            process.kill()
            outputs[plan] = (process.communicate()[0], "timed out")
    return runs_dir, outputs


@pytest.mark.parametrize("plan", PLANS)
def test_rehearsal_runs_every_notebook_and_claims_nothing(plan, rehearsals):
    runs_dir, outputs = rehearsals
    output, returncode = outputs[plan]
    run = runs_dir / f"{plan}-rehearsal"
    assert returncode == 0, output[-6000:]
    status = json.loads((run / "status.json").read_text())
    assert set(status) == {e.name for e in load_plan(plan).entries}
    assert all(record["state"] == "done" for record in status.values()), status
    assert not list(run.rglob("*.pt")), "a done rehearsal notebook keeps no checkpoints (GBs for the plans' models)"
    report = (run / "report.md").read_text()
    assert "REHEARSAL" in report
    glance = report.split("## At a glance")[1].split("## Notebooks")[0]
    rows = [line for line in glance.splitlines() if line.startswith("| ") and "claim |" not in line]
    assert rows
    for row in rows:
        if not row.startswith("| Tables 4, 7"):
            assert "**yes**" not in row and "**agrees**" not in row and "**contradicts**" not in row, row
    notebook = json.loads((run / "02_training.json").read_text()) if (run / "02_training.json").exists() else None
    if notebook:
        conditions = notebook["results"]["training"]["conditions"]
        assert conditions["rehearsal"] is True and conditions["steps_per_epoch"] == 2
        assert conditions["processes"] == (2 if plan == "full" else 1)  # the full plan trains through torchrun


def test_the_laptop_rehearsal_publishes_and_its_book_builds(rehearsals, tmp_path):
    """What the repository does with the laptop run, on its rehearsal (a real run directory, every
    notebook executed): publish it (every page valid for GitHub: notebooks, links, images; no
    progress-bar noise, no path of this machine), then build its book (every page there, every link
    and image resolving, nothing loaded from the web)."""
    import nbformat

    from reproduce.book import build_book
    from reproduce.publish import publish
    from reproduce.sitecheck import check_publication, check_site, external_references
    from reproduce.tidy import PathScrubber

    runs_dir, _ = rehearsals
    run = runs_dir / "laptop-rehearsal"
    names = [e.name for e in load_plan("laptop").entries]
    folder = publish(run, tmp_path / "published").parent
    this_machine = PathScrubber([run, runs_dir], [ROOT, tmp_path], run.name)
    assert check_publication(folder, this_machine) == []
    assert sorted(p.stem for p in folder.glob("*.ipynb")) == sorted(names)
    index = (folder / "README.md").read_text()
    listed = [line.split("](")[1].split(".ipynb")[0]
              for line in index.splitlines() if ".ipynb)" in line]
    assert listed == names
    report = (folder / "report.md").read_text()
    figures = [line.split("](")[1].rstrip(")")
               for line in report.splitlines() if line.startswith("![")]
    assert len(figures) >= 8 and all((folder / f).is_file() for f in figures)
    for name in names:
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not any("\r" in o.text for o in outputs if o.output_type == "stream"), name
        first = outputs[0]  # the values the notebook ran with
        shown = first["data"]["text/html"]
        assert "the values this run uses, profile laptop (REHEARSAL" in shown, name
    book = build_book(folder, tmp_path / "book").parent
    pages = ["index.html", "run.html", "paper.html", "benchmarks.html", "search.html",
             *(f"{n}.html" for n in names)]
    assert check_site(book, pages, this_machine) == []
    assert "<img" in (book / "07_faster_training.html").read_text()
    assert external_references(book)["load"] == set()  # it works offline
