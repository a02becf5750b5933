"""The batch runner: plan validation with line numbers, resumable runs, failures recorded, timeouts."""

import json
import textwrap
from pathlib import Path

import nbformat
import pytest

from reproduce.plans import PlanError, load_plan
from reproduce.runner import run_plan


def make_notebook(path: Path, body: str, parameters: str = 'profile = None\noutput_dir = "out"\nsleep = 0'):
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


WRITES_RESULTS = textwrap.dedent("""
    import json, os, time
    time.sleep(sleep)
    os.makedirs(output_dir, exist_ok=True)
    name = "{name}"
    json.dump({{"notebook": name, "profile": profile, "results": {{}}}}, open(os.path.join(output_dir, name + ".json"), "w"))
""")


@pytest.fixture
def workspace(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    make_notebook(notebooks / "good.ipynb", WRITES_RESULTS.format(name="good"))
    make_notebook(notebooks / "bad.ipynb", "raise RuntimeError('deliberate failure in bad')")
    make_notebook(notebooks / "slow.ipynb", WRITES_RESULTS.format(name="slow"))
    return tmp_path


def write_plan(directory: Path, text: str) -> Path:
    path = directory / "plan.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_plans_are_valid():
    plan = load_plan("smoke")
    assert plan.name == "smoke" and "01_architecture" in [e.name for e in plan.entries]
    assert plan.entries[0].parameters["profile"] == "smoke"


def test_unknown_plan_lists_available():
    with pytest.raises(PlanError, match="Available plans: .*smoke"):
        load_plan("smokey")


@pytest.mark.parametrize(
    "text, message, line",
    [
        ("name: t\nnotebooks:\n  - name: good\n  - name: nope\n", "unknown notebook 'nope'", 4),
        ("name: t\nnotebooks:\n  - name: good\n    parameters:\n      sleeep: 1\n", "no parameter 'sleeep'", 5),
        ("name: t\nnotebok:\n  - good\n", "unknown key 'notebok'", 2),
        ("name: t\ndefaults:\n  profile: smoke\n  devise: cpu\nnotebooks: [good]\n", "'devise' is a parameter of none", 4),
        ("name: t\nnotebooks:\n  - name: good\n    timout: 3\n", "unknown key 'timout'", 4),
        ("name: t\nnotebooks:\n  - good\n  - good\n", "listed twice", 4),
    ],
)
def test_bad_plans_are_rejected_with_the_line(workspace, text, message, line):
    path = write_plan(workspace, text)
    with pytest.raises(PlanError) as error:
        load_plan(str(path), notebooks_dir=workspace / "notebooks")
    assert message in str(error.value)
    assert f"line {line}" in str(error.value) and str(path) in str(error.value)


def test_unsafe_yaml_is_not_executed(workspace):
    path = write_plan(workspace, "name: !!python/object/apply:os.system ['echo hacked']\nnotebooks: [good]\n")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(str(path), notebooks_dir=workspace / "notebooks")


def test_run_records_failure_continues_and_resumes(workspace, capsys):
    plan_path = write_plan(workspace, """
        name: t
        defaults: {profile: smoke}
        notebooks:
          - good
          - bad
    """)
    plan = load_plan(str(plan_path), notebooks_dir=workspace / "notebooks")
    runs = workspace / "runs"
    assert run_plan(plan, runs_dir=runs) == 1  # bad failed, the batch still ran good
    status = json.loads((runs / "t" / "status.json").read_text())
    assert status["good"]["state"] == "done" and status["bad"]["state"] == "failed"
    assert "deliberate failure in bad" in status["bad"]["error"]
    assert (runs / "t" / "bad.ipynb").exists()  # papermill saved the failing notebook for inspection
    results = json.loads((runs / "t" / "good.json").read_text())
    assert results["profile"] == "smoke"
    assert (runs / "t" / "report.md").exists()

    capsys.readouterr()
    run_plan(plan, runs_dir=runs, dry_run=True)
    dry = capsys.readouterr().out
    assert "skip good" in dry and "run  bad" in dry and "failed" in dry

    finished = status["good"]["finished"]
    run_plan(plan, runs_dir=runs, only=["good"])  # done: skipped
    assert json.loads((runs / "t" / "status.json").read_text())["good"]["finished"] == finished
    assert run_plan(plan, runs_dir=runs, only=["good"], force=True) == 0
    assert json.loads((runs / "t" / "status.json").read_text())["good"]["finished"] >= finished


def test_hung_notebook_is_stopped_at_its_timeout(workspace):
    plan_path = write_plan(workspace, """
        name: t
        notebooks:
          - name: slow
            timeout: 8
            parameters: {sleep: 120}
    """)
    plan = load_plan(str(plan_path), notebooks_dir=workspace / "notebooks")
    assert run_plan(plan, runs_dir=workspace / "runs") == 1
    record = json.loads((workspace / "runs" / "t" / "status.json").read_text())["slow"]
    assert record["state"] == "timeout" and record["seconds"] < 60


def test_only_with_unknown_name_is_an_error(workspace):
    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [good]\n")), notebooks_dir=workspace / "notebooks")
    with pytest.raises(ValueError, match="not in plan"):
        run_plan(plan, runs_dir=workspace / "runs", only=["nope"])
