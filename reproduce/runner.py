"""Run a plan's notebooks with papermill, one after another, resumably.

Each notebook runs in its own papermill process (so a hung kernel can be stopped at the notebook's
timeout) and writes into ``runs/<plan>/``:

    <notebook>.ipynb   the executed copy (saved even when a cell fails: open it to see the error)
    <notebook>.json    the notebook's results (written by the notebook itself)
    logs/<notebook>.log  the notebook's output, streamed while it runs
    status.json        one record per notebook: done / failed / timeout / interrupted, seconds,
                       error, the commit and the machine (CPU, cores) that ran it

A notebook counts as done when papermill succeeded and its results JSON exists; done notebooks are skipped on
rerun unless ``--force``. A failure is recorded and the batch goes on to the next notebook.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from effnetv2_mini.data.datasets import loud_notice
from effnetv2_mini.engine.checkpoint import atomic_write_json

from . import runlock
from .inputs import check_inputs, fell_back
from .plans import ROOT, Plan, PlanEntry, notebook_parameters
from .provenance import git_commit, machine
from .report import write_report
from .runlock import Stopped
from .status import load_status, now

RUNS_DIR = ROOT / "runs"


def entry_state(entry: PlanEntry, out_dir: Path, status: dict) -> tuple[str, str]:
    """``(state, reason)`` of one notebook before running: done, pending, failed, timeout, interrupted."""
    record = status.get(entry.name)
    results = out_dir / f"{entry.name}.json"
    if record is None:
        return "pending", "never run"
    if record.get("state") == "done":
        if not results.exists():
            return "pending", f"marked done but {results.name} is missing"
        if record.get("parameters") != entry.parameters:
            return "pending", "parameters changed since the last run"
        return "done", f"finished {record.get('finished', '?')} in {record.get('seconds', 0):.0f}s"
    return record.get("state", "pending"), record.get("error", "")


def _error_summary(output_nb: Path, log_path: Path, lines: int = 15) -> str:
    """The failing cell's exception from the saved notebook, else the end of the log."""
    try:
        import nbformat

        nb = nbformat.read(output_nb, as_version=4)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    return f"{output['ename']}: {output['evalue']} (cell {index} of {output_nb.name})"
    except Exception:  # noqa: BLE001 - a missing or half-written notebook: fall back to the log
        pass
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_entry(entry: PlanEntry, out_dir: Path, parameters: dict, environment: dict | None = None,
              lock: dict | None = None) -> dict:
    """Execute one notebook in a papermill subprocess (``environment``: extra variables); return its status record.
    ``lock``: the batch's :func:`runlock.hold` record, which learns the notebook's process session while it runs."""
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "logs" / f"{entry.name}.log"
    output_nb = out_dir / f"{entry.name}.ipynb"
    params_file = out_dir / "logs" / f"{entry.name}.params.yaml"
    params_file.write_text(yaml.safe_dump(parameters, sort_keys=True))
    command = [sys.executable, "-m", "papermill", str(entry.path), str(output_nb), "-f", str(params_file),
               "--cwd", str(entry.path.parent), "--kernel", "python3", "--log-output", "--no-progress-bar"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(environment or {}))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    record = {"state": "running", "started": now(), "log": str(log_path), "output_notebook": str(output_nb),
              "parameters": entry.parameters, "commit": git_commit(), "machine": machine()}
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=runlock.die_with_parent)
        if lock is not None:
            runlock.set_session(out_dir, lock, process.pid)  # a new session's id is its leader's pid
        try:
            returncode = process.wait(timeout=entry.timeout)
        except subprocess.TimeoutExpired:
            stop_tree(process, grace=10)
            record.update(state="timeout", error=f"stopped after the notebook timeout of {entry.timeout:.0f}s")
            returncode = None
        except (KeyboardInterrupt, Stopped) as stop:
            stop_tree(process, grace=60)  # a training notebook writes its checkpoint at the next batch boundary
            why = "Ctrl-C" if isinstance(stop, KeyboardInterrupt) else stop.signal_name
            record.update(state="interrupted", error=f"interrupted ({why}); rerun to resume",
                          seconds=time.monotonic() - start, finished=now())
            raise _Interrupted(record) from None
    if lock is not None:
        runlock.set_session(out_dir, lock, None)
    record["seconds"] = time.monotonic() - start
    record["finished"] = now()
    if returncode == 0:
        if (out_dir / f"{entry.name}.json").exists():
            record["state"] = "done"
        else:
            record.update(state="failed", error=f"the notebook finished but wrote no {entry.name}.json")
    elif returncode is not None:
        record.update(state="failed", error=_error_summary(output_nb, log_path) or f"papermill exited with {returncode}")
    return record


