"""``status.json``: one record per notebook of a plan's run (done / failed / timeout / interrupted, seconds, error).

Shared by the runner (which writes it) and the report (which reads it). Written atomically; a file that cannot be
read (truncated by a full disk, edited by hand) is set aside as ``status.json.unreadable`` with a warning, and the
run starts its bookkeeping afresh: notebooks whose results exist are then rerun, and their trainings resume from
their checkpoints as no-ops.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
from pathlib import Path

__all__ = ["load_status", "now"]


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def load_status(out_dir: Path) -> dict:
    """The run's status records by notebook name ({} when there is none or it cannot be read)."""
    path = Path(out_dir) / "status.json"
    if not path.exists():
        return {}
    try:
        status = json.loads(path.read_text())
        if isinstance(status, dict) and all(isinstance(v, dict) for v in status.values()):
            return status
        problem = "not a mapping of notebook records"
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"not valid JSON ({error})"
    aside = path.with_name("status.json.unreadable")
    os.replace(path, aside)
    print(f"warning: {path} is {problem}; moved it to {aside.name} and starting the status afresh (finished "
          "trainings resume from their checkpoints)", file=sys.stderr)
    return {}
