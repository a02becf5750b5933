"""The batch runner: plan validation with line numbers, resumable runs, failures recorded, timeouts, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest

from reproduce import runner
from reproduce.plans import PlanError, load_plan
from reproduce.runner import estimate_line, run_plan


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


HELD = textwrap.dedent("""
    import json, os, time
    while hold and os.path.exists(hold):  # the test holds this notebook mid-run, then interrupts the batch
        time.sleep(0.2)
    json.dump({"notebook": "held", "profile": profile, "results": {}}, open(os.path.join(output_dir, "held.json"), "w"))
""")


@pytest.fixture
def workspace(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    make_notebook(notebooks / "good.ipynb", WRITES_RESULTS.format(name="good"))
    make_notebook(notebooks / "bad.ipynb", "raise RuntimeError('deliberate failure in bad')")
    make_notebook(notebooks / "slow.ipynb", WRITES_RESULTS.format(name="slow"))
    make_notebook(notebooks / "held.ipynb", HELD, 'profile = None\noutput_dir = "out"\nhold = ""')
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


def test_malformed_yaml_names_the_file_and_line(workspace):
    path = write_plan(workspace, "name: t\nnotebooks:\n  - good\n  - [bad\n")
    with pytest.raises(PlanError) as error:
        load_plan(str(path), notebooks_dir=workspace / "notebooks")
    assert "not valid YAML" in str(error.value) and str(path) in str(error.value) and "line 5" in str(error.value)


def test_shipped_full_plans_use_torchrun_and_separate_transfer_runs():
    from effnetv2_mini.study.profiles import notebook_profile

    full = load_plan("full")
    assert {e.name for e in full.entries} >= {"01_architecture", "02_training", "05_progressive_learning", "08_report"}
    profile = full.entries[0].parameters["profile"]
    assert notebook_profile("02_training", profile).nproc == 8 and notebook_profile("05_progressive_learning", profile).nproc == 8
    assert notebook_profile("02_training", profile).progressive == "paper"  # Table 7 trains with progressive learning
    assert [e.name for e in load_plan("full_transfer").entries] == ["06_transfer", "08_report"]
    profile_21k = load_plan("full_imagenet21k").entries[0].parameters["profile"]
    assert notebook_profile("06_transfer", profile_21k).init_from == "imagenet21k"
    smoke = load_plan("smoke")
    notebooks = Path(__file__).parent.parent / "notebooks"
    assert [e.name for e in smoke.entries] == sorted(p.stem for p in notebooks.glob("0*.ipynb"))


@pytest.mark.parametrize("text, message, line", [
    ("name: t\ntimeout: ten minutes\nnotebooks: [good]\n", "timeout must be a finite number of seconds > 0, got 'ten minutes'",
     2),
    ("name: t\nnotebooks:\n  - name: good\n    timeout: -5\n", "timeout must be a finite number of seconds > 0", 4),
    ("name: t\ntimeout: .nan\nnotebooks: [good]\n", "timeout must be a finite number of seconds > 0, got nan", 2),
    ("name: t\ntimeout: .inf\nnotebooks: [good]\n", "timeout must be a finite number of seconds > 0, got inf", 2),
    ("name: ../../escaped\nnotebooks: [good]\n", "plan name '../../escaped' must be letters", 1),
    ("name: t\nnotebooks:\n  - name: ../../evil/x\n", "notebook name '../../evil/x' must name a notebook", 3),
])
def test_plans_that_would_misbehave_are_rejected(workspace, text, message, line):
    path = write_plan(workspace, text)
    with pytest.raises(PlanError) as error:
        load_plan(str(path), notebooks_dir=workspace / "notebooks")
    assert message in str(error.value) and f"line {line}" in str(error.value)


def test_a_wrong_typed_parameter_of_a_project_notebook_is_rejected(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("name: t\nnotebooks:\n  - name: 02_training\n    parameters: {batch_size: '32'}\n")
    with pytest.raises(PlanError, match="line 4.*parameter 'batch_size' of 02_training must be int, got '32'"):
        load_plan(str(path))


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
    assert "bad: failed: RuntimeError: deliberate failure in bad" in capsys.readouterr().out  # the error on the terminal
    status = json.loads((runs / "t" / "status.json").read_text())
    assert status["good"]["state"] == "done" and status["bad"]["state"] == "failed"
    assert "deliberate failure in bad" in status["bad"]["error"]
    assert (runs / "t" / "bad.ipynb").exists()  # papermill saved the failing notebook for inspection
    results = json.loads((runs / "t" / "good.json").read_text())
    assert results["profile"] == "smoke"
    report = (runs / "t" / "report.md").read_text()
    assert "| bad | failed |" in report and "deliberate failure in bad" in report
    assert (runs / "t" / "report.html").exists()

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


def test_ctrl_c_mid_notebook_then_rerun_resumes_without_redoing_finished(workspace):
    hold = workspace / "hold"
    hold.touch()
    plan_path = write_plan(workspace, f"""
        name: t
        notebooks:
          - good
          - name: held
            parameters: {{hold: "{hold}"}}
    """)
    runs = workspace / "runs"
    script = (f"from reproduce.plans import load_plan; from reproduce.runner import run_plan; "
              f"run_plan(load_plan({str(plan_path)!r}, notebooks_dir={str(workspace / 'notebooks')!r}), runs_dir={str(runs)!r})")
    # started with SIGINT ignored, as a shell starts a background job: the runner must still take the Ctrl-C
    batch = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parent.parent,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    status_path = runs / "t" / "status.json"
    deadline = time.monotonic() + 120
    while not (status_path.exists() and "good" in json.loads(status_path.read_text())
               and (runs / "t" / "logs" / "held.log").exists()):
        assert time.monotonic() < deadline and batch.poll() is None, "the batch did not reach the held notebook"
        time.sleep(0.2)
    time.sleep(1.0)  # let papermill start the held notebook's kernel
    os.kill(batch.pid, signal.SIGINT)  # Ctrl-C
    assert batch.wait(timeout=60) != 0
    status = json.loads(status_path.read_text())
    assert status["good"]["state"] == "done" and status["held"]["state"] == "interrupted"
    finished = status["good"]["finished"]

    hold.unlink()
    plan = load_plan(str(plan_path), notebooks_dir=workspace / "notebooks")
    assert run_plan(plan, runs_dir=runs) == 0
    status = json.loads(status_path.read_text())
    assert status["good"]["finished"] == finished  # not redone
    assert status["held"]["state"] == "done" and (runs / "t" / "held.json").exists()


def test_the_estimate_is_scaled_by_this_machines_training_speed(workspace, monkeypatch):
    """A CPU plan's measured minutes, scaled by the probe: a machine half as fast takes twice as long."""
    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [good]\n"
                                               "estimate: {minutes: 30, machine: a 2-core VM, probe: 500}\n")),
                     notebooks_dir=workspace / "notebooks")
    monkeypatch.setattr(runner, "probe_speed", lambda: 250.0)
    line = estimate_line(plan, 1, None)
    assert "the whole plan took 30 min on a 2-core VM" in line and "0.50x as fast: about 60 min here" in line
    assert "about" not in estimate_line(plan, 1, "cuda")  # a GPU run is not scaled by a CPU probe


