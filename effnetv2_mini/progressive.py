"""Progressive learning with adaptive regularization (paper section 4, Algorithm 1; PAPER.md section 5).

Training is split into M stages. Stage i trains with image size S_i and regularization Phi_i (dropout rate,
RandAugment magnitude, mixup alpha), linearly interpolated from (S_0, Phi_0) to (S_e, Phi_e)::

    S_i   = S_0   + (S_e   - S_0)   * i / (M - 1)
    Phi_i = Phi_0 + (Phi_e - Phi_0) * i / (M - 1)

and inherits the weights (and optimizer, EMA, learning-rate schedule) of the stage before. Small images come
with weak regularization, large images with strong regularization (the paper's Table 5 shows why).

    schedule = preset("efficientnetv2_s", source="paper", epochs=350, stages=4)
    print(schedule.table())
    fit(config, stages=schedule.stage_at)

Two presets, never mixed (PAPER.md section 5):

- ``paper``: Table 6 ranges, sizes linear from S_0 to S_e (intermediate sizes rounded to a multiple of 8; the
  first and last are the table's), dropout scheduled.
- ``code``: the official code, ``size_i = int(128 + (train_size - 128) * (i + 1) / M)`` (V2-S: 171, 214, 257,
  300), RandAugment ``linspace(5, ram, M)``, mixup ``linspace(0, alpha, M)``, dropout fixed per model.

Ablation variants (:func:`variant`): ``progressive`` (adaptive regularization, the paper's method), ``fixed``
(largest size and strongest regularization throughout), ``progressive_fixed_reg`` (sizes grow, regularization
stays at its final strength) and ``random`` (every ``every`` epochs a stage is drawn at random, with its own
size and regularization).
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path

from .configs import get_config
from .notebook import format_table
from .reference import paper_table
from .train import StageSettings, TrainConfig, config_from_dict, fit, read_launch_spec, run_under_torchrun

__all__ = ["Stage", "ProgressiveSchedule", "linear_schedule", "preset", "variant", "fit_progressive", "compare_variants",
           "regularization_grid",
           "VARIANTS",
           "PAPER_TABLE_6", "CODE_PRESETS"]

# Paper Table 6: (min, max) per model, from the reference data file.
PAPER_TABLE_6 = {model: {key: tuple(bounds) for key, bounds in ranges.items()}
                 for model, ranges in paper_table("table6")["ranges"].items()}
# Official code (hparams / effnetv2_configs): final train size, RandAugment max, mixup max, fixed dropout.
CODE_PRESETS = {
    "efficientnetv2_s": dict(train_size=300, randaug_max=10, mixup_max=0.0, dropout=0.2),
    "efficientnetv2_m": dict(train_size=384, randaug_max=15, mixup_max=0.2, dropout=0.3),
    "efficientnetv2_l": dict(train_size=384, randaug_max=20, mixup_max=0.5, dropout=0.4),
}
VARIANTS = ("progressive", "fixed", "progressive_fixed_reg", "random")


@dataclass(frozen=True)
class Stage:
    index: int
    start_epoch: int
    epochs: int
    image_size: int
    dropout: float | None
    randaug_magnitude: float
    mixup_alpha: float


@dataclass(frozen=True)
class ProgressiveSchedule:
    """The stages of one training run; ``stage_at(epoch)`` feeds :func:`effnetv2_mini.train.fit`."""

    stages: tuple[Stage, ...]
    eval_size: int
    source: str
    variant: str = "progressive"
    every: int = 1  # the random variant's resampling period (epochs)
    seed: int = 0

    @property
    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stages)

    def stage_index(self, epoch: int) -> int:
        if not 0 <= epoch < self.total_epochs:
            raise ValueError(f"epoch {epoch} is outside the schedule's {self.total_epochs} epochs")
        if self.variant == "random":
            return random.Random(self.seed * 1_000_003 + epoch // self.every).randrange(len(self.stages))
        return next(s.index for s in self.stages if s.start_epoch <= epoch < s.start_epoch + s.epochs)

    def stage_at(self, epoch: int) -> StageSettings:
        stage = self.stages[self.stage_index(epoch)]
        return StageSettings(stage.image_size, stage.dropout, stage.randaug_magnitude, stage.mixup_alpha, stage.index)

    def epoch_settings(self) -> list[StageSettings]:
        return [self.stage_at(e) for e in range(self.total_epochs)]

    def table(self) -> str:
        rows = [{"stage": s.index + 1, "epochs": f"{s.start_epoch + 1}-{s.start_epoch + s.epochs}",
                 "size": s.image_size, "dropout": s.dropout, "randaug": s.randaug_magnitude, "mixup": s.mixup_alpha}
                for s in self.stages]
        header = f"{self.variant} schedule ({self.source}), eval at {self.eval_size}px"
        if self.variant == "random":
            header += f"; a stage drawn at random every {self.every} epoch(s)"
        return header + "\n" + format_table(rows, ["stage", "epochs", "size", "dropout", "randaug", "mixup"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProgressiveSchedule:
        stages = tuple(Stage(**s) for s in data["stages"])
        return cls(**{**data, "stages": stages})


def _epoch_split(epochs: int, stages: int) -> list[tuple[int, int]]:
    """(start, length) of each stage: boundaries at floor(i * epochs / stages), so lengths differ by at most 1."""
    if stages < 1 or epochs < stages:
        raise ValueError(f"need at least one epoch per stage: {epochs} epochs, {stages} stages")
    bounds = [i * epochs // stages for i in range(stages + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(stages)]


def _lerp(low: float, high: float, i: int, stages: int) -> float:
    return low if stages == 1 else low + (high - low) * i / (stages - 1)


def _round_size(size: float, multiple: int) -> int:
    return int(round(size / multiple) * multiple)


def linear_schedule(epochs: int, stages: int, image_size: tuple[int, int], eval_size: int,
                    dropout: tuple[float, float] | None = None, randaug_magnitude: tuple[float, float] = (0, 0),
                    mixup_alpha: tuple[float, float] = (0, 0), round_to: int = 8, source: str = "custom"
                    ) -> ProgressiveSchedule:
    """Algorithm 1: every quantity linear from its first to its last value over ``stages`` stages.

    Intermediate sizes are rounded to a multiple of ``round_to``; the first and last are kept as given. No size
    exceeds ``eval_size``. ``dropout=None`` leaves the model's dropout alone.
    """
    if image_size[1] > eval_size:
        raise ValueError(f"the largest training size {image_size[1]} exceeds the eval size {eval_size}")
    result = []
    for i, (start, length) in enumerate(_epoch_split(epochs, stages)):
        size = _lerp(*image_size, i, stages)
        size = int(size) if i in (0, stages - 1) else _round_size(size, round_to)
        result.append(Stage(
            index=i, start_epoch=start, epochs=length, image_size=min(size, eval_size),
            dropout=None if dropout is None else round(_lerp(*dropout, i, stages), 6),
            randaug_magnitude=round(_lerp(*randaug_magnitude, i, stages), 6),
            mixup_alpha=round(_lerp(*mixup_alpha, i, stages), 6),
        ))
    return ProgressiveSchedule(tuple(result), eval_size, source)


def preset(model_name: str, source: str = "paper", epochs: int = 350, stages: int = 4,
           eval_size: int | None = None) -> ProgressiveSchedule:
    """The paper's (Table 6) or the official code's schedule for EfficientNetV2-S, -M or -L."""
    name = get_config(model_name).name
    if name not in PAPER_TABLE_6:
        raise ValueError(f"no progressive preset for {name}: presets exist for {', '.join(PAPER_TABLE_6)}; build one "
                         "with linear_schedule(...)")
    eval_size = eval_size or get_config(name).eval_size
    if source == "paper":
        ranges = PAPER_TABLE_6[name]
        return linear_schedule(epochs, stages, ranges["image_size"], eval_size, ranges["dropout"],
                               ranges["randaug_magnitude"], ranges["mixup_alpha"], source="paper Table 6")
    if source == "code":
        official = CODE_PRESETS[name]
        result = []
        for i, (start, length) in enumerate(_epoch_split(epochs, stages)):
            size = int(128 + (official["train_size"] - 128) * (i + 1) / stages)
            result.append(Stage(i, start, length, min(size, eval_size), official["dropout"],
                                round(_lerp(5, official["randaug_max"], i, stages), 6),
                                round(_lerp(0, official["mixup_max"], i, stages), 6)))
        return ProgressiveSchedule(tuple(result), eval_size, "official code")
    raise ValueError(f"unknown preset source {source!r}; choose 'paper' or 'code'")


def variant(schedule: ProgressiveSchedule, name: str, every: int = 1, seed: int = 0) -> ProgressiveSchedule:
    """The same epochs and stages, run as one of the paper's comparisons (see the module docstring)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; variants: {', '.join(VARIANTS)}")
    last = schedule.stages[-1]
    if name == "progressive":
        stages = schedule.stages
    elif name == "fixed":
        stages = tuple(dataclasses.replace(s, image_size=last.image_size, dropout=last.dropout,
                                           randaug_magnitude=last.randaug_magnitude, mixup_alpha=last.mixup_alpha)
                       for s in schedule.stages)
    elif name == "progressive_fixed_reg":
        stages = tuple(dataclasses.replace(s, dropout=last.dropout, randaug_magnitude=last.randaug_magnitude,
                                           mixup_alpha=last.mixup_alpha) for s in schedule.stages)
    else:
        stages = schedule.stages
    return dataclasses.replace(schedule, stages=stages, variant=name, every=every, seed=seed)


