"""Progressive learning (paper section 4): Table 5 (the best regularization grows with the image
size) and the comparison behind the paper's speed-up claims (fixed size, progressive resizing with
fixed regularization, progressive learning with adaptive regularization, random resizing; same
epochs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ...data.datasets import dataset_or_fallback
from ...engine.config import TrainConfig
from ...engine.launch import launch
from ...engine.rundir import read_history, reported_top1
from ...paper.progressive import ProgressiveSchedule, linear_schedule, schedule_preset, variant
from .common import data_fields
from .results import Result, result_type
from .training import run_conditions

__all__ = ["Table5Result", "ProgressiveResult", "table5_grid", "progressive_comparison",
           "comparison_schedule", "base_config"]


@result_type
@dataclass
class Table5Result(Result):
    sizes: list[int] = field(default_factory=list)
    magnitudes: list[float] = field(default_factory=list)
    epochs: int = 0
    # mean over seeds, top1[size i][magnitude j]
    top1: list[list[float]] = field(default_factory=list)
    # per_seed[seed][size i][magnitude j]
    per_seed: list[list[list[float]]] = field(default_factory=list)


@result_type
@dataclass
class ProgressiveResult(Result):
    schedule: dict = field(default_factory=dict)  # the progressive variant's schedule
    # variant, seed, final_top1, train_seconds, time_vs_fixed, ...
    rows: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # "variant-sSEED" -> [{epoch, wall_time, top1}]
    # variant, seed, stage, image_size, seconds, images_per_sec
    per_stage: list[dict] = field(default_factory=list)


def base_config(settings, dataset: str, out_dir: str) -> TrainConfig:
    """The training every grid cell and every variant shares (notebook 05's settings)."""
    return TrainConfig(model=settings.model, batch_size=settings.batch_size,
                       accumulate=settings.accumulate, recipe=settings.recipe, out_dir=out_dir,
                       **data_fields(settings, dataset))


def table5_grid(settings, output_dir: str) -> Table5Result:
    """One run per (image size, RandAugment magnitude, seed), each trained and evaluated at its size
    for ``grid_epochs``, in ``output_dir/05_progressive_runs/grid-<size>-m<magnitude>-s<seed>``."""
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root, settings.download)
    base = base_config(settings, dataset, f"{output_dir}/05_progressive_runs")
    per_seed, last = [], None
    for seed in settings.grid_seeds:
        grid = []
        for size in settings.grid_sizes:
            row = []
            for magnitude in settings.grid_magnitudes:
                schedule = linear_schedule(settings.grid_epochs, 1, (size, size), size,
                                           randaug_magnitude=(magnitude, magnitude),
                                           source="Table 5 grid")
                out_dir = f"{base.out_dir}/grid-{size}-m{magnitude:g}-s{seed}"
                # eval_every: the final epoch only
                config = dataclasses.replace(base, seed=seed, eval_every=settings.grid_epochs,
                                             out_dir=out_dir)
                last = (config, launch(config, schedule=schedule), schedule)
                row.append(last[1]["top1"])
            grid.append(row)
        per_seed.append(grid)
    mean = [[sum(s[i][j] for s in per_seed) / len(per_seed)
             for j in range(len(settings.grid_magnitudes))]
            for i in range(len(settings.grid_sizes))]
    conditions = run_conditions(settings, *last, notice, seeds=settings.grid_seeds)
    conditions.image_sizes, conditions.eval_size = list(settings.grid_sizes), None
    return Table5Result(conditions, list(settings.grid_sizes), list(settings.grid_magnitudes),
                        settings.grid_epochs, mean, per_seed)


