"""Paper Tables 4 and 7 (parameters, FLOPs), counted from our models; throughput on this device."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ...engine.devices import pick_device
from ...measure import benchmark_throughput
from ...paper.configs import get_config
from ...paper.model import build_model
from ...zoo import model_counts
from ..reference import paper_value
from .results import Result, measure_conditions, result_type

__all__ = ["ArchitectureResult", "architecture"]


@result_type
@dataclass
class ArchitectureResult(Result):
    """Per model: parameters and multiply-adds at its eval size, beside the reference numbers; one
    model's stage table (Table 4); and images/s on the device (which does not compare with the
    paper: no accelerator match)."""

    models: list[dict] = field(default_factory=list)
    stage_table: dict = field(default_factory=dict)
    throughput: list[dict] = field(default_factory=list)


def architecture(settings) -> ArchitectureResult:
    """Count every model of ``settings.models`` (on the ``meta`` device: no memory), tabulate
    ``settings.summary_model`` stage by stage, and time
    ``settings.throughput_models`` on the device."""
    start = time.perf_counter()
    device = pick_device(settings.device)
    models = [_counts_row(name) for name in settings.models]
    with torch.device("meta"):
        summary = build_model(settings.summary_model)
    stage_table = {"model": settings.summary_model,
                   "rows": summary.stage_table(get_config(settings.summary_model).eval_size)}
    throughput = [row for name in settings.throughput_models
                  for row in _throughput_rows(name, settings, device)]
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model=settings.summary_model,
                                    wall_clock_s=time.perf_counter() - start)
    return ArchitectureResult(conditions, models, stage_table, throughput)


def _counts_row(name: str) -> dict:
    config = get_config(name)
    counts = model_counts(name)
    reference_params, params_source = paper_value(name, "params")
    reference_macs, macs_source = paper_value(name, "macs_billion")
    return {"name": name, "family": config.family, "eval_size": config.eval_size,
            "params": counts["params"], "macs": counts["macs"],
            "reference_params": reference_params, "reference_params_source": params_source,
            "reference_macs_b": reference_macs, "reference_macs_source": macs_source,
            "paper_top1": paper_value(name, "top1")[0]}


def _throughput_rows(name: str, settings, device: torch.device) -> list[dict]:
    net = build_model(name).to(device)
    size = settings.throughput_image_size or get_config(name).eval_size
    cuda = device.type == "cuda"
    rows = []
    for mode in ("eval", "train"):
        r = benchmark_throughput(net, size, settings.throughput_batch_size, mode=mode, amp=cuda,
                                 channels_last=cuda, warmup=1 if settings.rehearse else 2,
                                 repeats=1 if settings.rehearse else 5)
        rows.append({"model": name, "mode": mode, "image_size": size,
                     "batch": settings.throughput_batch_size, "amp": cuda,
                     "images_per_sec": r["images_per_sec"]})
    return rows