@pytest.mark.parametrize("name", ["smoke", "laptop"])
def test_the_cpu_plans_carry_their_measured_time(name):
    estimate = load_plan(name).estimate
    assert estimate["minutes"] > 0 and estimate["probe"] > 0 and "2026" in estimate["machine"]


def _held_plan(workspace: Path) -> tuple[Path, Path]:
    hold = workspace / "hold"
    hold.touch()
    return hold, write_plan(workspace, f"""
        name: t
        notebooks:
          - name: held
            parameters: {{hold: "{hold}"}}
    """)


def _wait_for_session(runs: Path, batch: subprocess.Popen) -> int:
    lock, deadline = runs / "t" / "runner.json", time.monotonic() + 120
    while True:
        record = json.loads(lock.read_text()) if lock.exists() else {}
        if record.get("session"):
            time.sleep(1.0)  # papermill starts the kernel
            return record["session"]
        assert time.monotonic() < deadline and batch.poll() is None, "the batch did not start its notebook"
        time.sleep(0.2)


def _session_alive(session: int) -> bool:
    import psutil

    return any(_sid(p.pid) == session for p in psutil.process_iter())


def _sid(pid: int):
    try:
        return os.getsid(pid)
    except (ProcessLookupError, PermissionError):
        return None


def test_kill_9_of_the_runner_leaves_nothing_training_and_the_rerun_resumes(workspace, monkeypatch):
    """kill -9 of the runner mid-notebook: papermill gets the parent-death signal; what could survive (its own session)
    is stopped by the rerun, which then finishes the plan (issue: orphans trained beside the rerun)."""
    monkeypatch.setattr(runner, "probe_speed", lambda: 1.0)
    hold, plan_path = _held_plan(workspace)
    runs = workspace / "runs"
    plan = load_plan(str(plan_path), notebooks_dir=workspace / "notebooks")
    batch = subprocess.Popen([sys.executable, "-c", f"from reproduce.plans import load_plan; from reproduce.runner import "
                              f"run_plan; run_plan(load_plan({str(plan_path)!r}, notebooks_dir="
                              f"{str(workspace / 'notebooks')!r}), runs_dir={str(runs)!r})"],
                             cwd=Path(__file__).parent.parent)
    session = _wait_for_session(runs, batch)
    os.kill(batch.pid, signal.SIGKILL)
    batch.wait(timeout=30)
    deadline = time.monotonic() + 60
    while _session_alive(session) and time.monotonic() < deadline:  # the parent-death signal reaches papermill
        time.sleep(0.5)
    assert not _session_alive(session), "the notebook's processes outlived the runner"
    hold.unlink()
    assert run_plan(plan, runs_dir=runs) == 0
    assert json.loads((runs / "t" / "status.json").read_text())["held"]["state"] == "done"
    assert not (runs / "t" / "runner.json").exists()


