"""Typed results: every experiment returns one, and it records the conditions its numbers were
measured under.

A reader (and the report) judges a number by its conditions: the profile, whether it was a
rehearsal, the device, the model, the data set actually used (a fallback to the built-in set says
so), epochs, image sizes, the progressive schedule (or none), the recipe, seeds, wall-clock, and
which accuracy is reported. The report derives every verdict from these fields and fails closed:
a field that is missing or unknown counts as "not the paper's setting".

Accuracies are top-1 in percent, of the **final** epoch, with the EMA weights when the run keeps
an EMA (never the best epoch chosen on the validation set, which would flatter small runs).

A notebook saves its results as ``<output_dir>/<notebook>.json``::

    {"notebook": "05_progressive_learning", "profile": "laptop", "rehearsal": false, "schema": 2,
     "results": {"table5": {"type": "Table5Result", ...},
                 "progressive": {"type": "ProgressiveResult", ...}}}
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ...engine.checkpoint import atomic_write_json
from ...engine.devices import device_name

__all__ = ["Conditions", "Result", "ReportResult", "RESULT_TYPES", "save_results", "load_results",
           "RESULTS_SCHEMA", "measure_conditions"]

RESULTS_SCHEMA = 2
FINAL_EMA = "final epoch, EMA weights"
FINAL_RAW = "final epoch, raw weights"


@dataclass
class Conditions:
    """What a number was measured under. ``None`` means unknown (and is never taken for the paper's
    setting)."""

    profile: str | None = None
    rehearsal: bool = False
    device: str | None = None
    device_name: str | None = None
    torch: str | None = None
    processes: int = 1
    model: str | None = None
    dataset: str | None = None  # the data set actually used
    dataset_requested: str | None = None
    fallback_notice: str = ""
    num_classes: int | None = None  # chance level is 100 / num_classes
    val_images: int | None = None  # the accuracy's sampling noise depends on it
    epochs: int | None = None
    image_sizes: list[int] | None = None  # training sizes, one per stage (one entry: fixed size)
    eval_size: int | None = None
    # "paper Table 6", "official code", another source; None: fixed size
    schedule: str | None = None
    recipe: str | None = None  # training recipe: "paper", "code", "simple"
    seeds: list[int] = field(default_factory=list)
    steps_per_epoch: int | None = None  # capped (rehearsals, quick checks); None: whole epochs
    # images per optimizer step over all processes (the paper's: 4096)
    global_batch: int | None = None
    optimizer_steps: int | None = None  # optimizer steps of the (last) run, all epochs
    lr: float | None = None  # its peak learning rate (after scaling with the global batch)
    lr_schedule: str | None = None  # its lr decay: exponential | cosine | constant | flat_cosine
    # model -> that network's own image_sizes, eval_size, schedule, global_batch, optimizer_steps
    per_model: dict = field(default_factory=dict)
    random_every: int | None = None  # the `random` variant's redraw period, epochs (the paper: 8)
    differences: list[str] = field(default_factory=list)  # known differences from the paper's
    # training crops cut from images pre-shrunk to S+32 px (data.cache), not full photos
    crops_from_cache: bool = False
    wall_clock_s: float | None = None
    accuracy: str | None = None  # which accuracy is reported (FINAL_EMA, FINAL_RAW), None if none
    finished_at: str | None = None

    @property
    def chance(self) -> float | None:
        return 100.0 / self.num_classes if self.num_classes else None


def measure_conditions(device, profile: str | None, rehearsal: bool, **fields) -> Conditions:
    """Conditions of a measurement on ``device`` now (versions, device name, time), plus
    ``fields``."""
    device = torch.device(device)
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return Conditions(profile=profile, rehearsal=rehearsal, device=str(device),
                      device_name=device_name(device), torch=torch.__version__, finished_at=now,
                      **fields)


@dataclass
class Result:
    """Base of every experiment's result: its conditions, and JSON in and out."""

    conditions: Conditions

    def to_dict(self) -> dict:
        return {"type": type(self).__name__, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        data = {k: v for k, v in data.items() if k != "type"}
        return cls(**{**data, "conditions": Conditions(**data["conditions"])})


RESULT_TYPES: dict[str, type[Result]] = {}


def result_type(cls: type[Result]) -> type[Result]:
    """Class decorator: register a result type so that :func:`load_results` can rebuild it from
    JSON."""
    RESULT_TYPES[cls.__name__] = cls
    return cls


def save_results(output_dir: str | os.PathLike, notebook: str, results: dict[str, Result],
                 profile: str | None, rehearsal: bool = False) -> Path:
    """Write ``<output_dir>/<notebook>.json`` atomically (temporary file, then rename)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"notebook": notebook, "profile": profile, "rehearsal": rehearsal,
               "schema": RESULTS_SCHEMA,
               "results": {name: result.to_dict() for name, result in results.items()}}
    path = out / f"{notebook}.json"
    atomic_write_json(path, payload, indent=1, default=str)
    return path


def load_results(path: str | os.PathLike) -> dict[str, Result]:
    """The typed results of a notebook's JSON file; ValueError naming the file if it is not of this
    schema."""
    payload = json.loads(Path(path).read_text())
    if not isinstance(payload, dict) or payload.get("schema") != RESULTS_SCHEMA:
        raise ValueError(f"{path} is not a results file of schema {RESULTS_SCHEMA} (written by an "
                         "older version?)")
    results = {}
    for name, data in payload["results"].items():
        kind = RESULT_TYPES.get(data.get("type"))
        if kind is None:
            raise ValueError(f"{path}: result {name!r} has unknown type {data.get('type')!r}")
        results[name] = kind.from_dict(data)
    return results


@result_type
@dataclass
class ReportResult(Result):
    """What notebook 08 reported: the run directory, the notebooks found, and the at-a-glance
    rows."""

    run_dir: str = ""
    reported: list[str] = field(default_factory=list)
    glance: list[dict] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
