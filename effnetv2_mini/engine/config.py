"""What a training run is: :class:`TrainConfig`, its recipe values and their validation (paper
section 5.1; docs/paper.md#training-recipe-section-51).

    config = TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=3, recipe="simple",
                         out_dir="runs/demo")
    config.resolved()          # every value the recipe leaves to None filled in, and checked

The recipes (:data:`effnetv2_mini.paper.recipe.RECIPES`; every value can be overridden field by
field):

- ``paper``: the paper's recipe, the official code where the paper is silent: RMSProp (decay 0.9,
  momentum 0.9, TF-style epsilon 1e-3 inside the square root), lr 0.016 per 256 images, 5 warm-up
  epochs then x0.97 every 2.4 epochs, label smoothing 0.1, weight decay 1e-5 off BN and biases,
  EMA 0.9999 at batch 4096, stochastic depth 0.2, BN momentum 0.01 (the paper's decay 0.99).
- ``code``: the official code: as ``paper`` with BN momentum 0.1 and CutMix scheduled with mixup.
- ``simple``: ours, for short CPU runs and the demo models: AdamW, lr 0.016 per 256, 1 warm-up
  epoch then cosine, weight decay 0.05 off BN and biases, label smoothing 0.1, no EMA, BN
  momentum 0.1.
- ``short``: ours, a few epochs on a small real data set (Imagenette): as ``simple`` with weight
  decay 0.01, crops of 35-100% of the image and ImageNet's classifier init range (each choice
  explained in recipe.py).

What the recipe rules derive from a config (the peak lr from the global batch, the EMA decay per
step, the fixed-size regularization) is applied in one place for every caller:
:mod:`effnetv2_mini.engine.build`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..argtypes import (
    FRACTION,
    IMAGE_SIZE,
    MAX_IMAGE_SIZE,
    MIX_ALPHA,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    Rule,
)
from ..data.datasets import is_built_in
from ..paper.recipe import RECIPES

__all__ = ["TrainConfig", "config_from_dict", "global_batch", "split_global_batch",
           "bn_momentum_per_batch", "optimizer_steps_per_epoch", "MAX_IMAGE_SIZE",
           "surely_mistaken"]


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: take it from the recipe (or the model / data set)."""

    model: str = "demo_v2_tiny"
    # passed to build_model, e.g. {"fused_stages": 3}
    model_overrides: dict = field(default_factory=dict)
    # fine-tuning: our checkpoint path, "torchvision" (its ImageNet weights), a state dict file
    init_from: str | None = None
    freeze_backbone: bool = False  # train the classifier only (BatchNorm statistics still adapt)
    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    out_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    # batches per optimizer step (gradient accumulation): global batch = batch x processes x
    # this
    accumulate: int = 1
    # training size; None: 64 for synthetic, else the model's train size
    image_size: int | None = None
    eval_size: int | None = None
    recipe: str = "paper"
    optimizer: str | None = None  # rmsprop | adamw | sgd
    lr: float | None = None  # None: base_lr x global batch / 256 (engine.build.peak_lr)
    base_lr: float | None = None  # learning rate per 256 images (None: the recipe's, 0.016)
    warmup_epochs: float | None = None
    schedule: str | None = None  # exponential | cosine | flat_cosine | constant
    decay_rate: float | None = None
    decay_epochs: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema_decay: float | None = None  # 0 turns EMA off
    # the decay is per step at this global batch; None: per step as given
    ema_reference_batch: int | None = None
    drop_path_rate: float | None = None
    dropout: float | None = None  # None: the fixed-size rule's (engine.build), else the model's
    bn_momentum: float | None = None
    # the classifier's init range 1/sqrt(N) uses this N (None: the number of classes)
    head_init_classes: int | None = None
    sync_bn: bool | None = None  # pool BatchNorm statistics over GPUs under DDP
    # official | torchvision | finetune (effnetv2_mini.data.transforms)
    preprocessing: str | None = None
    normalize: str | None = None  # official | imagenet | finetune; None: the preprocessing's own
    # None: the recipe's fixed-size rule (engine.build), else 0 (off)
    randaug_magnitude: float | None = None
    # None: official absolute pixels in RandAugment; N: scaled as for N px
    randaug_reference: int | None = None
    # training crop area range; None: the preprocessing's (synthetic sets:
    # effnetv2_mini.data.loaders.SYNTHETIC_CROP_SCALE)
    crop_scale: tuple[float, float] | None = None
    mixup_alpha: float | None = None  # None: as randaug_magnitude
    cutmix_alpha: float = 0.0
    # CutMix on half of each batch at the mixup alpha (the official code)
    cutmix_with_mixup: bool | None = None
    # fine-tuning from our checkpoint starts from its EMA weights (the official ft_init_ema)
    init_from_ema: bool = True
    num_classes: int | None = None  # None: from the data set
    # train and evaluate on these classes of the data set only (relabelled 0..k-1)
    classes: list[int] | None = None
    # train on this many images per class (few-shot fine-tuning)
    images_per_class: int | None = None
    # hold this many training photos per class out of the training split and evaluate on them
    # instead of
    # the validation photos (data.holdout): choosing settings without reading the validation set
    holdout_per_class: int | None = None
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    workers: int = 2
    seed: int = 0
    skip_corrupt: bool = False
    # folder data sets: decoded images pre-resized per stage size (effnetv2_mini.data.cache)
    cache: bool | str | None = None
    # folder data sets: workers read JPEG bytes, the training device decodes (nvjpeg on CUDA)
    # and augments them, same
    # seeds and draws as the CPU path (effnetv2_mini.data.devicedecode); preprocessing
    # official or finetune; eval stays on CPU
    decode_on_device: bool = False
    # augment each training batch at once (same draws and pixels as image by image); None: on a
    # CPU for the official preprocessing of cached or built-in images
    # (effnetv2_mini.data.loaders.batches_augmented)
    batch_augment: bool | None = None
    max_steps_per_epoch: int | None = None
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    # options of the synthetic set (num_samples, difficulty, ...)
    synthetic: dict = field(default_factory=dict)
    imagenette_size: str = "320px"
    quiet: bool = False
    # continue a run directory with changed hyper-parameters (e.g. a lower lr)
    resume_with_changes: bool = False

    def resolved(self) -> TrainConfig:
        """A copy with every recipe value filled in and checked (what depends on the schedule or the
        number of processes is :func:`effnetv2_mini.engine.build.resolve`'s and
        ``build_objects``')."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; recipes: {', '.join(RECIPES)}")
        recipe = RECIPES[self.recipe]
        values = {k: (recipe[k] if getattr(self, k) is None else getattr(self, k))
                  for k in recipe if hasattr(self, k)}
        config = dataclasses.replace(self, **values)
        if config.preprocessing not in ("official", "torchvision", "finetune"):
            raise ValueError(f"unknown preprocessing {config.preprocessing!r}; choose official, "
                             "torchvision or finetune")
        if config.optimizer not in ("rmsprop", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {config.optimizer!r}; choose rmsprop, adamw or "
                             "sgd")
        if config.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {config.schedule!r}; choose {', '.join(SCHEDULES)}")
        from ..models import default_sizes  # torch only when a run is resolved

        if config.image_size is None:
            config.image_size = (64 if is_built_in(config.dataset)
                                 else default_sizes(config.model)[0])
        if config.eval_size is None:
            config.eval_size = (config.image_size if is_built_in(config.dataset)
                                else default_sizes(config.model)[1])
        _validate(config)
        return config


# the lr after the warm-up (paper.optim.lr_factor)
SCHEDULES = ("exponential", "cosine", "flat_cosine", "constant")
_OPTIONAL = True  # the field may be None (the recipe's, the model's or the data set's value)
_CLASSES = Rule(lambda v: v >= 2, "a whole number >= 2 (one class scores 100% whatever is learnt)",
                whole=True)
_DECAY_RATE = Rule(lambda v: 0 < v <= 1, "in (0, 1]", whole=False)
# (fields, rule, may be None): checked on every resolved config, so that library callers get the
# CLI's errors (the same rules as the command line's argument types, effnetv2_mini.argtypes)
_RULES = [
    (("epochs", "batch_size", "accumulate", "eval_every"), POSITIVE_INT, False),
    (("image_size", "eval_size"), IMAGE_SIZE, False),
    (("max_steps_per_epoch", "images_per_class", "ema_reference_batch", "randaug_reference",
      "head_init_classes", "holdout_per_class"), POSITIVE_INT, _OPTIONAL),
    (("num_classes",), _CLASSES, _OPTIONAL),
    (("workers",), NON_NEGATIVE_INT, False),
    (("lr", "base_lr"), POSITIVE_FLOAT, _OPTIONAL),
    (("warmup_epochs", "weight_decay", "randaug_magnitude", "decay_epochs"), NON_NEGATIVE_FLOAT,
     _OPTIONAL),
    (("mixup_alpha",), MIX_ALPHA, _OPTIONAL),  # None: the fixed-size rule's (engine.build) or 0
    (("cutmix_alpha",), MIX_ALPHA, False),
    (("ema_decay", "label_smoothing", "drop_path_rate", "bn_momentum", "dropout"), FRACTION,
     _OPTIONAL),
    (("decay_rate",), _DECAY_RATE, _OPTIONAL),
]


def _validate(config: TrainConfig) -> None:
    for names, rule, optional in _RULES:
        for name in names:
            value = getattr(config, name)
            if not (optional and value is None) and not rule.holds(value):
                meaning = f"None or {rule.meaning}" if optional else rule.meaning
                flag = name.replace("_", "-")
                raise ValueError(f"{name} must be {meaning}, got {value!r} (CLI: --{flag})")
    scale = config.crop_scale
    finite = scale is not None and all(NON_NEGATIVE_FLOAT.holds(v) for v in scale)
    if scale is not None and not (len(scale) == 2 and finite and 0 < scale[0] <= scale[1] <= 1):
        raise ValueError("crop_scale must be None or (low, high) with 0 < low <= high <= 1, got "
                         f"{scale!r}")
    if not str(config.out_dir).strip():
        raise ValueError("out_dir is empty: name the run directory (CLI: --out runs/NAME); an "
                         "empty name would write the run's files into the current folder")


# Peak learning rates above these are surely a mistake (a warning, not an error: row 19 of
# docs/reliability.md trains one on purpose). The recipes' largest peak is 0.016 x 4096 / 256 =
# 0.256 (RMSProp at the paper's batch); large-batch SGD (Goyal et al. 2017) peaks at 0.1 x 8192 /
# 256 = 3.2.
LR_SURELY_WRONG = {"rmsprop": 1.0, "adamw": 1.0, "sgd": 10.0}


def surely_mistaken(config: TrainConfig, world: int, peak_lr: float,
                    steps_per_epoch: int) -> list[str]:
    """Legal values that are surely a mistake, as warnings: a peak learning rate far above any
    recipe's, and more batches accumulated per optimizer step than an epoch holds (each step then
    sees one epoch, while the learning rate and the EMA are scaled for the nominal global batch)."""
    found = []
    if peak_lr > LR_SURELY_WRONG.get(config.optimizer, 1.0):
        found.append(f"the peak learning rate {peak_lr:g} ({config.optimizer}) is far above any "
                     "recipe's (0.256 at the paper's batch of 4096): the run will diverge or "
                     "learn nothing. Check --lr, --base-lr and --accumulate (the lr follows the "
                     "global batch)")
    if config.accumulate > steps_per_epoch:
        seen = steps_per_epoch * config.batch_size * world
        nominal = global_batch(config, world)
        found.append(f"--accumulate {config.accumulate} exceeds the {steps_per_epoch} batches of "
                     f"an epoch: each optimizer step sees one epoch ({seen} images), while the "
                     f"learning rate and EMA are scaled for a global batch of {nominal}. Use "
                     f"--accumulate {steps_per_epoch} or less")
    return found


def config_from_dict(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from its JSON form (``dataclasses.asdict``; JSON turns tuples into
    lists)."""
    values = dict(values)
    if values.get("crop_scale") is not None:
        values["crop_scale"] = tuple(values["crop_scale"])
    return TrainConfig(**values)