def fit_progressive(config: TrainConfig, schedule: ProgressiveSchedule, nproc: int = 1, **fit_options) -> dict:
    """Train ``config`` through ``schedule`` (its epochs and eval size replace the config's), in this process or
    under torchrun with ``nproc`` processes. The schedule is recorded in the run's ``config.json``."""
    config = dataclasses.replace(config, epochs=schedule.total_epochs, eval_size=schedule.eval_size,
                                 image_size=schedule.stages[-1].image_size)
    if nproc <= 1:
        return fit(config, stages=schedule.stage_at, extra_config={"progressive": schedule.to_dict()}, **fit_options)
    return run_under_torchrun("effnetv2_mini.progressive", config, nproc, schedule=schedule.to_dict())


def compare_variants(config: TrainConfig, schedule: ProgressiveSchedule, variants=VARIANTS, seeds=(0,),
                     every: int = 1, nproc: int = 1) -> list[dict]:
    """Train ``config`` once per variant and seed, same epochs and eval size, in ``out_dir/<variant>-s<seed>``.

    Each row: variant, seed, final and best top-1, training seconds (the epochs' own time), total seconds
    (the whole call: data rendering, evaluation and start-up included; kept in ``timing.json`` so that a rerun,
    which skips finished runs, reports the original time), training images/s.
    """
    import time

    rows = []
    for name in variants:
        for seed in seeds:
            out = Path(config.out_dir) / f"{name}-s{seed}"
            timing = out / "timing.json"
            start = time.perf_counter()
            summary = fit_progressive(dataclasses.replace(config, out_dir=str(out), seed=seed),
                                      variant(schedule, name, every=every, seed=seed), nproc=nproc)
            if not timing.exists():
                timing.write_text(json.dumps({"total_seconds": time.perf_counter() - start}))
            metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            top1 = [max(m["val_top1"], m.get("ema_top1", -1.0)) for m in metrics]
            images = sum(m["images_per_sec"] * m["epoch_seconds"] for m in metrics)
            rows.append({
                "variant": name, "seed": seed, "final_top1": top1[-1], "best_top1": summary["best_top1"],
                "train_seconds": summary["wall_time"], "total_seconds": json.loads(timing.read_text())["total_seconds"],
                "images_per_sec": images / max(1e-9, summary["wall_time"]), "run_dir": str(out),
                "curve": [{"epoch": m["epoch"], "wall_time": m["wall_time"], "top1": t} for m, t in zip(metrics, top1)],
            })
    return rows