def stop_tree(process: subprocess.Popen, grace: float) -> None:
    """Stop papermill, its kernel (which jupyter starts in a session of its own) and the kernel's
    data-loader workers. SIGINT goes to the kernel and its children, not to papermill: a training in
    the kernel finishes its batch and writes its checkpoint, the cell ends with KeyboardInterrupt,
    and papermill saves the notebook and exits on its own (a SIGINT to papermill made it tear the
    kernel down at once, before that checkpoint: the log ended in ZMQError and the rerun redid the
    epoch). Whatever is left after ``grace`` seconds gets SIGKILL."""
    import psutil

    try:
        root = psutil.Process(process.pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        root, tree = None, []
    for member in tree[1:] or tree:  # no kernel yet: papermill itself
        try:
            member.send_signal(signal.SIGINT)
        except psutil.NoSuchProcess:
            pass
    try:
        psutil.wait_procs(tree[:1], timeout=grace)  # papermill ends once the kernel's cell stops
        _, alive = psutil.wait_procs(tree, timeout=5 if tree and not root.is_running() else 0)
    except (KeyboardInterrupt, Stopped):  # a second Ctrl-C or signal: no more grace, and still a record of the stop
        alive = tree
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=10)
    process.wait()


def _raise_stopped(signum, frame) -> None:
    raise Stopped(signal.Signals(signum).name)


class _Interrupted(Exception):
    def __init__(self, record):
        super().__init__("interrupted")
        self.record = record


def run_plan(plan: Plan, only: list[str] | None = None, force: bool = False, dry_run: bool = False,
             data_root: str | None = None, device: str | None = None, runs_dir: Path = RUNS_DIR, stream=None,
             rehearse: bool = False, dataset: str | None = None) -> int:
    """Run (or with ``dry_run`` describe) the plan; return 0 if every selected notebook is done. With ``rehearse``
    the plan runs into ``runs_dir/<plan>-rehearsal`` on miniature data, one or two steps per stage."""
    stream = stream or sys.stdout
    out_dir = Path(runs_dir) / (f"{plan.name}-rehearsal" if rehearse else plan.name)
    status = load_status(out_dir)
    entries = _selected(plan, only)
    print(f"plan {plan.name}{' (REHEARSAL)' if rehearse else ''}: {plan.description}".rstrip(": "), file=stream)
    todo = []
    for entry in entries:
        state, reason = entry_state(entry, out_dir, status)
        todo += [entry] if force or state != "done" else []
        verb = "run " if force or state != "done" else "skip"
        print(f"  {verb} {entry.name:<28} {state:<11} {reason.splitlines()[0] if reason else ''}", file=stream)
    def parameters_of(entry):
        return _parameters(entry, out_dir, data_root, device, False, dataset)

    for notice in check_inputs(todo, parameters_of, data_root, dataset, rehearse):  # dry run too
        print(notice, file=stream)
    if dry_run:
        return 0
    if rehearse:
        from .rehearse import prepare

        data_root = str(prepare(out_dir / "data"))
    else:
        print(estimate_line(plan, len(todo), device), file=stream)
    print(f"the report will be {out_dir / 'report.html'} (and report.md); rerun the same command to resume",
          file=stream, flush=True)
    with runlock.hold(out_dir, plan.name, stream) as lock:
        failures = _run_entries(plan, todo, out_dir, status, (data_root, device, dataset), rehearse, stream, lock)
    print(f"report: {write_report(plan, out_dir)}", file=stream)
    final = load_status(out_dir)
    not_done = [e.name for e in entries if final.get(e.name, {}).get("state") != "done"]
    if not_done:
        print(f"not done: {', '.join(not_done)}", file=stream)
    return 1 if (failures or not_done) else 0


def _selected(plan: Plan, only: list[str] | None) -> list[PlanEntry]:
    if not only:
        return plan.entries
    names = {e.name for e in plan.entries}
    unknown = [n for n in only if n not in names]
    if unknown:
        raise ValueError(f"--only {', '.join(unknown)}: not in plan {plan.name} ({', '.join(sorted(names))})")
    return [e for e in plan.entries if e.name in only]


def _run_entries(plan: Plan, todo: list[PlanEntry], out_dir: Path, status: dict, overrides: tuple, rehearse: bool,
                 stream, lock: dict | None = None) -> int:
    """Run each notebook, recording its state; SIGTERM and SIGHUP stop the batch as Ctrl-C does."""
    previous = {sig: signal.signal(sig, _raise_stopped) for sig in (signal.SIGTERM, signal.SIGHUP)}
    # Ctrl-C (SIGINT) raises KeyboardInterrupt even when the batch was started with SIGINT ignored, as a shell does
    # for a background job (`... &`) and as pytest-xdist's workers pass on to their children
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    failures = 0
    try:
        for entry in tqdm(todo, desc=f"plan {plan.name}", unit="notebook", file=stream):
            try:
                environment = {"EFFNETV2_CACHE": str(out_dir / "cache")} if rehearse else None  # not the user's cache
                parameters = _parameters(entry, out_dir, *overrides[:2], rehearse, overrides[2])
                record = run_entry(entry, out_dir, parameters, environment, lock)
            except _Interrupted as interrupted:
                status[entry.name] = interrupted.record
                atomic_write_json(out_dir / "status.json", status, indent=2)
                raise KeyboardInterrupt from None
            notices = fallback_notices(out_dir / f"{entry.name}.json")
            if not rehearse:  # data named on the command line must never turn into the built-in set
                record = fell_back(record, notices, *overrides[::2])
            status[entry.name] = record
            atomic_write_json(out_dir / "status.json", status, indent=2)
            if rehearse and record["state"] == "done":
                drop_checkpoints(out_dir)
            for notice in notices:
                tqdm.write(f"  {entry.name}: {notice}", file=stream)
            if record["state"] != "done":
                failures += 1
                tqdm.write(f"  {entry.name}: {record['state']}: {record.get('error', '')}\n    see {record['output_notebook']} "
                           f"and {record['log']}", file=stream)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return failures


