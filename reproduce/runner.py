"""Run a plan's notebooks with papermill, one after another, resumably.

Each notebook runs in its own papermill process (so a hung kernel can be stopped at the notebook's
timeout) and writes into ``runs/<plan>/``:

    <notebook>.ipynb   the executed copy (saved even when a cell fails: open it to see the error)
    <notebook>.json    the notebook's results (written by the notebook itself)
    logs/<notebook>.log  the notebook's output, streamed while it runs
    status.json        one record per notebook: done / failed / timeout / interrupted, seconds, error

A notebook counts as done when papermill succeeded and its results JSON exists; done notebooks are skipped on
rerun unless ``--force``. A failure is recorded and the batch goes on to the next notebook.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from tqdm import tqdm

from .plans import ROOT, Plan, PlanEntry

RUNS_DIR = ROOT / "runs"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_json_atomic(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2)
        tmp = handle.name
    os.replace(tmp, path)


def load_status(out_dir: Path) -> dict:
    path = out_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


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


def run_entry(entry: PlanEntry, out_dir: Path, parameters: dict) -> dict:
    """Execute one notebook in a papermill subprocess; return its status record."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "logs").mkdir(exist_ok=True)
    log_path = out_dir / "logs" / f"{entry.name}.log"
    output_nb = out_dir / f"{entry.name}.ipynb"
    params_file = out_dir / "logs" / f"{entry.name}.params.yaml"
    params_file.write_text(yaml.safe_dump(parameters, sort_keys=True))
    command = [
        sys.executable, "-m", "papermill", str(entry.path), str(output_nb),
        "-f", str(params_file), "--cwd", str(entry.path.parent), "--log-output", "--no-progress-bar",
    ]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    record = {"state": "running", "started": _now(), "log": str(log_path), "output_notebook": str(output_nb),
              "parameters": entry.parameters}
    start = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            returncode = process.wait(timeout=entry.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # papermill and its kernel
            process.wait()
            record.update(state="timeout", error=f"stopped after the notebook timeout of {entry.timeout:.0f}s")
            returncode = None
        except KeyboardInterrupt:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            record.update(state="interrupted", error="interrupted (Ctrl-C); rerun to resume",
                          seconds=time.monotonic() - start, finished=_now())
            raise _Interrupted(record) from None
    record["seconds"] = time.monotonic() - start
    record["finished"] = _now()
    if returncode == 0:
        if (out_dir / f"{entry.name}.json").exists():
            record["state"] = "done"
        else:
            record.update(state="failed", error=f"the notebook finished but wrote no {entry.name}.json")
    elif returncode is not None:
        record.update(state="failed", error=_error_summary(output_nb, log_path) or f"papermill exited with {returncode}")
    return record


class _Interrupted(Exception):
    def __init__(self, record):
        super().__init__("interrupted")
        self.record = record


def run_plan(
    plan: Plan,
    only: list[str] | None = None,
    force: bool = False,
    dry_run: bool = False,
    data_root: str | None = None,
    device: str | None = None,
    runs_dir: Path = RUNS_DIR,
    stream=None,
) -> int:
    """Run (or with ``dry_run`` describe) the plan; return 0 if every selected notebook is done."""
    stream = stream or sys.stdout
    out_dir = Path(runs_dir) / plan.name
    status = load_status(out_dir)
    entries = plan.entries
    if only:
        names = {e.name for e in entries}
        unknown = [n for n in only if n not in names]
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: not in plan {plan.name} ({', '.join(sorted(names))})")
        entries = [e for e in entries if e.name in only]

    todo = []
    print(f"plan {plan.name}: {plan.description}".rstrip(": "), file=stream)
    for entry in entries:
        state, reason = entry_state(entry, out_dir, status)
        will_run = force or state != "done"
        todo += [entry] if will_run else []
        verb = "run " if will_run else "skip"
        print(f"  {verb} {entry.name:<28} {state:<11} {reason.splitlines()[0] if reason else ''}", file=stream)
    if dry_run:
        return 0

    failures = 0
    for entry in tqdm(todo, desc=f"plan {plan.name}", unit="notebook", file=stream):
        parameters = dict(entry.parameters)
        accepted = _accepted(entry)
        parameters["output_dir"] = str(out_dir.resolve())
        if data_root is not None and "data_root" in accepted:
            parameters["data_root"] = data_root
        if device is not None and "device" in accepted:
            parameters["device"] = device
        parameters = {k: v for k, v in parameters.items() if k in accepted}
        if parameters.get("data_root") and not Path(parameters["data_root"]).is_absolute():
            parameters["data_root"] = str(Path(parameters["data_root"]).resolve())  # kernels run in notebooks/
        try:
            record = run_entry(entry, out_dir, parameters)
        except _Interrupted as interrupted:
            status[entry.name] = interrupted.record
            _write_json_atomic(out_dir / "status.json", status)
            raise KeyboardInterrupt from None
        status[entry.name] = record
        _write_json_atomic(out_dir / "status.json", status)
        if record["state"] != "done":
            failures += 1
            tqdm.write(f"  {entry.name}: {record['state']}; see {record['output_notebook']} and {record['log']}",
                       file=stream)
    from .report import write_report

    report = write_report(plan, out_dir)
    print(f"report: {report}", file=stream)
    final = load_status(out_dir)
    not_done = [e.name for e in entries if final.get(e.name, {}).get("state") != "done"]
    if not_done:
        print(f"not done: {', '.join(not_done)}", file=stream)
    return 1 if (failures or not_done) else 0


def _accepted(entry: PlanEntry) -> set[str]:
    from .plans import notebook_parameters

    return notebook_parameters(entry.path)
