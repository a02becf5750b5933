"""Replay the hostile-input probes of docs/reliability.md and issue 35 against a checkout, and count
the outcomes.

    python tests/replay_probes.py                     # this checkout; ~35 minutes on 2 CPU cores
    python tests/replay_probes.py --code /tmp/before  # another one (git archive COMMIT | tar -x)
    python tests/replay_probes.py --only acc amp --json probes.json

Each probe runs as a new user would: the command line in a scratch folder (``python -m
effnetv2_mini.cli``, ``python -m reproduce``, ``bench/...``, papermill) with ``PYTHONPATH`` at
``--code``. Its outcome is one of

- ``ok``: the expected refusal (exit != 0, the expected words, no traceback) or the expected result;
- ``traceback``: a Python traceback reached the terminal;
- ``silent wrong``: exit 0 (or a finished run) where the input cannot work or a change went
  unrecorded;
- ``lost``: work that was done is not kept (no interrupt checkpoint, an epoch redone);
- ``hang``: still running past its time (a stop signal ignored);
- ``unclear``: refused, but not with the expected message (a wrong cause, or no fix named).

Not run by ``make test`` (slow); the tests that hold each case are named in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
T = ("--model demo_v2_tiny --dataset synthetic --image-size 32 --train-samples 128 --batch-size 16 "
     "--recipe simple --workers 0")
WORDS = {  # shorthands in the probes' command lines
    "$CLI": f"{sys.executable} -m effnetv2_mini.cli", "$T": T,
    "$RUN": f"{sys.executable} -m reproduce run",
    "$DRY": f"{sys.executable} -m reproduce run laptop --dry-run --runs-dir {{d}}/runs",
    "$BENCH": f"{sys.executable} {{code}}/bench/bench_time_to_accuracy.py --train-samples 64 "
              "--batch-size 16 --epochs 1 --recipe simple",
    "$PM": f"{sys.executable} -m papermill {{code}}/notebooks/02_training.ipynb {{d}}/out.ipynb "
           "-k python3 --cwd {code}/notebooks -p output_dir {d}/out -p epochs 1 "
           "-p train_samples 64",
}


@dataclass
class Probe:
    """``cmd``: a command line (``$T`` etc.: :data:`WORDS`; ``{d}``: the probe's scratch folder,
    ``{code}``: the checkout); ``expect``: "error" (exit != 0 and ``words`` in the output) or "ok"
    (exit 0 and ``words``); ``check(code, text, folder)`` gives an (outcome, why) or None to judge
    as usual; ``setup(folder)`` prepares files; ``action(folder, env)`` runs a signal probe."""

    name: str
    cmd: str = ""
    words: str = ""
    expect: str = "error"
    timeout: float = 300
    setup: object = None
    check: object = None
    action: object = None


def argv(cmd: str, folder: Path, code_root: str) -> list[str]:
    for word, value in WORDS.items():
        cmd = cmd.replace(word, value)
    return [a.format(d=folder, code=code_root) for a in shlex.split(cmd)]


def run(cmd: str, folder: Path, env: dict, timeout: float) -> tuple[int | None, str]:
    try:
        done = subprocess.run(argv(cmd, folder, env["PYTHONPATH"]), cwd=folder, env=env,
                              capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as expired:
        return None, str(expired.stdout or "") + str(expired.stderr or "")


def last(text: str) -> str:
    return (text.strip().splitlines() or [""])[-1][:160]


def judge(probe: Probe, code: int | None, text: str, folder: Path) -> tuple[str, str]:
    if code is None:
        return "hang", f"still running after {probe.timeout:.0f} s"
    verdict = probe.check(code, text, folder) if probe.check else None
    if verdict is not None:
        return verdict
    if "Traceback (most recent call last)" in text:
        return "traceback", last(text)
    if probe.expect == "error":
        if code == 0:
            return "silent wrong", "exit 0: " + last(text)
        return ("unclear" if probe.words and not re.search(probe.words, text) else "ok"), last(text)
    if code != 0:
        return "unclear", f"exit {code}: " + last(text)
    if probe.words and not re.search(probe.words, text):
        return "silent wrong", f"no {probe.words!r} in the output"
    return "ok", last(text)


# ---- probes that signal or kill a run ------------------------------------------------------------

def _wait_for(predicate, timeout: float, process=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process is not None and process.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def _checkpoint(path: Path) -> dict | None:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - missing or half-written
        return None


def _start(cmd: str, folder: Path, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(argv(cmd, folder, env["PYTHONPATH"]), cwd=folder, env=env, text=True,
                            **kwargs)


def stop_training(signum: int, accumulate: int):
    """Train ``$T --epochs 300 --accumulate N``, signal it after its first checkpoint: does it stop
    at the next batch with a checkpoint, and resume?"""
    name = signal.Signals(signum).name

    def action(folder: Path, env: dict) -> tuple[str, str]:
        out, cmd = folder / "run", f"$CLI train $T --accumulate {accumulate} --out {{d}}/run"
        training = _start(f"{cmd} --epochs 300", folder, env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, start_new_session=True)
        if not _wait_for(lambda: (out / "last.pt").exists(), 240, training):
            training.kill()
            return "unclear", "the training did not reach its first checkpoint"
        time.sleep(1.5)
        training.send_signal(signum)
        try:
            text, _ = training.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            training.kill()
            training.communicate()
            return "hang", f"still training 30 s after {name}"
        if "Traceback (most recent call last)" in text:
            return "traceback", last(text)
        saved = _checkpoint(out / "last.pt")
        if saved is not None and saved["finished"]:
            return "hang", f"{name} was ignored: the run trained to its end"
        if saved is None or saved["batches_done"] == 0:
            return "lost", "no interrupt checkpoint"
        resume = f"{cmd} --epochs {saved['epoch'] + 1} --resume-with-changes"
        code, text = run(resume, folder, env, 300)
        where = f"epoch {saved['epoch'] + 1}, batch {saved['batches_done']}"
        return ("ok", f"stopped at {where}; resumes") if code == 0 else ("unclear", last(text))

    return action


def kill_9_with_workers(folder: Path, env: dict) -> tuple[str, str]:
    """kill -9 of a ``--workers 2`` training, then the same command at once."""
    out, cmd = folder / "run", "$CLI train $T --workers 2 --epochs 30 --out {d}/run"
    training = _start(cmd, folder, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not _wait_for(lambda: (out / "last.pt").exists(), 240, training):
        training.kill()
        return "unclear", "the training did not reach its first checkpoint"
    time.sleep(1.0)
    training.kill()
    training.wait()
    resume = cmd.replace("--epochs 30", "--epochs 2 --resume-with-changes")
    code, text = run(resume, folder, env, 120)
    if "in use by another training" in text and "is gone" not in text:
        return "unclear", "the rerun says the directory is in use by a process that is dead"
    if "Traceback (most recent call last)" in text:
        return "traceback", last(text)
    return ("ok", "the rerun resumed at once") if code == 0 else ("unclear", last(text))


def runner_sigterm(folder: Path, env: dict) -> tuple[str, str]:
    """SIGTERM to ``python -m reproduce run`` while notebook 02 trains: a checkpoint at the next
    batch, or the epoch redone?"""
    (folder / "plan.yaml").write_text(
        "name: probe\ndefaults: {profile: smoke}\nnotebooks:\n  - name: 02_training\n"
        "    parameters: {epochs: 3, image_size: 96, eval_size: 96, train_samples: 1000, "
        "batch_size: 50}\n")
    runner = _start("$RUN {d}/plan.yaml --runs-dir {d}/runs", folder, env, stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT)
    checkpoints = lambda: list((folder / "runs" / "probe").rglob("last.pt"))  # noqa: E731
    if not _wait_for(lambda: bool(checkpoints()), 400, runner):
        runner.kill()
        return "unclear", "notebook 02 did not reach its first checkpoint"
    time.sleep(2.0)
    runner.send_signal(signal.SIGTERM)
    try:
        runner.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        runner.kill()
        return "hang", "the runner did not stop within 120 s of SIGTERM"
    saved = _checkpoint(checkpoints()[0])
    log = (folder / "runs" / "probe" / "logs" / "02_training.log").read_text(errors="replace")
    if saved is None or saved["batches_done"] == 0:
        zmq = "; the log ends in ZMQError" if "ZMQError" in log else ""
        return "lost", "no checkpoint at the next batch: the rerun redoes the epoch" + zmq
    return "ok", f"checkpoint at epoch {saved['epoch'] + 1}, batch {saved['batches_done']}"


def interrupted_then(rerun: str, first: str, want: str):
    """Train with ``first``, stop it with SIGTERM after epoch 1, rerun with ``rerun``: refused, or
    recorded in config.json's "changes" (``want``)?"""

    def action(folder: Path, env: dict) -> tuple[str, str]:
        out = folder / "run"
        training = _start(f"$CLI train $T --epochs 4 {first} --out {{d}}/run", folder, env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
        if not _wait_for(lambda: (out / "last.pt").exists(), 240, training):
            training.kill()
            return "unclear", "the first training did not reach its first checkpoint"
        training.send_signal(signal.SIGTERM)
        training.wait(timeout=60)
        code, text = run(f"$CLI train $T --epochs 4 {rerun} --out {{d}}/run", folder, env, 300)
        if code is None or "Traceback (most recent call last)" in text:
            return ("hang", "the resume did not end") if code is None else ("traceback", last(text))
        if code != 0:
            refused = "different settings" in text
            return ("ok", "refused: " + last(text)[:140]) if refused else ("unclear", last(text))
        changes = json.loads((out / "config.json").read_text()).get("changes", [])
        if not any(want in entry["fields"] for entry in changes):
            return "silent wrong", f"resumed with no {want!r} in config.json's changes"
        return "ok", f"recorded: {changes[-1]}"[:160]

    return action


# ---- set-ups and checks --------------------------------------------------------------------------

def tree(folder: Path, classes, per_class: int = 2) -> Path:
    from PIL import Image

    for split in ("train", "val"):
        for name in classes:
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                image = Image.new("RGB", (40, 40), (40 * i, 60, 90))
                image.save(folder / split / name / f"{i}.png")
    return folder


def files(folder: Path) -> None:
    """A finished tiny run, damaged checkpoints, a file, trees of one and four classes, plans."""
    first = argv("$CLI train $T --epochs 1 --quiet --out {d}/ten", folder, os.environ["PYTHONPATH"])
    subprocess.run(first, cwd=folder, capture_output=True, check=True)
    data = (folder / "ten" / "last.pt").read_bytes()
    (folder / "trunc.pt").write_bytes(data[: len(data) // 2])
    (folder / "text.pt").write_text("hello, I am not a checkpoint\n")
    (folder / "empty.pt").write_bytes(b"")
    (folder / "random.pt").write_bytes(os.urandom(300))
    (folder / "afile").write_text("a file")
    for name in ("notes", "empty"):
        (folder / name).mkdir()
    tree(folder / "one", ["a"])
    tree(folder / "photos", ["a", "b", "c", "d"])
    (folder / "theirs").mkdir()
    (folder / "theirs" / "metrics.jsonl").write_text('{"x": 1}\n')
    head = "defaults: {profile: smoke}\nnotebooks:\n  - name: 02_training\n    parameters: "
    (folder / "minus.yaml").write_text(f"name: minus\n{head}{{epochs: -1}}\n")
    (folder / "small.yaml").write_text(
        f"name: small\n{head}{{epochs: 1, train_samples: 64, dataset: imagenette}}\n")


def notice(code, text, folder):
    return None if "does not apply" in text else ("silent wrong", "no notice: --dataset is unused")


def warned(code, text, folder):
    return None if "warning" in text.lower() else ("silent wrong", "no warning for lr 1e6")


def not_100(code, text, folder):
    return ("silent wrong", "trained on one class: " + last(text)[:120]) if code == 0 else None


def papermill_refused(code, text, folder):
    """papermill prints its own traceback for a failing cell: the notebook's error is the refusal"""
    if code == 0:
        return "silent wrong", "the notebook ran to its end"
    found = re.search(r"(ParameterError|ValueError): [^\n]*", text)
    return ("ok", found.group(0)[:160]) if found else ("unclear", last(text))


# ---- the probes ----------------------------------------------------------------------------------

def probes() -> list[Probe]:
    """The issue's probes (issue 35), then the rows of docs/reliability.md that have a command."""
    return [
        Probe("acc_sigterm", action=stop_training(signal.SIGTERM, 100)),
        Probe("acc_sigint", action=stop_training(signal.SIGINT, 100)),
        Probe("dry_nonexistent", "$DRY --dataset imagefolder --data-root /nonexistent",
              "not found"),
        Probe("dry_file", "$DRY --dataset imagefolder --data-root {d}/afile", "file"),
        Probe("dry_empty", "$DRY --dataset imagefolder --data-root {d}/empty", "no folder"),
        Probe("dry_empty_root", "$DRY --data-root ''", "empty"),
        Probe("dry_one_class", "$DRY --dataset imagefolder --data-root {d}/one", "one class"),
        Probe("dry_misspelt", "$DRY --dataset imagenett", "Did you mean imagenette"),
        Probe("dry_plan_minus", "$RUN {d}/minus.yaml --dry-run --runs-dir {d}/runs",
              "'epochs' must be"),
        Probe("dry_does_not_apply", "$RUN smoke --dry-run --runs-dir {d}/runs --dataset "
              "imagefolder --data-root {d}/photos", expect="ok", check=notice),
        Probe("real_fallback", "$RUN {d}/small.yaml --runs-dir {d}/runs --dataset imagefolder "
              "--data-root /nonexistent", "not found", timeout=600),
        Probe("train_one_class", "$CLI train --model demo_v2_tiny --dataset imagefolder "
              "--data-root {d}/one --image-size 32 --batch-size 2 --recipe simple --workers 0 "
              "--epochs 1 --out {d}/r",
              "one class", check=not_100),
        Probe("resume_amp", action=interrupted_then("--amp", "", "amp")),
        Probe("resume_amp_rwc", action=interrupted_then("--amp --resume-with-changes", "", "amp")),
        Probe("resume_progressive_rwc", action=interrupted_then(
            "--resume-with-changes", "--progressive size=16:32", "progressive")),
        Probe("bench_model", "$BENCH --stages 1 --seeds 0 --models nosuch demo_v1_tiny",
              "unknown model"),
        Probe("bench_epochs0", "$BENCH --epochs 0 --stages 1 --seeds 0", "--epochs"),
        Probe("bench_stages", "$BENCH --stages 3 --seeds 0", "--stages"),
        Probe("bench_batch", "$BENCH --stages 1 --seeds 0 --batch-size -1", "--batch-size"),
        Probe("bench_size", "$BENCH --stages 1 --seeds 0 --size 4096", "--size"),
        Probe("bench_min_size", "$BENCH --stages 1 --seeds 0 --min-size 96 --size 48", "--min-size",
              timeout=600),
        Probe("bench_seeds", "$BENCH --stages 1 --seeds 0 0", "--seeds", timeout=600),
        Probe("mixup_1e308", "$CLI train $T --epochs 1 --mixup-alpha 1e308 --out {d}/r",
              "--mixup-alpha"),
        Probe("papermill_mixup_inf", "$PM -p mixup_alpha inf", timeout=600,
              check=papermill_refused),
        Probe("accumulate_1e9", "$CLI train $T --epochs 1 --accumulate 1000000000 --out {d}/r",
              expect="ok", check=warned),
        Probe("kill9_workers", action=kill_9_with_workers),
        Probe("runner_sigterm", action=runner_sigterm),
        *earlier_rows(),
    ]


def earlier_rows() -> list[Probe]:
    """docs/reliability.md's rows with a command (the number in the name)."""
    train, ev = "$CLI train $T", "$CLI eval --dataset synthetic --workers 0 --checkpoint"
    return [
        Probe("r05_sigterm", action=stop_training(signal.SIGTERM, 1)),
        Probe("r01_sigint", action=stop_training(signal.SIGINT, 1)),
        Probe("r08_truncated", f"{ev} {{d}}/trunc.pt", "not a readable checkpoint"),
        Probe("r09_init_truncated", f"{train} --init-from {{d}}/trunc.pt --out {{d}}/r",
              "not a readable"),
        Probe("r11_text", f"{ev} {{d}}/text.pt", "not a readable checkpoint"),
        Probe("r12_empty", f"{ev} {{d}}/empty.pt", "not a readable checkpoint"),
        Probe("r12_random", f"{ev} {{d}}/random.pt", "not a readable checkpoint"),
        Probe("r14_directory", f"{ev} {{d}}/notes", "is a directory"),
        Probe("r17_lr_1e12", f"{train} --epochs 2 --lr 1e12 --out {{d}}/r", "loss became nan"),
        Probe("r19_lr_30_sgd", f"{train} --epochs 2 --lr 30 --optimizer sgd --out {{d}}/r",
              "final top-1", expect="ok"),
        Probe("r39_trials0", "$CLI nas --trials 0 --out {d}/n", "--trials"),
        Probe("r40_nas_summary", "$CLI nas-summary --out {d}/missing", "no search in"),
        Probe("r41_finished_other", "$CLI train --model efficientnetv2_s --dataset imagefolder "
              "--data-root /nonexistent --epochs 99 --out {d}/ten", "different settings"),
        Probe("r42_rwc_model", f"{train} --model demo_v1_tiny --epochs 2 --resume-with-changes "
              "--out {d}/ten", "different settings"),
        Probe("r43_out_file", f"{train} --out {{d}}/afile", "is a file"),
        Probe("r44_out_under_file", f"{train} --out {{d}}/afile/run", "Not a directory"),
        Probe("r45_epochs0", f"{train} --epochs 0 --out {{d}}/r", "--epochs"),
        Probe("r46_ema", f"{train} --ema-decay 1.5 --out {{d}}/r", "--ema-decay"),
        Probe("r47_samples", f"{train} --train-samples 0 --out {{d}}/r", "--train-samples"),
        Probe("r48_batch0", f"{train} --batch-size 0 --out {{d}}/r", "--batch-size"),
        Probe("r49_lr_nan", f"{train} --lr nan --out {{d}}/r", "--lr"),
        Probe("r49_epochs_three", f"{train} --epochs three --out {{d}}/r", "--epochs"),
        Probe("r50_summary", "$CLI summary demo_v2_tiny --image-size -5", "--image-size"),
        Probe("r51_bench", "$CLI bench demo_v2_tiny --image-size 0", "--image-size"),
        Probe("r53_batch_1000", f"{train} --batch-size 1000 --out {{d}}/r",
              "smaller than one batch"),
        Probe("r54_difficulty", f"{train} --difficulty 5 --out {{d}}/r", "difficulty"),
        Probe("r55_cuda99", f"{train} --device cuda:99 --out {{d}}/r", "cuda"),
        Probe("r56_model", "$CLI train --model nosuch --dataset synthetic --out {d}/r",
              "unknown model"),
        Probe("r57_no_root", "$CLI train --model demo_v2_tiny --dataset imagefolder --out {d}/r",
              "needs a data root"),
        Probe("r58_root_missing", "$CLI train --model demo_v2_tiny --dataset imagefolder "
              "--data-root /nonexistent --out {d}/r", "not found"),
        Probe("r59_misspelt", "$CLI train --model demo_v2_tiny --dataset imagenett --out {d}/r",
              "Did you mean imagenette"),
        Probe("r60_progressive_key", f"{train} --epochs 4 --progressive 'size=16:32 colour=3' "
              "--out {d}/r", "cannot read"),
        Probe("r61_init_missing", f"{train} --init-from /nonexistent/x.pt --out {{d}}/r",
              "does not exist"),
        Probe("r68_eval_classes", "$CLI eval --checkpoint {d}/ten/last.pt --dataset imagefolder "
              "--data-root {d}/photos --workers 0", "classes"),
        Probe("r70_eval_ema", f"{ev} {{d}}/ten/last.pt --ema", "no EMA weights"),
        Probe("r77_papermill_misspelt", "$PM -p dataset imagenett", timeout=600,
              check=papermill_refused),
        Probe("r87_out_empty", f"{train} --out ''", "out_dir is empty"),
        Probe("r92_progressive_empty", f"{train} --epochs 4 --progressive '' --out {{d}}/r",
              "needs size"),
        Probe("r92_stages", f"{train} --epochs 4 --progressive 'size=16:32 stages=1.9' "
              "--out {d}/r", "whole number"),
        Probe("r92_size_inf", f"{train} --epochs 4 --progressive size=16:inf --out {{d}}/r",
              "finite"),
        Probe("r92_dropout", f"{train} --epochs 4 --progressive 'size=16:32 dropout=0.1:5' "
              "--out {d}/r", "below 1"),
        Probe("r94_num_classes", "$CLI train --model demo_v2_tiny --dataset imagefolder "
              "--data-root {d}/photos --num-classes 2 --image-size 32 --batch-size 2 --workers 0 "
              "--out {d}/r", "smaller than the 4 classes"),
        Probe("r95_storage", "$CLI nas --storage notaurl --trials 1 --out {d}/n",
              "cannot be opened"),
        Probe("r98_eval_size", f"{train} --eval-size 10000 --out {{d}}/r", "2048"),
        Probe("r99_foreign_metrics", f"{train} --out {{d}}/theirs", "no config.json"),
    ]


def replay(selected: list[Probe], code_root: Path, scratch: Path) -> list[dict]:
    os.environ.update(PYTHONPATH=str(code_root), OMP_NUM_THREADS="1")  # the set-up trains too
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    shared = scratch / "files"
    shared.mkdir()
    files(shared)
    rows = []
    for probe in selected:
        folder = scratch / probe.name
        subprocess.run(["cp", "-a", f"{shared}/.", str(folder)], check=True)
        start = time.monotonic()
        try:
            if probe.action is not None:
                outcome, why = probe.action(folder, env)
            else:
                outcome, why = judge(probe, *run(probe.cmd, folder, env, probe.timeout), folder)
        except Exception as error:  # noqa: BLE001 - a probe that cannot run is reported, not fatal
            outcome, why = "unclear", f"probe failed: {type(error).__name__}: {error}"[:160]
        rows.append({"probe": probe.name, "outcome": outcome, "why": why,
                     "seconds": round(time.monotonic() - start)})
        print(f"{probe.name:<24} {outcome:<13} {why}", flush=True)
    return rows


def main(args=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--code", type=Path, default=HERE,
                        help="the checkout to probe (default: this one)")
    parser.add_argument("--only", nargs="+", help="probes whose names hold any of these words")
    parser.add_argument("--json", help="write the rows and counts here")
    args = parser.parse_args(args)
    selected = [p for p in probes() if not args.only or any(w in p.name for w in args.only)]
    with tempfile.TemporaryDirectory(prefix="probes-") as scratch:
        rows = replay(selected, args.code.resolve(), Path(scratch))
    counts = {k: sum(r["outcome"] == k for r in rows)
              for k in ("ok", "traceback", "silent wrong", "lost", "hang", "unclear")}
    shown = ", ".join(f"{v} {k}" for k, v in counts.items())
    print(f"\n{len(rows)} probes against {args.code}: {shown}")
    if args.json:
        summary = {"code": str(args.code), "counts": counts, "rows": rows}
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