def regularization_grid(config: TrainConfig, sizes, magnitudes, epochs: int, mixup_alpha: float = 0.0) -> dict:
    """The experiment behind the paper's Table 5: one short run per (image size, RandAugment magnitude), each
    trained and evaluated at its size, in ``out_dir/grid-<size>-m<magnitude>``. Returns sizes, magnitudes and
    the final top-1 matrix ``top1[i][j]`` (size i, magnitude j)."""
    top1 = []
    for size in sizes:
        row = []
        for magnitude in magnitudes:
            schedule = linear_schedule(epochs, 1, (size, size), size, randaug_magnitude=(magnitude, magnitude),
                                       mixup_alpha=(mixup_alpha, mixup_alpha), source="Table 5 grid")
            out = Path(config.out_dir) / f"grid-{size}-m{magnitude:g}"
            fit_progressive(dataclasses.replace(config, out_dir=str(out)), schedule)
            last = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
            row.append(max(last["val_top1"], last.get("ema_top1", -1.0)))
        top1.append(row)
    return {"sizes": list(sizes), "magnitudes": list(magnitudes), "top1": top1, "epochs": epochs}


def _main(argv=None) -> None:
    spec = read_launch_spec(argv, "One progressive training from a launch spec (used under torchrun).")
    fit_progressive(config_from_dict(spec["config"]), ProgressiveSchedule.from_dict(spec["schedule"]))


if __name__ == "__main__":
    _main()
