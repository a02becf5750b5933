"""Where a run came from: the commit and the machine, recorded by the runner with each notebook's
status, and a run directory's summary (:func:`run_info`) for the published run's index page and
the book."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from .plans import ROOT, available_plans, load_plan
from .status import load_status

__all__ = ["git_commit", "machine", "run_info", "RUN_INFO"]

RUN_INFO = (
    "run.json"  # a published folder's summary of its run (written by ``publish``, read by ``book``)
)


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit (12 hex digits), with ``+changes`` when tracked files differ from it;
    None outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+changes" if dirty else "")


def machine() -> dict:
    """This machine: CPU model, logical cores, memory (GB), operating system."""
    import psutil

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30),
        "os": f"{platform.system()} {platform.release()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            return (
                subprocess.run(
                    ["sysctl", "-n", "machdep.cpu.brand_string"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                ).stdout.strip()
                or platform.machine()
            )
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def run_info(run_dir: Path) -> dict:
    """A run directory's summary: plan, description, notebooks in plan order with state and seconds,
    commit(s), machine, device, date. A published folder's :data:`RUN_INFO` is returned as it is."""
    run_dir = Path(run_dir)
    if (run_dir / RUN_INFO).exists():
        return json.loads((run_dir / RUN_INFO).read_text())
    status = load_status(run_dir)
    plan = _plan_of(run_dir)
    order = [e.name for e in plan.entries] if plan else list(status)
    order += sorted(p.stem for p in run_dir.glob("*.ipynb") if p.stem not in order)
    notebooks = [
        {
            "name": n,
            "state": status.get(n, {}).get("state", "not run"),
            "seconds": status.get(n, {}).get("seconds"),
            "commit": status.get(n, {}).get("commit"),
        }
        for n in order
        if (run_dir / f"{n}.ipynb").exists() or n in status
    ]
    machines = [r["machine"] for r in status.values() if r.get("machine")]
    finished = sorted(r["finished"] for r in status.values() if r.get("finished"))
    from .report import run_device

    return {
        "plan": plan.name if plan else run_dir.name,
        "run_dir": run_dir.name,
        "description": plan.description if plan else "",
        "notebooks": notebooks,
        "commits": sorted({n["commit"] for n in notebooks if n["commit"]}),
        "machine": machines[-1] if machines else None,
        "device": run_device(run_dir, order),
        "finished": finished[-1] if finished else None,
    }


def _plan_of(run_dir: Path):
    """The plan that ran into ``run_dir`` (its runner record, else the directory's name), or
    None."""
    try:
        name = json.loads((run_dir / "runner.json").read_text()).get("plan")
    except (OSError, ValueError, AttributeError):
        name = None
    name = name or run_dir.name.removesuffix("-rehearsal")
    return load_plan(name) if name in available_plans() else None