def test_the_rerun_stops_what_a_dead_runner_left_running(workspace, monkeypatch, capsys):
    """A process left in a dead runner's notebook session (the lock names the session) is stopped before the rerun."""
    monkeypatch.setattr(runner, "probe_speed", lambda: 1.0)
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (workspace / "runs" / "t").mkdir(parents=True)
    (workspace / "runs" / "t" / "runner.json").write_text(json.dumps({"pid": dead.pid, "plan": "t", "session": orphan.pid}))
    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [good]\n")), notebooks_dir=workspace / "notebooks")
    assert run_plan(plan, runs_dir=workspace / "runs") == 0
    orphan.wait(timeout=60)  # ended (a TimeoutExpired here: still running)
    captured = capsys.readouterr()
    assert f"stopping 1 process(es) left running by a runner that died (session {orphan.pid})" in captured.out + captured.err


def test_a_second_runner_for_the_same_directory_is_refused(workspace, monkeypatch):
    monkeypatch.setattr(runner, "probe_speed", lambda: 1.0)
    (workspace / "runs" / "t").mkdir(parents=True)
    (workspace / "runs" / "t" / "runner.json").write_text(json.dumps({"pid": os.getppid(), "plan": "t", "started": "x"}))
    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [good]\n")), notebooks_dir=workspace / "notebooks")
    with pytest.raises(runner.runlock.RunnerBusyError, match=f"another runner \\(pid {os.getppid()}, started x\\) is running "
                       "plan t"):
        run_plan(plan, runs_dir=workspace / "runs")
    assert not (workspace / "runs" / "t" / "status.json").exists()


def test_sigterm_between_notebooks_ends_with_a_message_not_a_traceback(workspace, monkeypatch, capsys):
    """SIGTERM arriving while the runner is between two notebooks: the finished one is recorded, the batch stops
    with Stopped, and the command line turns it into a message and exit status 128 + 15."""
    import reproduce.__main__ as command

    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [good, slow]\n")), notebooks_dir=workspace / "notebooks")
    monkeypatch.setattr(runner, "probe_speed", lambda: 1.0)
    real = runner.atomic_write_json

    def term_after_first(path, *args, **kwargs):  # after a notebook's record: between two notebooks
        real(path, *args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(runner, "atomic_write_json", term_after_first)
    with pytest.raises(runner.Stopped):
        run_plan(plan, runs_dir=workspace / "runs")
    status = json.loads((workspace / "runs" / "t" / "status.json").read_text())
    assert status["good"]["state"] == "done" and "slow" not in status
    assert not (workspace / "runs" / "t" / "runner.json").exists()

    def stopped(args):
        raise runner.Stopped("SIGTERM")

    monkeypatch.setattr(command, "_run_or_report", stopped)
    assert command.main(["run", "smoke"]) == 128 + signal.SIGTERM
    assert "interrupted (SIGTERM): finished notebooks are kept" in capsys.readouterr().err


# ---- issue 35: a plan's data checked before anything runs ---------------------------------------

def _tree(root: Path, classes: list[str]) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8)).save(root / split / name / "0.png")
    return root