def global_batch(config: TrainConfig, world: int = 1) -> int:
    """Images per optimizer step over all processes: batch x processes x accumulated batches (the
    paper: 4096)."""
    return config.batch_size * world * config.accumulate


def split_global_batch(global_batch_size: int, processes: int, max_per_process: int
                       ) -> tuple[int, int]:
    """``(batch_size, accumulate)`` for a plan that states its global batch: images per process and
    batch, and batches per optimizer step, so that ``batch_size x processes x accumulate`` is
    ``global_batch_size`` with the fewest accumulated batches whose per-process batch is at most
    ``max_per_process`` (what the memory holds). E.g. 512 on 8 processes of at most 64: (64, 1);
    4096 on 8 of at most 64: (64, 8)."""
    for name, value in (("global batch", global_batch_size), ("processes", processes),
                        ("largest batch per process", max_per_process)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if global_batch_size % processes:
        raise ValueError(f"a global batch of {global_batch_size} does not split over {processes} "
                         f"processes: give a global batch that is a multiple of {processes}")
    per_process = global_batch_size // processes
    accumulate = next(a for a in range(1, per_process + 1)
                      if per_process % a == 0 and per_process // a <= max_per_process)
    return per_process // accumulate, accumulate


def optimizer_steps_per_epoch(train_images: int, batch_size: int, processes: int = 1,
                              accumulate: int = 1, max_batches: int | None = None) -> int:
    """Optimizer steps in one epoch of the training loop: whole batches of ``batch_size x
    processes`` (the last partial batch is dropped), capped at ``max_batches``
    (``max_steps_per_epoch``), one step per ``accumulate`` batches and one for a shorter last group
    (:func:`effnetv2_mini.engine.loop.train_one_epoch`)."""
    batches = train_images // (batch_size * processes)
    if max_batches:
        batches = min(batches, max_batches)
    return -(-batches // accumulate)


def bn_momentum_per_batch(momentum: float | None, accumulate: int) -> float | None:
    """The BatchNorm momentum per forward batch that gives, over the ``accumulate`` batches of one
    optimizer step, the recipe's ``momentum`` per step: ``1 - (1 - momentum) ** (1 / accumulate)``.
    The official code updates its moving statistics once per step of the global batch (hparams.py
    ``bn_momentum``); under gradient accumulation they would otherwise be updated ``accumulate``
    times per step and forget that much faster (docs/paper.md, "Precision and BatchNorm across
    devices"). None stays None (the model's own)."""
    if momentum is None or accumulate == 1:
        return momentum
    return 1 - (1 - momentum) ** (1 / accumulate)
