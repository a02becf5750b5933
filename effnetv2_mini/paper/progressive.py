"""Progressive learning with adaptive regularization (paper section 4, Algorithm 1; docs/paper.md#progressive-learning-section-4).

Training is split into M stages. Stage i trains with image size S_i and regularization Phi_i (dropout rate,
RandAugment magnitude, mixup alpha), linearly interpolated from (S_0, Phi_0) to (S_e, Phi_e)::

    S_i   = S_0   + (S_e   - S_0)   * i / (M - 1)
    Phi_i = Phi_0 + (Phi_e - Phi_0) * i / (M - 1)

and inherits the weights (and optimizer, EMA, learning-rate schedule) of the stage before. Small images come
with weak regularization, large images with strong regularization (the paper's Table 5 shows why).

    schedule = schedule_preset("efficientnetv2_s", source="paper", epochs=350, stages=4)
    print(schedule.table())
    fit(config, schedule)              # effnetv2_mini.engine.train: the schedule's epochs and eval size replace the config's

Two schedule presets, never mixed (docs/paper.md#table-6-and-the-papers-schedule and
#how-the-official-code-schedules-it):

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
import random
from dataclasses import dataclass

from ..study.reference import paper_table
from ..study.tables import format_table
from .configs import get_config

__all__ = ["EpochSettings", "ProgressiveStage", "ProgressiveSchedule", "constant_schedule", "linear_schedule",
           "schedule_preset", "variant", "VARIANTS", "PAPER_TABLE_6", "CODE_SCHEDULES"]

# Paper Table 6: (min, max) per model, from the reference data file.
PAPER_TABLE_6 = {model: {key: tuple(bounds) for key, bounds in ranges.items()}
                 for model, ranges in paper_table("table6")["ranges"].items()}
# Official code (hparams / effnetv2_configs): final train size, RandAugment max, mixup max, fixed dropout.
CODE_SCHEDULES = {
    "efficientnetv2_s": dict(train_size=300, randaug_max=10, mixup_max=0.0, dropout=0.2),
    "efficientnetv2_m": dict(train_size=384, randaug_max=15, mixup_max=0.2, dropout=0.3),
    "efficientnetv2_l": dict(train_size=384, randaug_max=20, mixup_max=0.5, dropout=0.4),
}
VARIANTS = ("progressive", "fixed", "progressive_fixed_reg", "random")


@dataclass(frozen=True)
class EpochSettings:
    """What the training loop needs to know about one epoch: the image size and the regularization strengths."""

    image_size: int
    dropout: float | None  # None: leave the model's dropout alone
    randaug_magnitude: float
    mixup_alpha: float
    stage: int = 0


@dataclass(frozen=True)
class ProgressiveStage:
    """One stage of Algorithm 1: its epochs, image size and regularization."""

    index: int
    start_epoch: int
    epochs: int
    image_size: int
    dropout: float | None
    randaug_magnitude: float
    mixup_alpha: float


@dataclass(frozen=True)
class ProgressiveSchedule:
    """The stages of one training run; :func:`effnetv2_mini.engine.train.fit` asks ``stage_at(epoch)`` every epoch."""

    stages: tuple[ProgressiveStage, ...]
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

    def stage_at(self, epoch: int) -> EpochSettings:
        stage = self.stages[self.stage_index(epoch)]
        return EpochSettings(stage.image_size, stage.dropout, stage.randaug_magnitude, stage.mixup_alpha, stage.index)

    def epoch_settings(self) -> list[EpochSettings]:
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
        stages = tuple(ProgressiveStage(**s) for s in data["stages"])
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


def constant_schedule(epochs: int, image_size: int, eval_size: int, dropout: float | None = None,
                      randaug_magnitude: float = 0.0, mixup_alpha: float = 0.0) -> ProgressiveSchedule:
    """No progressive learning: one stage of fixed size and regularization for all ``epochs``."""
    stage = ProgressiveStage(0, 0, epochs, image_size, dropout, randaug_magnitude, mixup_alpha)
    return ProgressiveSchedule((stage,), eval_size, "fixed size", variant="fixed")


def linear_schedule(epochs: int, stages: int, image_size: tuple[int, int], eval_size: int,
                    dropout: tuple[float, float] | None = None, randaug_magnitude: tuple[float, float] = (0, 0),
                    mixup_alpha: tuple[float, float] = (0, 0), round_to: int = 8, source: str = "custom"
                    ) -> ProgressiveSchedule:
    """Algorithm 1: every quantity linear from its first to its last value over ``stages`` stages.

    Intermediate sizes are rounded to a multiple of ``round_to``; the first and last are kept as given. No size
    exceeds ``eval_size``. ``dropout=None`` leaves the model's dropout alone.
    """
    if image_size[1] > eval_size:
        raise ValueError(f"the largest training size {image_size[1]} exceeds the eval size {eval_size}: evaluate at "
                         f"{image_size[1]} px or more (--eval-size), or end the schedule at {eval_size} px")
    result = []
    for i, (start, length) in enumerate(_epoch_split(epochs, stages)):
        size = _lerp(*image_size, i, stages)
        size = int(size) if i in (0, stages - 1) else _round_size(size, round_to)
        result.append(ProgressiveStage(
            index=i, start_epoch=start, epochs=length, image_size=min(size, eval_size),
            dropout=None if dropout is None else round(_lerp(*dropout, i, stages), 6),
            randaug_magnitude=round(_lerp(*randaug_magnitude, i, stages), 6),
            mixup_alpha=round(_lerp(*mixup_alpha, i, stages), 6),
        ))
    return ProgressiveSchedule(tuple(result), eval_size, source)


def schedule_preset(model_name: str, source: str = "paper", epochs: int = 350, stages: int = 4,
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
        official = CODE_SCHEDULES[name]
        result = []
        for i, (start, length) in enumerate(_epoch_split(epochs, stages)):
            size = int(128 + (official["train_size"] - 128) * (i + 1) / stages)
            result.append(ProgressiveStage(i, start, length, min(size, eval_size), official["dropout"],
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


SPEC_KEYS = {"stages": "number of stages", "size": "first:last image size", "randaug": "first:last RandAugment magnitude",
             "mixup": "first:last mixup alpha", "dropout": "first:last dropout", "round": "round middle sizes to a multiple"}


def parse_schedule(text: str, config, variant_name: str = "progressive") -> ProgressiveSchedule:
    """The schedule the command line asks for (``effnetv2 train --progressive ...``) over ``config.epochs``:
    ``paper`` or ``code`` (the presets, for efficientnetv2_s/m/l) or a SPEC such as
    ``"stages=4 size=128:300 randaug=5:15 mixup=0:0 dropout=0.1:0.3"`` (first:last value; Algorithm 1 in between).
    ``config`` must be resolved (its eval size known)."""
    if text in ("paper", "code"):
        schedule = schedule_preset(config.model, text, epochs=config.epochs, stages=4, eval_size=config.eval_size)
    else:
        spec = _parse_spec(text)
        if "size" not in spec:
            raise ValueError(f"--progressive {text!r}: a SPEC needs size=FIRST:LAST (e.g. size=128:300)")
        schedule = linear_schedule(config.epochs, int(spec.get("stages", 4)), _int_pair(spec["size"]), config.eval_size,
                                   dropout=spec.get("dropout"), randaug_magnitude=spec.get("randaug", (0.0, 0.0)),
                                   mixup_alpha=spec.get("mixup", (0.0, 0.0)), round_to=int(spec.get("round", 8)),
                                   source=f"command line: {text}")
    return variant(schedule, variant_name, seed=config.seed)


def _parse_spec(text: str) -> dict:
    spec = {}
    for token in text.replace(",", " ").split():
        key, _, value = token.partition("=")
        if key not in SPEC_KEYS or not value:
            known = "; ".join(f"{k}: {v}" for k, v in SPEC_KEYS.items())
            raise ValueError(f"--progressive: cannot read {token!r}; write key=value pairs, keys: {known}")
        try:
            spec[key] = float(value) if key in ("stages", "round") else tuple(float(v) for v in value.split(":"))
        except ValueError:
            raise ValueError(f"--progressive: {token!r} is not a number{'' if key in ('stages', 'round') else ' pair'}") from None
        if key not in ("stages", "round") and len(spec[key]) != 2:
            raise ValueError(f"--progressive: {key} takes FIRST:LAST, got {value!r}")
    return spec


def _int_pair(pair: tuple[float, float]) -> tuple[int, int]:
    first, last = int(pair[0]), int(pair[1])
    if first < 1 or last < first:
        raise ValueError(f"--progressive: size={first}:{last} must grow from a positive size")
    return first, last