@pytest.mark.parametrize("case, argv, message", [
    ("missing", ["--dataset", "imagefolder", "--data-root", "/nonexistent"],
     "data set 'imagefolder' not found at /nonexistent (no such folder)"),
    ("file", ["--dataset", "imagefolder", "--data-root", "{tmp}/afile"],
     "(it is a file, not a folder)"),
    ("empty", ["--dataset", "imagefolder", "--data-root", "{tmp}/empty"],
     "(no folder {tmp}/empty/train)"),
    ("no images", ["--dataset", "imagefolder", "--data-root", "{tmp}/hollow"],
     "class folders without images: a"),
    ("one class", ["--dataset", "imagefolder", "--data-root", "{tmp}/one"],
     "holds one class folder (a)"),
    ("empty root", ["--data-root", ""], "--data-root is empty ('')"),
    ("misspelt", ["--dataset", "imagenett"],
     "--dataset imagenett: unknown data set 'imagenett'. Did you mean"),
])
def test_a_dry_run_checks_the_data_the_command_line_names(tmp_path, capsys, case, argv, message):
    """`python -m reproduce run laptop --dry-run --dataset imagefolder --data-root /nonexistent`
    listed every notebook as to run and exited 0, and the real run fell back to the built-in set;
    every such case is now exit 2 with the notebooks, the data set, the folder and what is wrong,
    before anything runs."""
    from reproduce.__main__ import main

    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "empty").mkdir()
    (tmp_path / "hollow" / "train" / "a").mkdir(parents=True)
    (tmp_path / "hollow" / "val" / "a").mkdir(parents=True)
    _tree(tmp_path / "one", ["a"])
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code = main(["run", "laptop", "--dry-run", "--runs-dir", str(tmp_path / "runs"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message.replace("{tmp}", str(tmp_path)) in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "laptop").exists()


def test_named_data_that_reads_is_accepted_and_a_notebook_it_does_not_reach_is_named(tmp_path,
                                                                                    capsys):
    """A readable tree passes; `--dataset` on notebooks that train on the built-in set (the smoke
    plan) was ignored without a word, and is now a loud notice naming them."""
    from reproduce.__main__ import main

    tree = _tree(tmp_path / "photos", ["a", "b"])
    named = ["--runs-dir", str(tmp_path / "runs"), "--dataset", "imagefolder", "--data-root",
             str(tree)]
    assert main(["run", "laptop", "--dry-run", *named]) == 0
    out = capsys.readouterr().out
    assert "02_training" not in out.split("NOTICE:")[-1]  # the laptop plan's training reads it
    assert main(["run", "smoke", "--dry-run", *named]) == 0
    notice = capsys.readouterr().out.split("NOTICE:")[-1]
    assert f"--dataset imagefolder --data-root {tree} does not apply to" in notice
    assert "02_training (the built-in set synthetic)" in notice
    assert "01_architecture (reads no data)" in notice


def test_a_notebook_that_falls_back_although_the_data_was_named_is_failed(workspace):
    """The real run fell back to the built-in set with exit 0 when the user gave a data root; a
    notebook whose results carry a fallback notice is now recorded as failed when the command line
    named the data."""
    make_notebook(workspace / "notebooks" / "fallback.ipynb", textwrap.dedent("""
        import json, os
        os.makedirs(output_dir, exist_ok=True)
        notice = "NOTICE: data set 'imagefolder' not found. Falling back to the built-in set"
        results = {"r": {"conditions": {"fallback_notice": notice}}}
        json.dump({"notebook": "fallback", "results": results},
                  open(os.path.join(output_dir, "fallback.json"), "w"))
    """), 'profile = None\noutput_dir = "out"\ndata_root = None')
    plan = load_plan(str(write_plan(workspace, "name: t\nnotebooks: [fallback]\n")),
                     notebooks_dir=workspace / "notebooks")
    assert run_plan(plan, runs_dir=workspace / "runs", data_root=str(workspace)) == 1
    record = json.loads((workspace / "runs" / "t" / "status.json").read_text())["fallback"]
    assert record["state"] == "failed"
    assert "fell back to the built-in set although the command line" in record["error"]
    # the plan's own data: a loud notice only
    assert run_plan(plan, runs_dir=workspace / "runs", force=True) == 0
