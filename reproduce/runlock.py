"""One runner per run directory, and nothing left running by a runner that died.

The runner writes ``runner.json`` into the run directory (its own pid, and the process session of the notebook
it is running: papermill and its kernel run in a session of their own so that Ctrl-C reaches them only through
the runner). A second runner for the same directory refuses to start while the first lives. If the first was
killed (``kill -9``, a crash, a power cut on another node's process), its notebook's session may still be
training: the next runner stops that session (SIGINT, so the training saves its checkpoint, then SIGKILL) before
it starts, and says so. Papermill is also started with the parent-death signal set to SIGINT (Linux), so that
it goes down with the runner in the first place.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from effnetv2_mini.engine.checkpoint import atomic_write_json

from .status import now

__all__ = ["Stopped", "RunnerBusyError", "hold", "set_session", "die_with_parent"]

LOCK = "runner.json"


class Stopped(Exception):
    """SIGTERM or SIGHUP reached the runner (a SLURM time limit, ``timeout``, a closed SSH session)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class RunnerBusyError(RuntimeError):
    """Another runner is running the same plan into the same directory."""


def _alive(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _session_members(session: int) -> list:
    import psutil

    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.pid != os.getpid():
                members.append(process)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            continue
    return members


def stop_orphans(session: int, grace: float = 30.0, stream=sys.stderr) -> int:
    """Stop what is left of a dead runner's notebook session: SIGINT (the training saves its checkpoint at the next
    batch), then SIGKILL after ``grace`` seconds. Returns how many processes there were."""
    import psutil

    members = _session_members(session)
    if not members:
        return 0
    print(f"stopping {len(members)} process(es) left running by a runner that died (session {session}): "
          f"{', '.join(str(p.pid) for p in members)}", file=stream, flush=True)
    for process in members:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(members, timeout=grace)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=10)
    return len(members)


def _read(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def hold(out_dir: Path, plan: str, stream=sys.stderr):
    """Own ``out_dir`` for the length of a batch: refuse when another live runner owns it, stop the orphans of a dead
    one, and give the directory back (remove ``runner.json``) at the end."""
    path = Path(out_dir) / LOCK
    previous = _read(path)
    pid = previous.get("pid")
    if isinstance(pid, int) and pid != os.getpid() and _alive(pid):
        raise RunnerBusyError(f"another runner (pid {pid}, started {previous.get('started', '?')}) is running plan "
                              f"{previous.get('plan', plan)} into {out_dir}: wait for it, or stop it (kill {pid}) and "
                              "rerun this command to resume")
    if isinstance(previous.get("session"), int):
        stop_orphans(previous["session"], stream=stream)
    record = {"pid": os.getpid(), "plan": plan, "started": now(), "session": None}
    atomic_write_json(path, record)
    try:
        yield record
    finally:
        with contextlib.suppress(OSError):
            if _read(path).get("pid") == os.getpid():
                path.unlink()


def set_session(out_dir: Path, record: dict, session: int | None) -> None:
    """Record the process session of the notebook now running (None when it ended)."""
    record["session"] = session
    atomic_write_json(Path(out_dir) / LOCK, record)


def die_with_parent() -> None:
    """For ``preexec_fn``: in the child, ask Linux to send SIGINT when the parent (the runner) dies."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
