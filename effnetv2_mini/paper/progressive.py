"""Progressive learning with adaptive regularization (paper section 4, Algorithm 1;
docs/paper.md#progressive-learning-section-4).

Training is split into M stages. Stage i trains with image size S_i and regularization Phi_i
(dropout rate, RandAugment magnitude, mixup alpha), linearly interpolated from (S_0, Phi_0) to (S_e,
Phi_e)::

    S_i   = S_0   + (S_e   - S_0)   * i / (M - 1)
    Phi_i = Phi_0 + (Phi_e - Phi_0) * i / (M - 1)

and inherits the weights (and optimizer, EMA, learning-rate schedule) of the stage before. Small
images come with weak regularization, large images with strong regularization (the paper's Table 5
shows why).

    schedule = schedule_preset("efficientnetv2_s", source="paper", epochs=350, stages=4)
    fit(config, schedule)      # effnetv2_mini.engine.loop: the schedule's epochs and eval size
                               # replace the config's

Each epoch, the loop asks the schedule for its :class:`EpochPlan` (``stage_at(epoch)``) and hands it
to :func:`apply_stage`, where the stage's size and regularization reach the model and the data
loader.

Two schedule presets, never mixed (docs/paper.md#table-6-and-the-papers-schedule and
#how-the-official-code-schedules-it):

- ``paper``: Table 6 ranges, sizes linear from S_0 to S_e (intermediate sizes rounded to a multiple
  of 8; the first and last are the table's), dropout scheduled.
- ``code``: the official code, ``size_i = int(128 + (train_size - 128) * (i + 1) / M)`` (V2-S: 171,
  214, 257, 300), RandAugment ``linspace(5, ram, M)``, mixup ``linspace(0, alpha, M)``, dropout
  fixed per model.

Ablation variants (:func:`variant`): ``fixed`` (largest size and strongest regularization
throughout), ``progressive_fixed_reg`` (sizes grow, regularization stays at its final strength),
``progressive`` (adaptive regularization, the paper's method) and ``random`` (every ``every`` epochs
a stage is drawn at random, with its own size and regularization).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .configs import get_config

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from .mixing import Mixer

__all__ = ["EpochPlan", "ProgressiveStage", "ProgressiveSchedule", "apply_stage",
           "constant_schedule", "linear_schedule", "schedule_preset", "variant", "VARIANTS",
           "PAPER_TABLE_6", "CODE_SCHEDULES"]

# Paper Table 6 (section 5.1): (min, max) of each quantity over the stages, per model. The same
# numbers are in study/paper_numbers.yaml (the report's reference file); tests/test_progressive.py
# checks that they agree.
PAPER_TABLE_6 = {
    "efficientnetv2_s": dict(image_size=(128, 300), randaug_magnitude=(5, 15), mixup_alpha=(0, 0),
                             dropout=(0.1, 0.3)),
    "efficientnetv2_m": dict(image_size=(128, 380), randaug_magnitude=(5, 20), mixup_alpha=(0, 0.2),
                             dropout=(0.1, 0.4)),
    "efficientnetv2_l": dict(image_size=(128, 380), randaug_magnitude=(5, 25), mixup_alpha=(0, 0.4),
                             dropout=(0.1, 0.5)),
}
# Official code (hparams / effnetv2_configs): final train size, RandAugment max, mixup max, fixed
# dropout.
CODE_SCHEDULES = {
    "efficientnetv2_s": dict(train_size=300, randaug_max=10, mixup_max=0.0, dropout=0.2),
    "efficientnetv2_m": dict(train_size=384, randaug_max=15, mixup_max=0.2, dropout=0.3),
    "efficientnetv2_l": dict(train_size=384, randaug_max=20, mixup_max=0.5, dropout=0.4),
}
# The ablation variants, in the order the comparison trains them (the fixed-size baseline first).
VARIANTS = ("fixed", "progressive_fixed_reg", "progressive", "random")


@dataclass(frozen=True)
class EpochPlan:
    """What one epoch trains with: its stage's image size and regularization strengths."""

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
    """The stages of one training run; :func:`effnetv2_mini.engine.loop.fit` asks
    ``stage_at(epoch)`` every epoch."""

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
            rng = random.Random(self.seed * 1_000_003 + epoch // self.every)
            return rng.randrange(len(self.stages))
        return next(s.index for s in self.stages
                    if s.start_epoch <= epoch < s.start_epoch + s.epochs)

    def stage_at(self, epoch: int) -> EpochPlan:
        stage = self.stages[self.stage_index(epoch)]
        return EpochPlan(stage.image_size, stage.dropout, stage.randaug_magnitude,
                         stage.mixup_alpha, stage.index)

    def epoch_plans(self) -> list[EpochPlan]:
        return [self.stage_at(e) for e in range(self.total_epochs)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ProgressiveSchedule:
        stages = tuple(ProgressiveStage(**s) for s in data["stages"])
        return cls(**{**data, "stages": stages})


def _epoch_split(epochs: int, stages: int) -> list[tuple[int, int]]:
    """(start, length) of each stage: boundaries at floor(i * epochs / stages), so lengths differ by
    at most 1."""
    if stages < 1 or epochs < stages:
        raise ValueError(f"need at least one epoch per stage: {epochs} epochs, {stages} stages")
    bounds = [i * epochs // stages for i in range(stages + 1)]
    return [(bounds[i], bounds[i + 1] - bounds[i]) for i in range(stages)]


def _lerp(low: float, high: float, i: int, stages: int) -> float:
    return low if stages == 1 else low + (high - low) * i / (stages - 1)


def _round_size(size: float, multiple: int) -> int:
    return int(round(size / multiple) * multiple)


def constant_schedule(epochs: int, image_size: int, eval_size: int, dropout: float | None = None,
                      randaug_magnitude: float = 0.0,
                      mixup_alpha: float = 0.0) -> ProgressiveSchedule:
    """No progressive learning: one stage of fixed size and regularization for all ``epochs``."""
    stage = ProgressiveStage(0, 0, epochs, image_size, dropout, randaug_magnitude, mixup_alpha)
    return ProgressiveSchedule((stage,), eval_size, "fixed size", variant="fixed")


def linear_schedule(epochs: int, stages: int, image_size: tuple[int, int], eval_size: int,
                    dropout: tuple[float, float] | None = None,
                    randaug_magnitude: tuple[float, float] = (0, 0),
                    mixup_alpha: tuple[float, float] = (0, 0), round_to: int = 8,
                    source: str = "custom"
                    ) -> ProgressiveSchedule:
    """Algorithm 1: every quantity linear from its first to its last value over ``stages`` stages.

    Intermediate sizes are rounded to a multiple of ``round_to``; the first and last are kept as
    given. No size exceeds ``eval_size``. ``dropout=None`` leaves the model's dropout alone.
    """
    if image_size[1] > eval_size:
        raise ValueError(f"the largest training size {image_size[1]} exceeds the eval size "
                         f"{eval_size}: evaluate at {image_size[1]} px or more (--eval-size), or "
                         f"end the schedule at {eval_size} px")
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


def apply_stage(plan: EpochPlan, model, loaders, epoch: int, skip_batches: int = 0,
                cutmix_alpha: float = 0.0,
                cutmix_with_mixup: bool = False) -> tuple[DataLoader, Mixer | None]:
    """Algorithm 1's "train with S_i and R_i" for one epoch: the stage's regularization is set on
    the model, and the loader and the batch mixer that carry its image size and augmentation are
    returned as ``(loader, mixer)`` (the mixer is None when nothing is mixed). The training loop
    calls this at the start of every epoch.

    Algorithm 1 (paper section 4), in our words::

        given: a first image size S_0 and regularization strengths {phi_k^0}, a last size S_e
               and strengths {phi_k^e}, N training steps split into M stages
        for stage i = 0 .. M-1:
            image size      S_i = S_0 + (S_e - S_0) * i / (M - 1)
            regularization  R_i = {phi_k^i = phi_k^0 + (phi_k^e - phi_k^0) * i / (M - 1)}
            train the model for N / M steps at size S_i with regularization R_i

    The interpolation is done when the schedule is built (:func:`linear_schedule`,
    :func:`schedule_preset`); ``plan`` is this epoch's stage (:meth:`ProgressiveSchedule.stage_at`).
    Here each value reaches training:

    - dropout rate: the model's dropout before the classifier (None leaves the model's own rate);
    - mixup alpha: the mixer applied to every batch; CutMix goes with it at the same alpha when
      ``cutmix_with_mixup`` (the official code), else it stays at the run's fixed ``cutmix_alpha``;
    - image size S_i and RandAugment magnitude: the training loader's transform (random crop to S_i,
      then RandAugment at that magnitude); ``loaders.train`` rebuilds the loader only when they
      change, and skips the ``skip_batches`` an interrupted epoch already trained.
    """
    # torch: imported when training, so that schedules stay light to import
    from .mixing import make_mixer

    if plan.dropout is not None:
        model.set_dropout(plan.dropout)
    cutmix = plan.mixup_alpha if cutmix_with_mixup else cutmix_alpha
    mixer = make_mixer(loaders.num_classes, plan.mixup_alpha, cutmix)
    loader = loaders.train(plan.image_size, plan.randaug_magnitude, epoch, skip_batches)
    return loader, mixer


def schedule_preset(model_name: str, source: str = "paper", epochs: int = 350, stages: int = 4,
                    eval_size: int | None = None) -> ProgressiveSchedule:
    """The paper's (Table 6) or the official code's schedule for EfficientNetV2-S, -M or -L."""
    name = get_config(model_name).name
    if name not in PAPER_TABLE_6:
        raise ValueError(f"no progressive preset for {name}: presets exist for "
                         f"{', '.join(PAPER_TABLE_6)}; build one with linear_schedule(...)")
    eval_size = eval_size or get_config(name).eval_size
    if source == "paper":
        ranges = PAPER_TABLE_6[name]
        return linear_schedule(epochs, stages, ranges["image_size"], eval_size, ranges["dropout"],
                               ranges["randaug_magnitude"], ranges["mixup_alpha"],
                               source="paper Table 6")
    if source == "code":
        official = CODE_SCHEDULES[name]
        result = []
        for i, (start, length) in enumerate(_epoch_split(epochs, stages)):
            size = int(128 + (official["train_size"] - 128) * (i + 1) / stages)
            result.append(ProgressiveStage(i, start, length, min(size, eval_size),
                                           official["dropout"],
                                           round(_lerp(5, official["randaug_max"], i, stages), 6),
                                           round(_lerp(0, official["mixup_max"], i, stages), 6)))
        return ProgressiveSchedule(tuple(result), eval_size, "official code")
    raise ValueError(f"unknown preset source {source!r}; choose 'paper' or 'code'")


def variant(schedule: ProgressiveSchedule, name: str, every: int = 1,
            seed: int = 0) -> ProgressiveSchedule:
    """The same epochs and stages, run as one of the paper's comparisons (see the module
    docstring)."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; variants: {', '.join(VARIANTS)}")
    last = schedule.stages[-1]
    if name == "progressive":
        stages = schedule.stages
    elif name == "fixed":
        stages = tuple(dataclasses.replace(s, image_size=last.image_size, dropout=last.dropout,
                                           randaug_magnitude=last.randaug_magnitude,
                                           mixup_alpha=last.mixup_alpha)
                       for s in schedule.stages)
    elif name == "progressive_fixed_reg":
        stages = tuple(dataclasses.replace(s, dropout=last.dropout,
                                           randaug_magnitude=last.randaug_magnitude,
                                           mixup_alpha=last.mixup_alpha) for s in schedule.stages)
    else:
        stages = schedule.stages
    return dataclasses.replace(schedule, stages=stages, variant=name, every=every, seed=seed)