def comparison_schedule(settings, eval_size: int | None = None,
                        model: str | None = None) -> ProgressiveSchedule:
    """Algorithm 1's schedule for the comparison: the paper's or the official code's preset
    (V2-S/M/L) for ``model`` (default ``settings.model``), or the settings' ranges (sizes
    ``min_size`` -> ``max_size``, RandAugment, dropout, mixup first -> last);
    ``settings.per_model[model]`` (notebook 07), if any, replaces them."""
    own = getattr(settings, "per_model", {}).get(model, {})
    if own:
        settings = dataclasses.replace(settings, per_model={}, **own)
    if settings.schedule_source is not None:
        return schedule_preset(model or settings.model, settings.schedule_source,
                               epochs=settings.epochs, stages=settings.stages,
                               eval_size=eval_size or settings.eval_size)
    dropout = tuple(settings.dropout_range) if settings.dropout_range else None
    return linear_schedule(settings.epochs, settings.stages, (settings.min_size, settings.max_size),
                           settings.eval_size, dropout=dropout,
                           randaug_magnitude=tuple(settings.randaug_range),
                           mixup_alpha=tuple(settings.mixup_range),
                           round_to=4 if settings.max_size < 100 else 8,
                           source=f"{settings.profile} profile, Table 6 shape")


def progressive_comparison(settings, output_dir: str) -> ProgressiveResult:
    """Train ``settings.model`` once per variant and seed (same epochs, stages and eval size) in
    ``output_dir/05_progressive_runs/<variant>-s<seed>``; ``time_vs_fixed`` is each run's training
    wall-clock over the fixed-size run's of the same seed (the epochs' own time: data loading
    included, evaluation excluded)."""
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root, settings.download)
    if notice:
        print(notice)
    base = base_config(settings, dataset, f"{output_dir}/05_progressive_runs")
    schedule = comparison_schedule(settings)
    rows, curves, per_stage, last = [], {}, [], None
    for name in settings.variants:
        for seed in settings.seeds:
            config = dataclasses.replace(base, seed=seed, out_dir=f"{base.out_dir}/{name}-s{seed}")
            # Table 13: a new random size every 8 epochs (random_every)
            every = settings.random_every if name == "random" else 1
            run_schedule = variant(schedule, name, every=every, seed=seed)
            # a rehearsal goes through torchrun for its first run only: the same path, not four
            # process launches
            nproc = 1 if settings.rehearse and rows else settings.nproc
            summary = launch(config, nproc=nproc, schedule=run_schedule)
            last = (config, summary, run_schedule)
            history = read_history(config.out_dir)
            rows.append(_row(name, seed, summary, history, config.out_dir))
            curves[f"{name}-s{seed}"] = [{"epoch": m["epoch"], "wall_time": m["wall_time"],
                                          "top1": reported_top1(m)}
                                         for m in history]
            per_stage += _stage_times(name, seed, history)
    _time_vs_fixed(rows)
    conditions = run_conditions(settings, *last, notice, seeds=settings.seeds)
    conditions.schedule = schedule.source
    conditions.image_sizes = sorted({s.image_size for s in schedule.stages})
    conditions.random_every = settings.random_every if "random" in settings.variants else None
    return ProgressiveResult(conditions, schedule.to_dict(), rows, curves, per_stage)


def _row(name: str, seed: int, summary: dict, history: list[dict], out_dir: str) -> dict:
    images = sum(m["images_per_sec"] * m["epoch_seconds"] for m in history)
    return {"variant": name, "seed": seed, "final_top1": summary["top1"],
            "train_seconds": summary["wall_time"],
            "images_per_sec": images / max(1e-9, summary["wall_time"]), "run_dir": out_dir}


def _time_vs_fixed(rows: list[dict]) -> None:
    fixed = {r["seed"]: r["train_seconds"] for r in rows if r["variant"] == "fixed"}
    for r in rows:
        r["time_vs_fixed"] = r["train_seconds"] / fixed[r["seed"]] if r["seed"] in fixed else None


def _stage_times(name: str, seed: int, history: list[dict]) -> list[dict]:
    """Training seconds and images/s of each stage of one run (where the speed-up comes from);
    stages numbered from 1, as in Table 6 and the schedule's table."""
    stages: dict[int, dict] = {}
    for m in history:
        s = stages.setdefault(m["stage"], {"variant": name, "seed": seed, "stage": m["stage"] + 1,
                                           "image_size": m["image_size"],
                                           "epochs": 0, "seconds": 0.0, "images": 0.0})
        s["epochs"] += 1
        s["seconds"] += m["epoch_seconds"]
        s["images"] += m["images_per_sec"] * m["epoch_seconds"]
    return [dict(s, images_per_sec=s.pop("images") / max(1e-9, s["seconds"]))
            for s in stages.values()]
