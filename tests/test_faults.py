"""Fault injection: signals mid-batch, kill -9 mid-write, NaN, a full disk, a signalled runner, racing NAS workers.

Every training here is the same tiny run (demo_v2_tiny, 128 synthetic images of 32 px, batch 16: 3 epochs of 8
steps, with EMA, mixup, stochastic depth and per-sample seeded crops so that every random state must be restored), and every
faulty run, once resumed, must end bit for bit where the uninterrupted one does. docs/reliability.md lists the
guarantees these tests hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import torch

from effnetv2_mini.engine import checkpoint as checkpoint_module
from effnetv2_mini.engine.checkpoint import TEMP_SUFFIX, CheckpointError, load_checkpoint, non_finite_tensors
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.errors import TrainingDiverged
from effnetv2_mini.engine.loop import fit

ROOT = Path(__file__).resolve().parent.parent
TIMING = {"images_per_sec", "epoch_seconds", "wall_time", "peak_memory_mb"}
STEPS = 8  # per epoch: 128 images / batch 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread per process: on a shared 2-core machine two threads per process make each step many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def config(out_dir, **overrides) -> TrainConfig:
    values = dict(model="demo_v2_tiny", dataset="synthetic", epochs=3, batch_size=16, image_size=32, recipe="simple",
                  workers=0, synthetic={"num_samples": 128}, quiet=True, out_dir=str(out_dir), seed=0, ema_decay=0.9,
                  mixup_alpha=0.2, drop_path_rate=0.1, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def metrics(out_dir) -> list[dict]:
    lines = Path(out_dir, "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


def assert_same_run(out_dir, reference) -> None:
    """metrics.jsonl (timing removed) and the final last.pt model and EMA tensors equal the reference run's."""
    assert metrics(out_dir) == metrics(reference)
    mine, theirs = load_checkpoint(Path(out_dir) / "last.pt"), load_checkpoint(Path(reference) / "last.pt")
    assert mine["finished"] and mine["epoch"] == 3
    for part in ("model", "ema"):
        assert mine[part].keys() == theirs[part].keys() and mine[part], part
        for name, tensor in mine[part].items():
            assert torch.equal(tensor, theirs[part][name]), f"{part}.{name} differs"


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run, trained once for the whole module."""
    out = tmp_path_factory.mktemp("straight")
    fit(config(out))
    assert len(metrics(out)) == 3
    return out


# A child process trains the same run with a fault armed by a forward pre-hook (model.train: training steps;
# model.eval: evaluation batches) or a wrapped torch.save. It starts in a session of its own, so os.killpg reaches
# it and its DataLoader workers (as Ctrl-C in a terminal does) and nothing else.
CHILD = textwrap.dedent("""
    import io, json, os, signal, sys
    import torch
    from effnetv2_mini.engine.config import config_from_dict
    from effnetv2_mini.engine.loop import fit

    torch.set_num_threads(1)  # as the test process: the same arithmetic
    spec = json.loads(sys.argv[1])
    calls = {"n": 0}

    def hook(module, inputs):
        if module.training == (spec["mode"] == "train"):
            calls["n"] += 1
            if calls["n"] == spec["at_call"]:
                os.killpg(os.getpgrp(), getattr(signal, spec["signal"]))

    def on_epoch_start(epoch, model, loader, mixer):
        if not getattr(model, "_armed", False) and spec.get("at_call"):
            model.register_forward_pre_hook(hook)
            model._armed = True

    if spec.get("kill_in_save"):  # kill -9 half-way through writing <kill_in_save> at the end of epoch 2
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            name = os.path.basename(f if isinstance(f, (str, os.PathLike)) else f.name)
            if name.startswith(spec["kill_in_save"]) and isinstance(obj, dict) and obj.get("epoch") == 2:
                buffer = io.BytesIO()
                real_save(obj, buffer)
                data = buffer.getvalue()
                handle = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
                handle.write(data[: len(data) // 2])
                handle.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    fit(config_from_dict(spec["config"]), on_epoch_start=on_epoch_start)
""")


def run_child(run_config: TrainConfig, **spec) -> subprocess.CompletedProcess:
    spec = {"mode": "train", "signal": "SIGINT", **spec, "config": dataclasses.asdict(run_config)}
    return subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, timeout=240,
                          start_new_session=True, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.parametrize("at_call, workers, epoch, batches", [
    (3, 0, 0, 3),  # step 3 of epoch 1
    (STEPS + 5, 2, 1, 5),  # step 5 of epoch 2, with DataLoader workers (they ignore the signal; the main process stops)
    (STEPS, 0, 0, STEPS),  # the last step of epoch 1: trained, not yet evaluated
])
def test_sigint_mid_batch_then_resume_matches_the_uninterrupted_run(tmp_path, straight, at_call, workers, epoch, batches):
    """Ctrl-C in the middle of a batch finishes that batch, checkpoints, exits non-zero; the resumed run is identical."""
    run_config = config(tmp_path / "run", workers=workers)
    child = run_child(run_config, at_call=at_call)
    assert child.returncode != 0, child.stdout + child.stderr
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["batches_done"]) == (epoch, batches), child.stderr[-2000:]
    fit(run_config)
    assert_same_run(tmp_path / "run", straight)


def test_sigint_during_evaluation_stops_after_the_next_batch_and_resumes_identically(tmp_path, straight):
    """Ctrl-C during epoch 2's evaluation: epoch 2 is saved, the run stops after epoch 3's first batch, resumes identically."""
    run_config = config(tmp_path / "run")
    child = run_child(run_config, at_call=STEPS + 2, mode="eval")  # the 2nd of epoch 2's 8 evaluation batches
    assert child.returncode != 0, child.stdout + child.stderr
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["batches_done"]) == (2, 1)
    assert len(metrics(tmp_path / "run")) == 2
    fit(run_config)
    assert_same_run(tmp_path / "run", straight)


def test_sigterm_during_training_checkpoints_and_resumes_identically(tmp_path, straight):
    """SIGTERM (what SLURM and `timeout` send) mid-batch is handled as Ctrl-C: checkpoint, non-zero exit, exact resume."""
    run_config = config(tmp_path / "run")
    child = run_child(run_config, at_call=STEPS + 2, signal="SIGTERM")
    assert child.returncode != 0, child.stdout + child.stderr
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (saved["epoch"], saved["batches_done"]) == (1, 2)
    fit(run_config)
    assert_same_run(tmp_path / "run", straight)


@pytest.fixture(scope="module")
def straight_accumulating(tmp_path_factory):
    """The uninterrupted run with --accumulate 100: more than an epoch's 8 batches, so one step per
    epoch."""
    out = tmp_path_factory.mktemp("straight_accumulating")
    fit(config(out, accumulate=100))
    return out


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_a_signal_stops_at_the_next_batch_when_accumulate_exceeds_the_epoch(
        tmp_path, straight_accumulating, signal_name):
    """--accumulate 100 on epochs of 8 batches: a stop was honoured only at `batches_done %
    accumulate == 0`, never reached, so SIGTERM and Ctrl-C were ignored and the run trained on. Now
    it stops after the batch in progress, the checkpoint keeps the gradients accumulated so far, and
    the resumed run ends bit for bit as the straight one."""
    run_config = config(tmp_path / "run", accumulate=100)
    child = run_child(run_config, at_call=STEPS + 2, signal=signal_name)
    assert child.returncode != 0, child.stdout + child.stderr
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    where = (saved["epoch"], saved["batches_done"], saved["finished"])
    assert where == (1, 2, False), child.stderr[-2000:]
    assert {k: saved["accumulation"][k] for k in ("batches", "accumulate", "kept")} == {
        "batches": 2, "accumulate": 100, "kept": "gradients"}
    assert saved["accumulation"]["gradients"].keys() <= saved["model"].keys()
    fit(run_config)
    assert_same_run(tmp_path / "run", straight_accumulating)


def partial_files(folder):
    return list(folder.glob("*.tmp")) + list(folder.glob(f".*{TEMP_SUFFIX}"))


def test_kill_9_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, straight):
    """kill -9 mid-write of epoch 2's checkpoint (best.pt is written first, then last.pt) keeps epoch 1's files
    loadable, the partial file is never read, and the rerun ends identically."""
    out = tmp_path / "run"
    child = run_child(config(out), kill_in_save=".best.pt.")
    assert child.returncode == -signal.SIGKILL, child.stdout + child.stderr
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert load_checkpoint(out / "best.pt")["epoch"] == 1
    partial = list(out.glob(f".best.pt.*{TEMP_SUFFIX}"))
    assert len(partial) == 1  # the kill really came mid-write
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(partial[0])
    fit(config(out))
    assert_same_run(out, straight)
    assert not partial_files(out)


def _arm_at(epoch_index: int, step: int, poison=None, loss_nan: bool = False):
    """An on_epoch_start callback that, from training step ``step`` (1-based) of epoch ``epoch_index`` (0-based) on,
    calls ``poison(model)`` before the forward pass, or makes the model's output (hence the loss) NaN."""

    def on_epoch_start(epoch, model, loader, mixer):
        if epoch != epoch_index:
            return
        calls = {"n": 0}

        def before(module, inputs):
            if module.training:
                calls["n"] += 1
                if calls["n"] >= step and poison is not None:
                    with torch.no_grad():
                        poison(module)

        def after(module, inputs, output):
            return output * float("nan") if module.training and calls["n"] >= step and loss_nan else None

        model.register_forward_pre_hook(before)
        model.register_forward_hook(after)

    return on_epoch_start


def test_nan_mid_run_leaves_only_finite_checkpoints_and_resumes_with_a_lower_lr(tmp_path):
    """An infinite BatchNorm statistic is never saved; the message names last.pt and --resume-with-changes, which then works."""
    out = tmp_path / "run"

    def poison(model):
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_var.mul_(float("inf"))

    with pytest.raises(TrainingDiverged) as error:
        fit(config(out), on_epoch_start=_arm_at(1, 3, poison))
    message = str(error.value)
    assert "became NaN or infinite" in message and str(out / "last.pt") in message
    assert "end of epoch 1" in message and "--resume-with-changes" in message
    for name in ("last.pt", "best.pt"):
        saved = load_checkpoint(out / name)
        assert saved["epoch"] == 1
        assert non_finite_tensors(saved["model"]) == [] and non_finite_tensors(saved["ema"]) == []
    with pytest.raises(ValueError, match="different settings.*--resume-with-changes"):
        fit(config(out, lr=0.001))  # without the flag the changed lr is refused
    summary = fit(config(out, lr=0.001, resume_with_changes=True))
    assert summary["epochs"] == 3 and [row["epoch"] for row in metrics(out)] == [1, 2, 3]
    changes = json.loads((out / "config.json").read_text())["changes"]
    assert changes == [{"at_epoch": 1, "fields": {"lr": [None, 0.001]}}]
    assert non_finite_tensors(load_checkpoint(out / "last.pt")["model"]) == []


def test_nan_loss_in_the_first_epoch_says_no_checkpoint_exists(tmp_path):
    """A loss that becomes NaN before any checkpoint stops at once and says there is nothing to resume."""
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"loss became nan at epoch 1, batch 4.*no checkpoint was written") as error:
        fit(config(out), on_epoch_start=_arm_at(0, 4, loss_nan=True))
    assert "start again with a lower --lr" in str(error.value)
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()


def test_a_full_disk_loses_nothing_and_the_rerun_after_freeing_space_matches(tmp_path, straight, monkeypatch):
    """ENOSPC on metrics.jsonl, then on best.pt: 'disk full' naming the file, nothing torn or lost; the rerun ends identically."""
    assert metrics(straight)[1]["ema_top1"] > metrics(straight)[0]["ema_top1"]  # epoch 2 writes best.pt
    out = tmp_path / "run"
    full = {"on": False}
    real_save, real_fsync = checkpoint_module.torch.save, checkpoint_module.os.fsync

    def fsync(fd):  # the disk is full from the end of epoch 2 on: the first write there is metrics.jsonl's
        if full["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    def arm(epoch, model, loader, mixer):
        full["on"] = epoch == 1

    monkeypatch.setattr(checkpoint_module.os, "fsync", fsync)
    with pytest.raises(CheckpointError, match=r"disk full while writing .*metrics\.jsonl.*Free some space and rerun"):
        fit(config(out), on_epoch_start=arm)
    assert len(metrics(out)) == 1 and load_checkpoint(out / "last.pt")["epoch"] == 1
    assert not partial_files(out)
    monkeypatch.undo()

    def save(obj, f, *args, **kwargs):  # now the disk fills up while best.pt of epoch 2 is being written
        if isinstance(obj, dict) and obj.get("epoch") == 2 and os.path.basename(f.name).startswith(".best.pt."):
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)
    with pytest.raises(CheckpointError, match=r"disk full while writing .*best\.pt: the previous file is untouched"):
        fit(config(out))
    assert load_checkpoint(out / "last.pt")["epoch"] == 1 and load_checkpoint(out / "best.pt")["epoch"] == 1
    assert not partial_files(out)
    monkeypatch.undo()  # space freed
    fit(config(out))
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert_same_run(out, straight)


# ---- the batch runner ------------------------------------------------------------------------------------------

HELD = textwrap.dedent("""
    import os, pathlib, signal, time
    if deaf:  # like a kernel still finishing a batch and writing its checkpoint
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    pathlib.Path(hold + ".running").touch()
    while os.path.exists(hold):  # held until the test signals the runner
        time.sleep(0.2)
""")


def _notebook(path: Path, parameters: str, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.parametrize("signals, deaf", [
    ([signal.SIGTERM], False),
    ([signal.SIGHUP], False),
    ([signal.SIGTERM, signal.SIGTERM], True),  # the second one ends the grace period at once
])
def test_a_signal_to_the_runner_records_interrupted_and_leaves_no_process(tmp_path, signals, deaf):
    """SIGTERM/SIGHUP to the runner: status.json says interrupted (signal name), and no descendant process survives it."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "held.ipynb", 'output_dir = "out"\nhold = ""\ndeaf = False', HELD)
    hold = tmp_path / "hold"
    hold.touch()
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'name: t\nnotebooks:\n  - name: held\n    parameters: {{hold: "{hold}", deaf: {str(deaf).lower()}}}\n')
    runs = tmp_path / "runs"
    script = (f"from reproduce.plans import load_plan; from reproduce.runner import run_plan; "
              f"run_plan(load_plan({str(plan)!r}, notebooks_dir={str(notebooks)!r}), runs_dir={str(runs)!r})")
    batch = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    runner, seen = psutil.Process(batch.pid), {}
    try:
        deadline = time.monotonic() + 120
        while not Path(f"{hold}.running").exists():
            assert time.monotonic() < deadline and batch.poll() is None, "the held notebook did not start"
            for child in runner.children(recursive=True):
                seen.setdefault(child.pid, child)
            time.sleep(0.2)
        for child in runner.children(recursive=True):
            seen.setdefault(child.pid, child)
        assert any("ipykernel" in " ".join(p.cmdline()) for p in seen.values() if _alive(p)), "no kernel among the descendants"
        start = time.monotonic()
        for signum in signals:
            os.kill(batch.pid, signum)  # the runner only, as SLURM or a closing terminal would
            time.sleep(1.0)
        _, err = batch.communicate(timeout=90)
        assert time.monotonic() - start < 40  # well inside the 60 s grace period a lone signal gives a deaf kernel
        assert batch.returncode != 0
        assert "Traceback" not in err or "KeyboardInterrupt" in err.splitlines()[-1], err[-2000:]
        record = json.loads((runs / "t" / "status.json").read_text())["held"]
        assert record["state"] == "interrupted" and signal.Signals(signals[0]).name in record["error"]
        time.sleep(3)
        assert [p.pid for p in seen.values() if _alive(p)] == []
    finally:  # whatever failed above, leave no process of this test running
        hold.unlink(missing_ok=True)
        for process in [runner, *seen.values()]:
            with contextlib.suppress(psutil.Error):
                if _alive(process):
                    process.kill()


TRAINING = textwrap.dedent("""
    import pathlib, time
    import torch
    from effnetv2_mini.engine.config import TrainConfig
    from effnetv2_mini.engine.loop import fit

    torch.set_num_threads(1)

    def slow(module, inputs):  # a slow step, as a large model's: 0.4 s per training batch
        if module.training:
            time.sleep(0.4)

    def on_epoch_start(epoch, model, loader, mixer):
        if epoch == 1 and not getattr(model, "_slow", False):
            model.register_forward_pre_hook(slow)
            model._slow = True
            pathlib.Path(out, "epoch2").touch()

    config = TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=3, batch_size=16,
                         image_size=32, recipe="simple", workers=0, synthetic={"num_samples": 512},
                         out_dir=out, device="cpu")
    fit(config, on_epoch_start=on_epoch_start)
""")


def test_sigterm_to_the_runner_lets_the_kernels_training_checkpoint_at_the_next_batch(tmp_path):
    """docs/reliability.md said a SIGTERM to the runner makes a training notebook save a checkpoint
    at the next batch; papermill, signalled too, tore the kernel down first (the log ended in
    ZMQError) and the rerun redid the epoch from its start. Now only the kernel is signalled: its
    training finishes the batch and checkpoints mid-epoch."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "train.ipynb", 'output_dir = "out"\nout = ""', TRAINING)
    out = tmp_path / "run"
    plan = tmp_path / "plan.yaml"
    plan.write_text(f'name: t\nnotebooks:\n  - name: train\n    parameters: {{out: "{out}"}}\n')
    script = (f"from reproduce.plans import load_plan; from reproduce.runner import run_plan; "
              f"run_plan(load_plan({str(plan)!r}, notebooks_dir={str(notebooks)!r}), "
              f"runs_dir={str(tmp_path)!r})")
    batch = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1"))
    try:
        deadline = time.monotonic() + 180
        while not (out / "epoch2").exists():
            assert time.monotonic() < deadline and batch.poll() is None, "no epoch 2"
            time.sleep(0.2)
        time.sleep(1.0)  # a batch or two into epoch 2
        os.kill(batch.pid, signal.SIGTERM)
        batch.communicate(timeout=120)
    finally:
        if batch.poll() is None:
            batch.kill()
    saved = load_checkpoint(out / "last.pt")
    assert (saved["epoch"], saved["batches_done"] >= 1) == (1, True), saved["batches_done"]
    log = (tmp_path / "t" / "logs" / "train.log").read_text()
    assert f"interrupted: checkpoint written to {out / 'last.pt'}" in log, log[-3000:]
    assert "ZMQError" not in log, log[-3000:]
    record = json.loads((tmp_path / "t" / "status.json").read_text())["train"]
    assert record["state"] == "interrupted" and "SIGTERM" in record["error"]


# ---- NAS workers -----------------------------------------------------------------------------------------------

def test_two_nas_workers_with_one_seed_never_train_one_candidate_twice(tmp_path):
    """Two NAS workers with one seed: both exit 0, each architecture trained and completed once, no claim file left."""
    from optuna.trial import TrialState

    from effnetv2_mini.study.nas_driver import load_study

    command = [sys.executable, "-m", "effnetv2_mini.cli", "nas", "--out", str(tmp_path), "--trials", "3", "--seed", "7",
               "--epochs", "1", "--image-size", "32", "--batch-size", "32", "--train-samples", "64", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
               for _ in range(2)]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    study = load_study(tmp_path)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 3
    assert len({t.user_attrs["arch_key"] for t in complete}) == len(complete)
    for candidate in (tmp_path / "candidates").iterdir():
        if candidate.is_dir() and (candidate / "metrics.jsonl").exists():
            epochs = [json.loads(line)["epoch"] for line in (candidate / "metrics.jsonl").read_text().splitlines()]
            assert len(epochs) == len(set(epochs)), candidate
    assert not list((tmp_path / "candidates").glob("*.claim*"))
    assert not study.get_trials(states=(TrialState.RUNNING,))


class _Study:
    """Just enough of an Optuna study for ``_claim``: trials whose states ``change(call)`` may alter between calls."""

    def __init__(self, trials: dict[int, tuple[str, str]], change=None):
        self.trials, self.change, self.calls = trials, change, 0  # number -> (state name, arch_key)

    def get_trials(self, deepcopy=False, states=()):
        from types import SimpleNamespace

        self.calls += 1
        if self.change:
            self.change(self.calls, self.trials)
        wanted = {s.name for s in states}
        return [SimpleNamespace(number=n, state=s, user_attrs={"arch_key": k}) for n, (s, k) in self.trials.items()
                if s in wanted]


def test_a_claim_released_while_it_is_read_is_taken_not_a_crash(tmp_path, monkeypatch):
    """A claim released between our failed link and our read of it is retried and taken, not a FileNotFoundError."""
    from effnetv2_mini.study import nas_driver as nas

    real_link, raced = os.link, {"done": False}

    def link(source, target):
        if not raced["done"]:  # the claim existed at this instant and is gone at the next
            raced["done"] = True
            raise FileExistsError(errno.EEXIST, "File exists", str(target))
        return real_link(source, target)

    monkeypatch.setattr(nas.os, "link", link)
    path = tmp_path / "abc.claim"
    assert nas._claim(_Study({}), path, 4, "abc") is None
    assert path.read_text() == "4" and not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("claim_left", [True, False])
def test_a_candidate_completed_during_the_claim_is_a_duplicate_not_trained_again(tmp_path, claim_left):
    """A candidate completed by another trial while we claim it is a duplicate: not trained again, no claim of ours left."""
    from effnetv2_mini.study.nas_driver import _claim

    path = tmp_path / "abc.claim"
    if claim_left:
        path.write_text("0")

    def complete_after_first_look(call, trials):
        trials[0] = ("COMPLETE" if call > 1 else "RUNNING", "abc")

    assert _claim(_Study({0: ("RUNNING", "abc")}, complete_after_first_look), path, 1, "abc") == "duplicate of trial 0"
    assert path.read_text() == "0" if claim_left else not path.exists()  # a holder's claim goes with its own callback
    assert not list(tmp_path.glob("*.tmp"))


def test_a_pruned_trial_never_releases_the_claim_of_the_trial_training_its_candidate(tmp_path):
    """Only the claim's holder removes it: the release callback of a pruned duplicate leaves trial 0's claim."""
    from types import SimpleNamespace

    from effnetv2_mini.study.nas_driver import _Objective

    (tmp_path / "candidates").mkdir()
    claim = tmp_path / "candidates" / "abc.claim"
    claim.write_text("0")
    objective = _Objective(None, None, None, tmp_path, "cpu", -0.07, -0.05, None)
    objective.release(None, SimpleNamespace(number=1, user_attrs={"arch_key": "abc"}))
    assert claim.read_text() == "0"
    objective.release(None, SimpleNamespace(number=0, user_attrs={"arch_key": "abc"}))
    assert not claim.exists()


def test_a_users_own_tmp_files_survive_and_best_pt_is_its_own_file(tmp_path):
    """The clean-up of partial files removes only this program's (``*.effnetv2-partial``), never a user's
    ``notes.json.tmp`` in the run directory; and damaging last.pt in place leaves best.pt whole (no hard link)."""
    out = tmp_path / "run"
    out.mkdir()
    for name in ("notes.json.tmp", "model.pt.tmp", "log.jsonl.tmp"):
        (out / name).write_text("mine")
    fit(config(out))
    assert all((out / name).read_text() == "mine" for name in ("notes.json.tmp", "model.pt.tmp", "log.jsonl.tmp"))
    assert (out / "best.pt").stat().st_ino != (out / "last.pt").stat().st_ino
    with open(out / "last.pt", "r+b") as damaged:
        damaged.write(b"garbage!" * 64)
    assert load_checkpoint(out / "best.pt")["epoch"] >= 1


def test_a_second_training_into_a_directory_in_use_is_refused_naming_the_holder(tmp_path):
    """Two trainings into one --out at once interleaved their epochs (1,1,2,2,...) and overwrote each other's
    checkpoints; the run directory's lock now refuses the second, naming the first (here: this test holds it)."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on elsewhere, since 2026-12-06 10:00:00\n")
        held.flush()
        with pytest.raises(RuntimeError, match=r"in use by another training \(pid 4242 on elsewhere.*give another --out"):
            fit(config(out, epochs=1))
    assert not (out / "metrics.jsonl").exists()
    fit(config(out, epochs=1))  # released: it trains
    assert len(metrics(out)) == 1


@pytest.mark.parametrize("change, message", [
    ({"synthetic": {"num_samples": 64}}, "synthetic: {'num_samples': 128} -> {'num_samples': 64}"),
    ({"max_steps_per_epoch": 2}, "max_steps_per_epoch: None -> 2"),
    ({"data_root": "/elsewhere"}, "data_root: None -> '/elsewhere'"),
])
def test_an_interrupted_run_resumed_with_other_data_settings_is_refused(tmp_path, change, message):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config(out), stop_after_steps=3)
    with pytest.raises(ValueError, match=re.escape(message)):
        fit(config(out, **change))


def test_an_interrupted_progressive_run_resumed_without_its_schedule_is_refused(tmp_path):
    from effnetv2_mini.paper.progressive import linear_schedule

    out = tmp_path / "run"
    schedule = linear_schedule(3, 3, (16, 32), 32, source="test")
    with pytest.raises(KeyboardInterrupt):
        fit(config(out), schedule=schedule, stop_after_steps=3)
    with pytest.raises(ValueError, match="holds a run trained with the progressive schedule of 'test'; this command asks "
                                         "for none"):
        fit(config(out))
    fit(config(out), schedule=schedule)  # its own command resumes it
    assert [row["image_size"] for row in metrics(out)] == [16, 24, 32]


# ---- what a resume changes is recorded, or refused -----------------------------------------------

def test_every_setting_is_checked_on_resume_or_free_by_design():
    """Each TrainConfig field is either compared on resume (refused, or recorded with
    --resume-with-changes) or listed as changing nothing trained or recorded: a new field must be
    put in one of the two."""
    from effnetv2_mini.engine.rundir import FIXED_FIELDS, FREE_FIELDS, IDENTITY_FIELDS

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(IDENTITY_FIELDS) | set(FREE_FIELDS) == fields
    assert not set(IDENTITY_FIELDS) & set(FREE_FIELDS)
    assert set(FIXED_FIELDS) <= set(IDENTITY_FIELDS)


def recorded(out) -> dict:
    return json.loads(Path(out, "config.json").read_text())


def test_an_fp32_run_resumed_with_amp_is_refused_or_recorded_from_the_batch_it_began(tmp_path):
    """The issue: an fp32 run resumed with --amp trained its later batches in bf16 while config.json
    said amp: true for the whole run. Now the plain resume is refused, and --resume-with-changes
    records where amp began; a later plain resume keeps that record (it used to drop every "changes"
    entry)."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config(out), stop_after_steps=3)
    refused = r"different settings \(amp: None -> True\).*add --resume-with-changes"
    with pytest.raises(ValueError, match=refused):
        fit(config(out, amp=True))
    with pytest.raises(KeyboardInterrupt):
        fit(config(out, amp=True, resume_with_changes=True), stop_after_steps=STEPS + 1)
    # the effective values: fp32, then bf16
    entry = {"at_epoch": 0, "at_batch": 3, "fields": {"amp": [False, True]}}
    assert recorded(out)["changes"] == [entry] and recorded(out)["amp"] is True
    fit(config(out, amp=True, resume_with_changes=True))  # nothing changes now: the record stays
    assert recorded(out)["changes"] == [entry]
    assert [row["epoch"] for row in metrics(out)] == [1, 2, 3]


def test_a_progressive_run_resumed_without_its_schedule_records_the_loss_of_it(tmp_path):
    """The issue: under --resume-with-changes a progressive run resumed without its schedule lost
    "progressive" from config.json with no "changes" entry. Now the old schedule is in the entry,
    with the epoch it stopped applying."""
    from effnetv2_mini.paper.progressive import linear_schedule

    out = tmp_path / "run"
    schedule = linear_schedule(3, 3, (16, 32), 32, source="test")
    with pytest.raises(KeyboardInterrupt):
        fit(config(out), schedule=schedule, stop_after_steps=STEPS + 2)
    before = recorded(out)["progressive"]
    fit(config(out, resume_with_changes=True))
    record = recorded(out)
    assert "progressive" not in record
    (entry,) = record["changes"]
    assert (entry["at_epoch"], entry["at_batch"]) == (1, 2)
    assert entry["fields"]["progressive"] == [before, None]
    assert [row["image_size"] for row in metrics(out)] == [16, 32, 32]


def test_a_run_resumed_on_another_device_records_it(tmp_path, capsys):
    """A resume on another machine (here: config.json says the first epochs ran on cuda:0) is not
    refused, as the same command is rerun; the effective device is recorded as a change from the
    epoch it took over, and said."""
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        fit(config(out), stop_after_steps=STEPS + 2)
    moved = recorded(out)
    (out / "config.json").write_text(json.dumps(dict(moved, device="cuda:0")))
    fit(config(out))
    entry = {"at_epoch": 1, "at_batch": 2, "fields": {"device": ["cuda:0", "cpu"]}}
    assert recorded(out)["changes"] == [entry]
    said = "resuming with other runtime settings (device: 'cuda:0' -> 'cpu') from epoch 2"
    assert said in capsys.readouterr().err


def test_kill_9_with_loader_workers_frees_the_run_directory_at_once(tmp_path):
    """kill -9 of a training with --workers 2: its orphaned loader workers shared the lock file and
    held the flock for seconds, so the rerun said "in use by another training (pid N)" with N dead.
    Now forked children close their copy: the lock is free as soon as the training is gone, while
    its workers still live, and the rerun resumes."""
    import fcntl

    out = tmp_path / "run"
    command = [sys.executable, "-m", "effnetv2_mini.cli", "train", "--model", "demo_v2_tiny",
               "--dataset", "synthetic", "--image-size", "32", "--train-samples", "128",
               "--batch-size", "16", "--recipe", "simple", "--workers", "2", "--quiet", "--device",
               "cpu", "--out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    training = subprocess.Popen([*command, "--epochs", "40"], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        deadline = time.monotonic() + 120
        lock = out / ".lock"
        while len(workers) < 2 or not lock.exists() or "pid" not in lock.read_text():
            assert time.monotonic() < deadline and training.poll() is None, "no loader workers"
            workers = psutil.Process(training.pid).children()
            time.sleep(0.2)
        training.kill()
        training.wait()
        assert any(_alive(w) for w in workers), "the workers were gone before the lock was tried"
        with open(lock, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: orphans held it
            fcntl.flock(handle, fcntl.LOCK_UN)
        rerun = subprocess.run([*command, "--epochs", "1", "--resume-with-changes"], cwd=ROOT,
                               env=env, capture_output=True, text=True, timeout=240)
        assert rerun.returncode == 0 and "in use" not in rerun.stderr, rerun.stderr[-2000:]
    finally:
        for process in [*workers, training]:
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                process.kill()