def drop_checkpoints(out_dir: Path) -> None:
    """Delete the ``*.pt`` files under a rehearsal's ``out_dir`` (the checkpoints of its trainings; the plan's real
    models, e.g. the full plan's all-Fused-MBConv EfficientNetV2-S at 2 GB a file, make them tens of GB) once a
    notebook is done: a rehearsal shows that the code paths run and claims nothing, and a done notebook is not rerun
    without --force, which trains afresh."""
    for path in Path(out_dir).rglob("*.pt"):
        path.unlink(missing_ok=True)


def _parameters(entry: PlanEntry, out_dir: Path, data_root, device, rehearse: bool, dataset: str | None = None) -> dict:
    """The notebook's plan parameters, with the run directory and the command line's data root, device and data
    set."""
    accepted = _accepted(entry)
    parameters = dict(entry.parameters, output_dir=str(out_dir.resolve()))
    if data_root is not None:
        parameters["data_root"] = data_root
    if device is not None:
        parameters["device"] = device
    if dataset is not None:
        parameters.update(_swap_dataset(entry, dataset))
    if rehearse:
        from .rehearse import rehearsal_parameters

        parameters = rehearsal_parameters(entry.name, parameters, Path(data_root))
    parameters = {k: v for k, v in parameters.items() if k in accepted}
    if parameters.get("data_root") and not Path(parameters["data_root"]).is_absolute():
        parameters["data_root"] = str(Path(parameters["data_root"]).resolve())  # kernels run in notebooks/
    return parameters


def fallback_notices(results_path: Path) -> list[str]:
    """The loud notices a notebook recorded (a data set it could not open, replaced by the built-in set), so that
    the terminal shows them and not only the notebook's log."""
    import json

    try:
        payload = json.loads(results_path.read_text())
        found = {r.get("conditions", {}).get("fallback_notice", "") for r in payload.get("results", {}).values()}
    except (OSError, ValueError, AttributeError):
        return []
    return [loud_notice(n.replace("!", "").replace("NOTICE:", "").strip()) for n in sorted(found) if n]


def estimate_line(plan: Plan, notebooks: int, device: str | None) -> str:
    """How long the plan will take: its measured time on the machine it was measured on, and for CPU plans, scaled
    by a two-second probe of this machine's training speed (``probe_speed``)."""
    estimate = plan.estimate
    if not estimate:
        return f"{notebooks} notebook(s) to run; no time estimate for this plan"
    line = f"{notebooks} notebook(s) to run; the whole plan took {estimate['minutes']} min on {estimate.get('machine')}"
    if estimate.get("probe") and (device or "cpu") == "cpu":
        ratio = estimate["probe"] / probe_speed()
        line += f"; this machine trains {1 / ratio:.2f}x as fast: about {estimate['minutes'] * ratio:.0f} min here"
    return line


def probe_speed() -> float:
    """Training images/s of the small demo model at 64 px on this CPU (the yardstick of the plans' estimates): the
    best of three short measurements, since anything else running only ever slows a measurement down."""
    from effnetv2_mini.measure import benchmark_throughput
    from effnetv2_mini.models import build_model

    model = build_model("demo_v2_tiny")
    return max(benchmark_throughput(model, 64, 32, mode="train", warmup=2, repeats=5)["images_per_sec"]
               for _ in range(3))


def _swap_dataset(entry: PlanEntry, dataset: str) -> dict:
    """``--dataset X``: the photo data set of the plan's profile becomes X wherever the notebook uses it (its data
    set, the pretraining set, the transfer sets); the built-in sets stay."""
    from effnetv2_mini.data.datasets import is_built_in
    from effnetv2_mini.study.profiles import NOTEBOOKS, notebook_profile

    if entry.name not in NOTEBOOKS:
        return {"dataset": dataset}
    given = {k: v for k, v in entry.parameters.items() if k not in ("profile", "output_dir", "rehearse")}
    values = notebook_profile(entry.name, entry.parameters.get("profile"), **given)
    swapped = {}
    for field in ("dataset", "pretrain_dataset"):
        if getattr(values, field, None) and not is_built_in(getattr(values, field)):
            swapped[field] = dataset
    if getattr(values, "transfer_sets", None):
        swapped["transfer_sets"] = [dataset if s == getattr(values, "pretrain_dataset", None) else s
                                    for s in values.transfer_sets]
    return swapped


def _accepted(entry: PlanEntry) -> set[str]:
    return notebook_parameters(entry.path)
