"""Training efficiency (paper section 3.2): Table 2 (large images force small batches), Table 3
(Fused-MBConv in early stages), the per-stage view of depthwise convolutions, and training speed
across the model families."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from ...data.datasets import dataset_or_fallback
from ...engine.config import TrainConfig
from ...engine.devices import pick_device
from ...engine.launch import launch
from ...measure import (
    benchmark_throughput,
    block_throughput,
    count_macs,
    count_params,
    max_batch_size,
    peak_step_memory,
)
from ...paper.configs import get_config
from ...paper.model import build_model
from ...zoo import model_counts
from ..reference import paper_table, paper_value
from .common import data_fields
from .results import Result, measure_conditions, result_type

__all__ = ["Table2Result", "Table3Result", "PerStageResult", "ScalingResult", "table2_memory",
           "table3_fused_stages", "table3_counts_3x3", "explain_table3_counts", "per_stage_speed",
           "scaling_speed"]

SCALING_MODELS = ([f"efficientnet_b{i}" for i in range(4)]
                  + [f"efficientnetv2_b{i}" for i in range(4)]
                  + ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l"])


@result_type
@dataclass
class Table2Result(Result):
    memory_budget_bytes: int = 0
    # model, image_size, max_batch, train_images_per_sec
    rows: list[dict] = field(default_factory=list)


@result_type
@dataclass
class Table3Result(Result):
    image_size: int = 0
    batch_size: int = 0
    # per fused-stage variant: params, MACs, images/s (+ proxy top-1)
    rows: list[dict] = field(default_factory=list)
    proxy: dict | None = None  # the proxy training's conditions, if any


@result_type
@dataclass
class PerStageResult(Result):
    # stage, resolution, channels, mbconv, fused (images/s), ratio
    rows: list[dict] = field(default_factory=list)


@result_type
@dataclass
class ScalingResult(Result):
    # model, family, params, macs, paper_top1, images/s at measured_at
    rows: list[dict] = field(default_factory=list)


def _memory_budget(settings, device: torch.device) -> int:
    if settings.memory_budget_mb is not None:
        return settings.memory_budget_mb * 2**20
    if device.type != "cuda":
        raise ValueError("memory_budget_mb=None means '90% of the free GPU memory'; on a CPU "
                         "give a budget in MB")
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.9 * free)


def table2_memory(settings) -> Table2Result:
    """Table 2: the largest training batch of ``settings.table2_model`` that fits the memory budget,
    and its training images/s, at each image size (CPU: growth of the peak
    resident set over one step)."""
    start, device = time.perf_counter(), pick_device(settings.device)
    cuda, budget = device.type == "cuda", _memory_budget(settings, device)
    net = build_model(settings.table2_model).to(device)
    rows = []
    for size in settings.table2_sizes:
        def fits(batch, size=size):
            return peak_step_memory(net, batch, size, amp=cuda, channels_last=cuda) <= budget

        largest, _ = max_batch_size(fits, limit=settings.max_batch_limit)
        speed = (benchmark_throughput(net, size, largest, mode="train", amp=cuda,
                                      channels_last=cuda, warmup=1,
                                      repeats=settings.timing_repeats)["images_per_sec"]
                 if largest else 0.0)
        rows.append({"model": settings.table2_model, "image_size": size, "max_batch": largest,
                     "train_images_per_sec": speed})
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model=settings.table2_model,
                                    image_sizes=list(settings.table2_sizes),
                                    wall_clock_s=time.perf_counter() - start)
    return Table2Result(conditions, budget, rows)


def table3_fused_stages(settings, output_dir: str) -> Table3Result:
    """Table 3: EfficientNet-B4 with Fused-MBConv in stages 1-N (N = 0, 3, 5, 7): parameters and
    FLOPs at 380 px, training images/s on this device, and (``proxy_epochs`` > 0) a
    short training of each variant."""
    start, device = time.perf_counter(), pick_device(settings.device)
    paper = {row["fused_stages"]: row for row in paper_table("table3")["rows"]}
    rows = [_table3_row(fused, paper[fused], settings, device) for fused in (0, 3, 5, 7)]
    proxy = _proxy_training(rows, settings, output_dir, device) if settings.proxy_epochs else None
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model="efficientnet_b4",
                                    image_sizes=[settings.table3_image_size],
                                    wall_clock_s=time.perf_counter() - start)
    return Table3Result(conditions, settings.table3_image_size, settings.table3_batch_size, rows,
                        proxy)


def _table3_row(fused: int, paper: dict, settings, device: torch.device) -> dict:
    with torch.device("meta"):
        skeleton = build_model("efficientnet_b4", fused_stages=fused)
    net = build_model("efficientnet_b4", fused_stages=fused).to(device)
    cuda = device.type == "cuda"
    timing = benchmark_throughput(net, settings.table3_image_size, settings.table3_batch_size,
                                  mode="train", amp=cuda, channels_last=cuda, warmup=1,
                                  repeats=settings.timing_repeats)
    return {"fused_stages": fused, "params_m": count_params(skeleton) / 1e6,
            "paper_params_m": paper["params_m"], "macs_b": count_macs(skeleton, 380) / 1e9,
            "paper_macs_b": paper["macs_b"], "train_images_per_sec": timing["images_per_sec"],
            "images_per_sec_range": [settings.table3_batch_size / max(timing["times"]),
                                     settings.table3_batch_size / min(timing["times"])],
            "paper_tpu": paper["tpu"], "paper_v100": paper["v100"], "paper_top1": paper["top1"]}


def table3_counts_3x3(fused: int) -> tuple[float, float]:
    """Parameters (M) and GMACs at 380 px of EfficientNet-B4 with ``fused`` Fused-MBConv stages,
    where fused stage 3 (B4's ``r2_k5_s2_e6_i24_o40``, the only 5x5 stage of stages 1-3) uses a
    3x3 kernel instead. Paper Table 3 does not print its variants' kernels (see
    :func:`explain_table3_counts`)."""
    blocks = list(get_config("efficientnet_b4").blocks)
    if fused >= 3:
        blocks[2] = blocks[2].replace("_k5_", "_k3_")
    with torch.device("meta"):
        net = build_model("efficientnet_b4", fused_stages=fused, blocks=tuple(blocks))
    return count_params(net) / 1e6, count_macs(net, 380) / 1e9


def _pct(ours: float, paper: float) -> str:
    return f"{100 * (ours / paper - 1):+.0f}%"


def explain_table3_counts(rows: list[dict]) -> str:
    """Why our counts of the fused variants (``rows`` of :class:`Table3Result`) differ from paper
    Table 3's: each row's GMACs and parameters as built (B4's 5x5 kernel kept in fused stage 3) and
    with a 3x3 kernel there, beside the paper's, then in how many fused rows the 3x3 reading is
    closer. The paper does not say which kernels its fused stages use: this says what fits, not
    what the paper did."""
    lines, closer = [], {"GMACs": 0, "parameters": 0}
    fused = [r for r in rows if r["fused_stages"] >= 3]
    for row in rows:
        params_3x3, macs_3x3 = table3_counts_3x3(row["fused_stages"])
        pairs = (("GMACs", row["macs_b"], macs_3x3, row["paper_macs_b"]),
                 ("parameters", row["params_m"], params_3x3, row["paper_params_m"]))
        for name, ours, alt, paper in pairs:
            closer[name] += row["fused_stages"] >= 3 and abs(alt - paper) < abs(ours - paper)
        label = f"fused 1-{row['fused_stages']}" if row["fused_stages"] else "no fused"
        lines.append(f"  {label}: GMACs {row['macs_b']:.2f} as built "
                     f"({_pct(row['macs_b'], row['paper_macs_b'])}), {macs_3x3:.2f} with a 3x3 "
                     f"stage 3 ({_pct(macs_3x3, row['paper_macs_b'])}), Table 3 "
                     f"{row['paper_macs_b']:.2f}; params M {row['params_m']:.2f} / "
                     f"{params_3x3:.2f}, Table 3 {row['paper_params_m']:.2f}")
    found = (f"A 3x3 kernel in fused stage 3 brings the GMACs closer to paper Table 3's in "
             f"{closer['GMACs']} of {len(fused)} fused rows, the parameters in "
             f"{closer['parameters']} of {len(fused)}.")
    if closer["GMACs"] == closer["parameters"] == len(fused):
        why = "The paper's fused stage 3 most likely used 3x3 kernels (Table 3 prints none)."
    else:
        why = ("So the 3x3 reading fits only part of the paper's numbers: the difference is not "
               "fully explained (Table 3 prints no kernel sizes).")
    return ("Our fused stage 3 keeps B4's 5x5 kernel (r2_k5_s2_e6_i24_o40): fused, a dense 5x5 "
            "convolution over all expanded channels replaces a depthwise one.\n"
            + "\n".join(lines) + "\n" + found + " " + why)


def _proxy_training(rows: list[dict], settings, output_dir: str, device: torch.device) -> dict:
    """A short training of each variant (a rehearsal trains the first and the last: the
    same path, half the time)."""
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root,
                                          download=settings.download)
    if notice:
        print(notice)
    for row in rows[::len(rows) - 1] if settings.rehearse else rows:
        config = TrainConfig(model="efficientnet_b4",
                             model_overrides={"fused_stages": row["fused_stages"]},
                             epochs=settings.proxy_epochs, batch_size=settings.proxy_batch_size,
                             image_size=settings.proxy_image_size,
                             eval_size=settings.proxy_eval_size, recipe="paper",
                             out_dir=f"{output_dir}/03_table3_proxy/fused{row['fused_stages']}",
                             **data_fields(settings, dataset))
        row["proxy_top1"] = launch(config)["top1"]
    return {"dataset": dataset, "fallback_notice": notice, "epochs": settings.proxy_epochs,
            "image_size": settings.proxy_image_size, "eval_size": settings.proxy_eval_size}


def per_stage_speed(settings) -> PerStageResult:
    """Each EfficientNet-B4 stage's first block built as MBConv and as Fused-MBConv, timed for
    training at the stage's input resolution (the per-stage view of section 3.2: depthwise
    convolutions are slow early)."""
    start, device = time.perf_counter(), pick_device(settings.device)
    cuda = device.type == "cuda"
    rows, resolution = [], -(-settings.table3_image_size // 2)
    for index, stage in enumerate(get_config("efficientnet_b4").stages(), start=1):
        speeds = {kind: block_throughput(stage, resolution, settings.table3_batch_size * 2,
                                         fused=kind == "fused", amp=cuda, channels_last=cuda,
                                         device=device, repeats=settings.timing_repeats)
                  for kind in ("mbconv", "fused")}
        rows.append({"stage": index, "resolution": resolution,
                     "channels": f"{stage.in_channels}->{stage.out_channels}", **speeds,
                     "fused_vs_mbconv": speeds["fused"] / speeds["mbconv"]})
        resolution = -(-resolution // stage.stride)
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model="efficientnet_b4",
                                    image_sizes=[settings.table3_image_size],
                                    wall_clock_s=time.perf_counter() - start)
    return PerStageResult(conditions, rows)


def scaling_speed(settings, models=tuple(SCALING_MODELS)) -> ScalingResult:
    """Parameters, FLOPs, the paper's top-1 and training/inference images/s of V1 B0-B3 and V2
    B0-B3/S/M/L, all measured at one image size (``scaling_image_size``) so that the
    speeds compare like with like."""
    start, device = time.perf_counter(), pick_device(settings.device)
    cuda = device.type == "cuda"
    rows = []
    # a rehearsal times two models, counts all
    timed = set(models[:2]) if settings.rehearse else set(models)
    for name in models:
        counts = model_counts(name)
        size = settings.scaling_image_size or counts["eval_size"]
        row = {"model": name, "family": get_config(name).family, "eval_size": counts["eval_size"],
               "params": counts["params"], "macs": counts["macs"],
               "paper_top1": paper_value(name, "top1")[0], "measured_at": size}
        net = build_model(name).to(device) if name in timed else None
        for mode in settings.scaling_modes if net is not None else ():
            row[f"{mode}_images_per_sec"] = benchmark_throughput(
                net, size, settings.scaling_batch_size, mode=mode, amp=cuda, channels_last=cuda,
                warmup=1, repeats=settings.timing_repeats)["images_per_sec"]
        rows.append(row)
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    image_sizes=sorted({r["measured_at"] for r in rows}),
                                    wall_clock_s=time.perf_counter() - start)
    return ScalingResult(conditions, rows)
