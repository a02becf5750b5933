"""Small helpers that keep the notebooks thin: profiles, results JSON, plain-text tables.

Every notebook has a ``parameters`` cell (papermill) whose ``profile`` picks a set of defaults:

- ``smoke``: built-in data / tiny models, CPU, seconds. What CI and nbval run.
- ``quick``: Imagenette on one GPU.
- ``full``:  ImageNet, the paper's settings, many GPUs through torchrun.

``profile = None`` reads ``$EFFNETV2_PROFILE`` and falls back to ``smoke``.

Results schema (one JSON file per notebook, ``<output_dir>/<notebook>.json``)::

    {"notebook": "01_architecture", "profile": "smoke", "schema": 1,
     "conditions": {"device": ..., "torch": ..., "host": ..., "finished_at": ...},
     "results": {...notebook-specific, documented in the notebook...}}
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import tempfile
from pathlib import Path
from types import SimpleNamespace

import torch

__all__ = ["PROFILES", "resolve_profile", "settings", "conditions", "save_results", "load_results", "format_table",
           "format_value"]

PROFILES = ("smoke", "quick", "full")
RESULTS_SCHEMA = 1


def resolve_profile(profile: str | None) -> str:
    chosen = profile or os.environ.get("EFFNETV2_PROFILE") or "smoke"
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)}")
    return chosen


def settings(profile: str | None, defaults: dict[str, dict], **given) -> SimpleNamespace:
    """The notebook's settings: the profile's defaults, overridden by every ``given`` value not None.

    ``defaults`` maps each profile to a dict; a ``given`` name missing from the defaults is an error,
    so that a typo in a papermill parameter cannot pass silently.
    """
    profile = resolve_profile(profile)
    base = dict(defaults[profile])
    unknown = sorted(set(given) - set(base))
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(base))}")
    base.update({k: v for k, v in given.items() if v is not None})
    return SimpleNamespace(profile=profile, **base)


def conditions(device: str | torch.device | None = None) -> dict:
    """What a reader needs to judge a number: device, versions, host, time."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    return {
        "device": str(device),
        "device_name": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "host": platform.node(),
        "python": platform.python_version(),
        "finished_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def save_results(output_dir: str | os.PathLike, notebook: str, profile: str, results: dict, conditions: dict) -> Path:
    """Write ``<output_dir>/<notebook>.json`` atomically (temporary file, then rename)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": profile, "schema": RESULTS_SCHEMA, "conditions": conditions,
               "results": results}
    path = out / f"{notebook}.json"
    with tempfile.NamedTemporaryFile("w", dir=out, delete=False, suffix=".tmp") as handle:
        json.dump(payload, handle, indent=2, default=str)
        tmp = handle.name
    os.replace(tmp, path)
    return path


def load_results(path: str | os.PathLike) -> dict:
    with open(path) as handle:
        return json.load(handle)


def format_value(value) -> str:
    """One table cell: "-" for None, thousands separators, two decimals (scientific notation below 0.01)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and abs(value) < 0.01:
            return f"{value:.2e}"  # learning rates and the like
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def format_table(rows: list[dict], columns: list[str], headers: list[str] | None = None) -> str:
    """A fixed-width text table (deterministic, so nbval can compare it)."""
    headers = headers or columns
    cells = [[format_value(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]

    def line(values):
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)
        ).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in cells)])
