"""One registry of profiles: every notebook's parameters, for every way of running it.

A *profile* (``smoke``, ``laptop``, ...) says how big a run is. A notebook's parameters in a profile
are a :class:`NotebookProfile`: one dataclass per notebook below (:class:`TrainingProfile`, ...),
whose defaults are the ``smoke`` profile; every other profile lists what it changes.
:func:`notebook_profile` gives them for a notebook, a profile and field-by-field overrides; a
notebook calls :func:`profile_from_globals` with its ``globals()``, where papermill injected its
parameters. A parameter the notebook does not have, or a value of the wrong type or range, is a
:class:`ParameterError` before anything runs (papermill itself would only log a warning).

Profiles:

=================== ================================================================================
``smoke``           built-in data, tiny models, CPU, seconds per notebook: what CI and nbval run
``laptop``          real photos (Imagenette 160 px, or any class-per-folder tree), small models, a
                    CPU, about 1 h 45 min
``quick``           Imagenette on one GPU, EfficientNetV2-S, a few hours
``full``            ImageNet with the paper's settings, 8 GPUs per node through torchrun
``full_transfer``   notebook 06 only: paper Table 8 (V2-S/M/L on CIFAR-10/100, Flowers, Cars)
``full_imagenet21k`` notebook 06 only: section 5.2 (pretrain on ImageNet-21k, fine-tune on
                    ImageNet-1k)
=================== ================================================================================

``rehearse=True`` shrinks any profile to one or two steps per stage at tiny image sizes (see
``rehearsal``): the same code paths, models and data loaders, in minutes on a CPU.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from dataclasses import dataclass, field

from ..argtypes import (
    FRACTION,
    IMAGE_SIZE,
    MIX_ALPHA,
    NON_NEGATIVE_FLOAT,
    NON_NEGATIVE_INT,
    POSITIVE_FLOAT,
    POSITIVE_INT,
    Rule,
)
from ..paper.progressive import VARIANTS

__all__ = ["PROFILES", "NOTEBOOKS", "NotebookProfile", "notebook_profile", "profile_from_globals",
           "parameter_names", "check_value", "ParameterError", "value_sources"]


class ParameterError(ValueError):
    """A notebook parameter that does not exist or has a wrong type or range; the message names
    it."""


V2_MODELS = ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l", "efficientnetv2_xl",
             "efficientnetv2_b0", "efficientnetv2_b1", "efficientnetv2_b2", "efficientnetv2_b3"]
V1_MODELS = [f"efficientnet_b{i}" for i in range(8)]


@dataclass
class NotebookProfile:
    """One notebook's parameters in a profile. Every one records the profile it came from and
    whether this is a rehearsal; each notebook's subclass adds its own fields."""

    profile: str = "smoke"
    rehearse: bool = False


@dataclass
class DeviceProfile(NotebookProfile):
    device: str = "cpu"  # auto | cpu | cuda | cuda:N | mps


# 01_architecture: Tables 4 and 7 (params, FLOPs), throughput
@dataclass
class ArchitectureProfile(DeviceProfile):
    models: list[str] = field(default_factory=lambda: V2_MODELS + V1_MODELS)
    summary_model: str = "efficientnetv2_s"
    throughput_models: list[str] = field(default_factory=lambda: ["demo_v2_tiny", "demo_v1_tiny"])
    throughput_image_size: int | None = 64  # None: each model's eval size
    throughput_batch_size: int = 8


@dataclass
class DataProfile(DeviceProfile):
    dataset: str = "synthetic"  # synthetic | imagenette | imagenet | imagefolder | ...
    data_root: str | None = None
    download: bool = False
    imagenette_size: str = "320px"  # the Imagenette release: 160px | 320px | full
    train_samples: int | None = 2000  # the built-in set only
    num_classes: int | None = None  # the built-in set only: fewer classes
    # photos: train on this many images per class (a seeded subset)
    images_per_class: int | None = None
    # photos: decode once per size into ~/.cache/effnetv2-mini (effnetv2_mini.data.cache)
    cache: bool = False
    workers: int = 0
    max_steps_per_epoch: int | None = None  # rehearsals: one or two steps


@dataclass
class TrainingProfile(DataProfile):  # 02_training: the recipe, Table 7 accuracy
    model: str = "demo_v2_tiny"
    epochs: int = 6
    batch_size: int = 64
    image_size: int = 48
    eval_size: int = 48
    recipe: str = "simple"  # paper | code | simple
    # None (fixed size), "paper", "code" or a SPEC (see effnetv2 train --help)
    progressive: str | None = None
    # The official RandAugment scale (magnitude / 10 of each op's range). The paper uses 5 to 25; on
    # the built-in set at 48 px, 5 already halves a six-epoch accuracy (notebook 05 measures
    # magnitudes), so smoke trains without. None: the recipe's rule at a fixed size (paper/code on
    # V2-S/M/L: Table 6's last stage), else 0, as the CLI.
    randaug_magnitude: float | None = None
    mixup_alpha: float | None = None
    ema_decay: float | None = 0.0  # None: the recipe's
    nproc: int = 1
    # batches per optimizer step: global batch = batch_size x nproc x accumulate
    accumulate: int = 1
    seed: int = 0


# 03_training_efficiency: Tables 2 and 3, per-stage speed, scaling
@dataclass
class EfficiencyProfile(DataProfile):
    table2_model: str = "demo_v1_tiny"
    table2_sizes: list[int] = field(default_factory=lambda: [64, 96, 128])
    memory_budget_mb: int | None = 200  # None on a GPU: 90% of its free memory
    max_batch_limit: int = 1024
    table3_image_size: int = 64
    table3_batch_size: int = 4
    proxy_epochs: int = 0  # a short training of each Table 3 variant (0: skip)
    proxy_batch_size: int = 64
    proxy_image_size: int = 128
    proxy_eval_size: int = 160
    scaling_image_size: int | None = 64  # None: each model's eval size
    scaling_batch_size: int = 4
    scaling_modes: list[str] = field(default_factory=lambda: ["eval"])
    timing_repeats: int = 3


@dataclass
class NasProfile(DataProfile):  # 04_nas: section 3.3
    space: str = "cpu"  # cpu | b4
    trials: int = 4
    epochs: int = 3
    image_size: int = 32
    batch_size: int = 64
    train_samples: int | None = 800
    # the built-in set's four plain shapes: above chance in a few epochs
    num_classes: int | None = 4
    recipe: str = "simple"
    sampler: str = "random"  # random | tpe
    storage: str | None = None  # Optuna storage URL; None: SQLite in the run directory
    # retrain this many candidates longer, to check the proxy ranking (0: skip)
    retrain_top: int = 0
    retrain_epochs: int = 0
    seed: int = 0


@dataclass
class ProgressiveProfile(DataProfile):  # 05_progressive_learning: Tables 5 and 6, the speed-up
    model: str = "demo_v2_tiny"
    recipe: str = "simple"
    batch_size: int = 64
    train_samples: int | None = 1000
    # the built-in set's four plain shapes (chance 25%): signal in a few epochs
    num_classes: int | None = 4
    grid_sizes: list[int] = field(default_factory=lambda: [32, 48, 64])
    # the paper's range starts at 5
    grid_magnitudes: list[float] = field(default_factory=lambda: [0.0, 5.0, 10.0])
    grid_epochs: int = 3
    grid_seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 8  # every variant of the comparison
    stages: int = 4
    # "paper" (Table 6) or "code" for V2-S/M/L; None: the ranges below
    schedule_source: str | None = None
    min_size: int = 32
    max_size: int = 64
    eval_size: int = 64
    # smoke: dropout and mixup grow, not RandAugment
    randaug_range: list[float] = field(default_factory=lambda: [0.0, 0.0])
    dropout_range: list[float] | None = field(default_factory=lambda: [0.05, 0.2])
    mixup_range: list[float] = field(default_factory=lambda: [0.0, 0.2])
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    random_every: int = 1  # the `random` variant draws a new stage every N epochs (Table 13: 8)
    seeds: list[int] = field(default_factory=lambda: [0])
    nproc: int = 1
    # batches per optimizer step: global batch = batch_size x nproc x accumulate
    accumulate: int = 1


@dataclass
class TransferProfile(DataProfile):  # 06_transfer: Table 8, section 5.2
    models: list[str] = field(default_factory=lambda: ["demo_v2_tiny"])
    transfer_sets: list[str] = field(default_factory=lambda: ["synthetic_b"])
    # "pretrain" (here, on pretrain_dataset), "torchvision", a checkpoint, "imagenet21k"
    init_from: str = "pretrain"
    pretrain_dataset: str = "synthetic"
    # a subset of the pretraining set's classes (None: the built-in six)
    pretrain_classes: list[int] | None = None
    transfer_classes: list[int] | None = None  # a subset of the transfer set's classes
    # images_per_class (DataProfile) applies to the fine-tuning only: few-shot transfer
    pretrain_epochs: int = 8
    finetune_recipe: str = "paper"  # paper | code
    steps: int | None = 60  # fine-tuning steps; None: the recipe's (10,000; on ImageNet 15 epochs)
    # Images per optimizer step over all processes, the fine-tuning's and the pretraining's (None:
    # batch_size x nproc); batch_size is then the most per process and batch, the rest accumulated
    global_batch: int | None = None
    pretrain_global_batch: int | None = None
    batch_size: int = 64
    lr: float | None = 0.02
    image_size: int | None = 48
    train_samples: int | None = 800
    nproc: int = 1


# 07_faster_training: Figure 1a, Tables 7 and 10-12, Table 11's speed
@dataclass
class FasterProfile(DataProfile):
    """The networks to compare, each trained at a fixed size and with Algorithm 1 (same data,
    epochs, recipe and schedule shape); ``v2_model`` / ``v1_model``: the pair behind the headline
    (None: the first V2-style and the first V1-style of ``models``)."""

    models: list[str] = field(default_factory=lambda: ["demo_v2_tiny", "demo_v1_tiny"])
    v2_model: str | None = None
    v1_model: str | None = None
    recipe: str = "simple"  # paper | code | simple | short
    batch_size: int = 64
    train_samples: int | None = 800
    # the built-in set's four plain shapes (chance 25%): signal in a few epochs
    num_classes: int | None = 4
    epochs: int = 6
    stages: int = 3
    # "paper" (Table 6) or "code" for V2-S/M/L; None: the ranges below
    schedule_source: str | None = None
    min_size: int = 32
    max_size: int = 64
    eval_size: int = 64
    randaug_range: list[float] = field(default_factory=lambda: [0.0, 0.0])
    dropout_range: list[float] | None = field(default_factory=lambda: [0.05, 0.2])
    mixup_range: list[float] = field(default_factory=lambda: [0.0, 0.0])
    # model -> its own schedule: any of min_size, max_size, eval_size, randaug_range, dropout_range,
    # mixup_range, schedule_source (the rest as above); the paper trains each network of Tables 10
    # and 12 at its own sizes
    per_model: dict = field(default_factory=dict)
    # The fixed-size baselines at their best: each network's regularization [RandAugment
    # magnitude, dropout, mixup alpha] chosen among these points at its fixed size, grid_epochs
    # each, on holdout_per_class photos per class held out of the training split (never the
    # validation photos); Algorithm 1's last stage takes the chosen values. Empty: the ranges'
    # last values as given (a preset schedule keeps its own).
    baseline_grid: list[list[float]] = field(
        default_factory=lambda: [[0.0, 0.05, 0.0], [0.0, 0.2, 0.0]])
    grid_epochs: int = 2
    holdout_per_class: int | None = 20
    grid_images_per_class: int | None = None  # photos: the grid's photos per class (None: all)
    seeds: list[int] = field(default_factory=lambda: [0])  # larger profiles: two, a measured spread
    nproc: int = 1
    # batches per optimizer step: global batch = batch_size x nproc x accumulate
    accumulate: int = 1
    # also time V2-B0..B3 against V1-B0..B3 (training and inference images/s)
    table11: bool = True
    scaling_image_size: int | None = 64  # Table 11's timing size (None: each model's eval size)
    scaling_batch_size: int = 4
    timing_repeats: int = 3


@dataclass
class ReportProfile(NotebookProfile):  # 08_report
    plan: str | None = None  # the plan whose run this is; None: guessed from the directory name


NOTEBOOKS: dict[str, type] = {
    "01_architecture": ArchitectureProfile, "02_training": TrainingProfile,
    "03_training_efficiency": EfficiencyProfile, "04_nas": NasProfile,
    "05_progressive_learning": ProgressiveProfile, "06_transfer": TransferProfile,
    "07_faster_training": FasterProfile, "08_report": ReportProfile,
}

_GPU = {"device": "auto", "workers": 8}
_IMAGENETTE = {"dataset": "imagenette", "data_root": "data", "download": True,
               "train_samples": None}
_IMAGENET = {"dataset": "imagenet", "data_root": "data", "download": False, "train_samples": None}
# Notebook 07's full plan: each network at its own sizes. V2-M: Table 6 (128 -> 380 px, RandAugment
# 5 -> 20, mixup 0 -> 0.2, dropout 0.1 -> 0.4), evaluated at 480 (official effnetv2_configs.py:195).
# EfficientNet-B7: evaluated at its own 600 px, trained up to 480 (official effnetv2_configs.py:113
# and :133, train isize 0.8 of eval), with V2-M's Table 6 regularization (the "same progressive
# learning", section 6.1; the paper prints no B7 schedule). ResNet-50: torchvision's 224 px (Table
# 12's ResNet50 (224) row), up to 224, with V2-S's Table 6 regularization (its size: 25M parameters
# against V2-S's 22M). The last two are ours, labelled in docs/paper.md.
_FULL_07 = {
    "efficientnetv2_m": {"schedule_source": "paper", "eval_size": 480},
    "efficientnet_b7": {"min_size": 128, "max_size": 480, "eval_size": 600,
                        "randaug_range": [5.0, 20.0], "dropout_range": [0.1, 0.4],
                        "mixup_range": [0.0, 0.2]},
    "resnet50": {"min_size": 128, "max_size": 224, "eval_size": 224, "randaug_range": [5.0, 15.0],
                 "dropout_range": [0.1, 0.3], "mixup_range": [0.0, 0.0]},
}
_LAPTOP = {"device": "auto", "dataset": "imagenette", "imagenette_size": "160px",
           "data_root": "data", "download": True, "train_samples": None, "cache": True,
           "workers": 2}

# What each profile changes from the defaults (the smoke profile), notebook by notebook.
PROFILES: dict[str, dict[str, dict]] = {
    "smoke": {name: {} for name in NOTEBOOKS},
    "laptop": {
        "01_architecture": {"device": "auto",
                            "throughput_models": ["demo_v2_tiny", "demo_v1_tiny",
                                                  "efficientnetv2_b0", "efficientnet_b0"],
                            "throughput_image_size": 128},
        # Algorithm 1 on every training photo: sizes 56 -> 112 with RandAugment and dropout growing
        # (Table 6's shape)
        "02_training": {**_LAPTOP, "model": "demo_v2_tiny", "epochs": 8, "image_size": 112,
                        "eval_size": 112, "recipe": "simple",
                        "progressive": "stages=4 size=56:112 randaug=2:8 dropout=0.05:0.2",
                        "randaug_magnitude": 8.0, "ema_decay": 0.999},
        "03_training_efficiency": {"device": "auto", "table2_model": "efficientnet_b0",
                                   "table2_sizes": [128, 192, 256], "memory_budget_mb": 1024,
                                   "table3_image_size": 128, "table3_batch_size": 8,
                                   "scaling_image_size": 128, "scaling_batch_size": 8,
                                   "scaling_modes": ["train"]},
        "04_nas": {**_LAPTOP, "trials": 8, "epochs": 2, "image_size": 64, "images_per_class": 300,
                   "retrain_top": 4, "retrain_epochs": 5},
        # Table 5: weak (0) and strong (10) RandAugment at three sizes, two seeds; the comparison:
        # 48 -> 96 px (0.5x, as the paper's schedules start at 0.4-0.5x), two seeds.
        # bench/bench_progressive.py runs the longer comparison on every training photo
        # (docs/benchmarks.md).
        "05_progressive_learning": {**_LAPTOP, "images_per_class": 200, "grid_sizes": [64, 96, 128],
                                    "grid_magnitudes": [0.0, 10.0], "grid_epochs": 3,
                                    "grid_seeds": [0, 1], "epochs": 8, "min_size": 48,
                                    "max_size": 96, "eval_size": 96, "randaug_range": [2.0, 8.0],
                                    "dropout_range": [0.05, 0.2], "mixup_range": [0.0, 0.0],
                                    "seeds": [0, 1]},
        "06_transfer": {**_LAPTOP, "transfer_sets": ["imagenette"],
                        "pretrain_dataset": "imagenette", "pretrain_classes": [0, 1, 2, 3, 4],
                        "transfer_classes": [5, 6, 7, 8, 9], "images_per_class": 20,
                        "pretrain_epochs": 6, "steps": 60, "batch_size": 25, "lr": None,
                        "image_size": 96},
        # Figure 1a and Table 12 at laptop scale: V2-B0 against EfficientNet-B0 on every training
        # photo, each fixed at 128 px and with Algorithm 1 from 56 px (the sizes whose cost
        # follows their pixels on a CPU), two seeds. Each baseline's regularization: the best of
        # three points, 3 epochs on 100 photos per class, scored on 50 per class held out of the
        # training split. One seed's four trainings took 58 minutes in the plan on a 2-core CPU
        # (docs/benchmarks.md), before the faster loop
        "07_faster_training": {**_LAPTOP, "models": ["efficientnetv2_b0", "efficientnet_b0"],
                               "recipe": "short", "workers": 0, "epochs": 5, "stages": 4,
                               "min_size": 56, "max_size": 128, "eval_size": 128,
                               "randaug_range": [0.0, 10.0], "dropout_range": [0.05, 0.2],
                               "seeds": [0, 1],
                               "baseline_grid": [[0.0, 0.05, 0.0], [5.0, 0.1, 0.0],
                                                 [10.0, 0.2, 0.0]],
                               "grid_epochs": 3, "holdout_per_class": 50,
                               "grid_images_per_class": 100,
                               "scaling_image_size": 128, "scaling_batch_size": 8},
        "08_report": {},
    },
    "quick": {
        "01_architecture": {"device": "auto",
                            "throughput_models": ["efficientnetv2_s", "efficientnetv2_m",
                                                  "efficientnet_b3", "efficientnet_b4"],
                            "throughput_image_size": None, "throughput_batch_size": 32},
        "02_training": {**_GPU, **_IMAGENETTE, "model": "efficientnetv2_s", "epochs": 60,
                        "image_size": 192, "eval_size": 256, "recipe": "paper",
                        "randaug_magnitude": 10.0, "ema_decay": 0.998},
        "03_training_efficiency": {**_GPU, **_IMAGENETTE, "table2_model": "efficientnet_b6",
                                   "table2_sizes": [380, 512], "memory_budget_mb": None,
                                   "table3_image_size": 380, "table3_batch_size": 32,
                                   "proxy_epochs": 10, "scaling_image_size": None,
                                   "scaling_batch_size": 32, "scaling_modes": ["train", "eval"]},
        "04_nas": {**_GPU, **_IMAGENETTE, "space": "b4", "trials": 40, "epochs": 10,
                   "image_size": 128, "batch_size": 128},
        "05_progressive_learning": {**_GPU, **_IMAGENETTE, "model": "efficientnetv2_s",
                                    "recipe": "paper", "grid_sizes": [128, 192, 256],
                                    "grid_magnitudes": [5.0, 10.0, 15.0], "grid_epochs": 15,
                                    "epochs": 40, "min_size": 128, "max_size": 256,
                                    "eval_size": 256, "randaug_range": [5.0, 15.0],
                                    "dropout_range": [0.1, 0.3], "mixup_range": [0.0, 0.0]},
        "06_transfer": {**_GPU, "data_root": "data", "models": ["efficientnetv2_s"],
                        "transfer_sets": ["cifar10"], "init_from": "torchvision", "steps": 2000,
                        "batch_size": 128, "lr": None, "image_size": 224, "pretrain_epochs": 0,
                        "train_samples": None},
        # Tables 7 and 10 at one-GPU scale: V2-S against EfficientNet-B4 (the paper's pair of
        # similar accuracy); Table 12's network that is not an EfficientNet: torchvision's
        # ResNet-50, fixed and with the same progressive learning
        "07_faster_training": {**_GPU, **_IMAGENETTE,
                               "models": ["efficientnetv2_s", "efficientnet_b4", "resnet50"],
                               "recipe": "paper",
                               "epochs": 40, "stages": 4, "min_size": 128, "max_size": 256,
                               "eval_size": 256,
                               "randaug_range": [5.0, 15.0], "dropout_range": [0.1, 0.3],
                               "mixup_range": [0.0, 0.0], "seeds": [0, 1],
                               "baseline_grid": [[5.0, 0.1, 0.0], [10.0, 0.2, 0.0],
                                                 [15.0, 0.3, 0.0]],
                               "grid_epochs": 10, "holdout_per_class": 50,
                               "grid_images_per_class": 200,
                               "scaling_image_size": None, "scaling_batch_size": 32,
                               "timing_repeats": 10},
        "08_report": {},
    },
    "full": {
        "01_architecture": {"device": "auto", "throughput_models": V2_MODELS + V1_MODELS,
                            "throughput_image_size": None, "throughput_batch_size": 32},
        # global batch 64 x 8 x 8 = 4096, the paper's
        "02_training": {**_GPU, **_IMAGENET, "model": "efficientnetv2_s", "epochs": 350,
                        "image_size": 300, "eval_size": 384, "recipe": "paper",
                        "progressive": "paper", "randaug_magnitude": 15.0, "ema_decay": None,
                        "nproc": 8, "accumulate": 8},
        "03_training_efficiency": {**_GPU, **_IMAGENET, "table2_model": "efficientnet_b6",
                                   "table2_sizes": [380, 512], "memory_budget_mb": None,
                                   "table3_image_size": 380, "table3_batch_size": 32,
                                   "proxy_epochs": 30, "scaling_image_size": None,
                                   "scaling_batch_size": 32, "scaling_modes": ["train", "eval"]},
        "04_nas": {**_GPU, **_IMAGENET, "space": "b4", "trials": 1000, "epochs": 10,
                   "image_size": 128, "batch_size": 256},
        "05_progressive_learning": {**_GPU, **_IMAGENET, "model": "efficientnetv2_s",
                                    "recipe": "paper", "grid_sizes": [128, 192, 300],
                                    "grid_magnitudes": [5.0, 10.0, 15.0], "grid_epochs": 350,
                                    "epochs": 350, "schedule_source": "paper", "eval_size": 384,
                                    "random_every": 8, "nproc": 8, "accumulate": 8},
        # Table 10: EfficientNetV2-M and EfficientNet-B7 trained with the same progressive
        # learning, and each fixed; Table 12: ResNet-50 (torchvision's) fixed and progressive.
        # Each at its sizes (_FULL_07)
        "07_faster_training": {**_GPU, **_IMAGENET,
                               "models": ["efficientnetv2_m", "efficientnet_b7", "resnet50"],
                               "recipe": "paper", "epochs": 350, "stages": 4, "per_model": _FULL_07,
                               "min_size": 128, "max_size": 380, "eval_size": 480,
                               "randaug_range": [5.0, 20.0], "dropout_range": [0.1, 0.4],
                               "mixup_range": [0.0, 0.2],
                               "nproc": 8, "accumulate": 8, "scaling_image_size": None,
                               "scaling_batch_size": 32, "timing_repeats": 10, "seeds": [0, 1],
                               # V2-M keeps Table 6's end points (the paper's own choice); B7
                               # and ResNet-50 choose theirs on 25 photos per class held out of
                               # ImageNet's training split
                               "baseline_grid": [[5.0, 0.1, 0.0], [12.5, 0.25, 0.1],
                                                 [20.0, 0.4, 0.2]],
                               "grid_epochs": 30, "holdout_per_class": 25},
        "08_report": {},
    },
    # Table 8 and section 5.2 as the official code: a global batch of 512 (64 per GPU x 8), the
    # recipe's steps (10,000; on ImageNet 15 epochs); ImageNet-21k pretraining at 4096 (64 x 8 GPUs
    # x 8 accumulated)
    "full_transfer": {
        "06_transfer": {**_GPU, "data_root": "data",
                        "models": ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l"],
                        "transfer_sets": ["cifar10", "cifar100", "flowers102", "stanford_cars"],
                        "init_from": "torchvision", "steps": None, "global_batch": 512,
                        "batch_size": 64, "lr": None, "image_size": None, "pretrain_epochs": 0,
                        "train_samples": None, "nproc": 8},
        "08_report": {},
    },
    "full_imagenet21k": {
        "06_transfer": {**_GPU, "data_root": "data",
                        "models": ["efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l",
                                   "efficientnetv2_xl"],
                        "transfer_sets": ["imagenet"], "init_from": "imagenet21k", "steps": None,
                        "global_batch": 512, "pretrain_global_batch": 4096, "batch_size": 64,
                        "lr": None, "image_size": None, "pretrain_epochs": 0,
                        "train_samples": None, "nproc": 8},
        "08_report": {},
    },
}


def parameter_names(notebook: str) -> list[str]:
    """Every papermill parameter of ``notebook``: ``output_dir`` and its profile's fields (profile,
    rehearse, ...)."""
    return ["output_dir", *(f.name for f in dataclasses.fields(_profile_class(notebook)))]


def notebook_profile(notebook: str, profile: str | None = None, rehearse: bool = False,
                     **overrides):
    """The parameters of ``notebook`` in ``profile`` (None: ``$EFFNETV2_PROFILE`` or ``smoke``),
    with ``overrides`` (None values are ignored), checked: unknown names, wrong types and impossible
    values are errors."""
    cls = _profile_class(notebook)
    profile = profile or os.environ.get("EFFNETV2_PROFILE") or "smoke"
    if profile not in PROFILES:
        raise ParameterError(f"unknown profile {profile!r}; profiles: {', '.join(PROFILES)}")
    if notebook not in PROFILES[profile]:
        usable = [p for p, notebooks in PROFILES.items() if notebook in notebooks]
        raise ParameterError(f"profile {profile!r} has no parameters for {notebook}; "
                             f"use one of {', '.join(usable)}")
    hints = typing.get_type_hints(cls)
    for name, value in overrides.items():
        if name not in hints or name in ("profile", "rehearse"):
            close = difflib.get_close_matches(name, hints, n=1)
            raise ParameterError(f"{notebook} has no parameter {name!r}"
                                 + (f"; did you mean {close[0]!r}?" if close else "")
                                 + f" Its parameters: {', '.join(parameter_names(notebook))}")
        if value is not None:
            check_value(f"{notebook} parameter {name!r}", value, hints[name])
    values = {**PROFILES[profile][notebook],
              **{k: v for k, v in overrides.items() if v is not None}}
    result = cls(**values, profile=profile, rehearse=False)
    _check_ranges(notebook, result)
    return rehearsal(result) if rehearse else result


def profile_from_globals(notebook: str, namespace: dict):
    """:func:`notebook_profile` from a notebook's globals, after papermill injected its parameters.
    The names papermill injected (its cell starts with ``# Parameters``, IPython keeps the source in
    ``In``) must all be parameters of the notebook: ``papermill -p epoch 2`` is an error here, not a
    warning lost in a log. The resolved values are shown as a table (:mod:`.showprofile`): the
    notebook's first output says what it ran with."""
    known = parameter_names(notebook)
    unknown = sorted(_injected_names(namespace.get("In", [])) - set(known))
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        raise ParameterError(f"{notebook} has no parameter {unknown[0]!r}"
                             + (f"; did you mean {close[0]!r}?" if close else "")
                             + f" Its parameters: {', '.join(known)}")
    values = {name: namespace[name] for name in known if name in namespace and name != "output_dir"}
    profile, rehearse = values.pop("profile", None), values.pop("rehearse", False)
    check_value(f"{notebook} parameter 'rehearse'", rehearse, bool)
    result = notebook_profile(notebook, profile, rehearse, **values)
    from .showprofile import show_profile

    show_profile(notebook, result, value_sources(notebook, result, values))
    return result


def value_sources(notebook: str, result, overrides: dict) -> dict[str, str]:
    """Where each value of ``result`` (from :func:`notebook_profile` with ``overrides``) came from:
    the run's own parameters, its profile, the defaults (the smoke profile's) or the rehearsal's
    shrinking."""
    listed = PROFILES[result.profile][notebook]
    plain = result
    if result.rehearse:
        plain = notebook_profile(notebook, result.profile, False, **overrides)
    sources = {}
    for name in (f.name for f in dataclasses.fields(result)):
        if getattr(result, name) != getattr(plain, name):
            sources[name] = "rehearsal"
        elif overrides.get(name) is not None:
            sources[name] = "this run's parameters"
        elif name in listed:
            sources[name] = f"profile {result.profile}"
        else:
            sources[name] = "default (smoke)"
    return sources


def _injected_names(history: list[str]) -> set[str]:
    """Names assigned in the cells papermill injected (their source starts with
    ``# Parameters``)."""
    import ast

    names = set()
    for source in history:
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            for node in ast.parse(source).body:
                if isinstance(node, ast.Assign):
                    names |= {target.id for target in node.targets if isinstance(target, ast.Name)}
    return names


def _profile_class(notebook: str) -> type:
    if notebook not in NOTEBOOKS:
        raise ParameterError(f"unknown notebook {notebook!r}; notebooks: {', '.join(NOTEBOOKS)}")
    return NOTEBOOKS[notebook]


def check_value(what: str, value, annotation) -> None:
    """Raise :class:`ParameterError` unless ``value`` fits ``annotation`` (int, float, str, bool,
    list[...], X | None)."""
    if not _fits(value, annotation):
        shown = getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")
        raise ParameterError(f"{what} must be {shown}, got {value!r} ({type(value).__name__})")


def _fits(value, annotation) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, (list, tuple)) and all(_fits(v, item) for v in value)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, annotation)


# Range checks: (fields, rule): the command line's rules (effnetv2_mini.argtypes) wherever a
# parameter is a TrainConfig option too, so that a plan file or `papermill -p` gets what `effnetv2
# train` gets. None is always accepted here (the field's type says whether it may be None).
_SIZES = ("image_size", "eval_size", "min_size", "max_size", "table3_image_size",
          "proxy_image_size", "proxy_eval_size", "throughput_image_size", "scaling_image_size")
_COUNTS = ("epochs", "grid_epochs", "batch_size", "trials", "stages", "steps", "table3_batch_size",
           "scaling_batch_size", "throughput_batch_size", "nproc", "proxy_batch_size",
           "max_batch_limit", "timing_repeats", "accumulate", "train_samples",
           "max_steps_per_epoch", "images_per_class", "memory_budget_mb", "global_batch",
           "pretrain_global_batch", "random_every", "holdout_per_class", "grid_images_per_class")
_RANGES = [
    (_COUNTS, POSITIVE_INT),
    (("num_classes",), Rule(lambda v: v >= 2, "a whole number >= 2", whole=True)),
    (_SIZES, IMAGE_SIZE),
    (("workers", "proxy_epochs", "retrain_top", "retrain_epochs", "pretrain_epochs"),
     NON_NEGATIVE_INT),
    (("randaug_magnitude",), NON_NEGATIVE_FLOAT),
    (("mixup_alpha",), MIX_ALPHA),
    (("ema_decay",), FRACTION),
    (("lr",), POSITIVE_FLOAT),
]
_LIST_RANGES = [  # (fields, rule of each item)
    (("table2_sizes", "grid_sizes"), IMAGE_SIZE),
    (("grid_magnitudes", "randaug_range"), NON_NEGATIVE_FLOAT),
    (("mixup_range",), MIX_ALPHA),
    (("dropout_range",), FRACTION),
]
_LIST_SHAPES = [
    (("randaug_range", "dropout_range", "mixup_range"), lambda v: len(v) == 2, "[first, last]"),
    (("seeds", "grid_seeds", "models", "transfer_sets", "variants", "table2_sizes", "grid_sizes"),
     lambda v: len(v) > 0, "a non-empty list"),
    (("seeds", "grid_seeds", "models"), lambda v: len(set(v)) == len(v), "a list without repeats"),
]


PER_MODEL_FIELDS = ("min_size", "max_size", "eval_size", "randaug_range", "dropout_range",
                    "mixup_range", "schedule_source")


def _check_ranges(notebook: str, values) -> None:
    for model, own in getattr(values, "per_model", {}).items():  # as the fields it replaces
        unknown = set(own) - set(PER_MODEL_FIELDS) if isinstance(own, dict) else None
        if model not in values.models or unknown is None or unknown:
            raise ParameterError(f"{notebook} parameter 'per_model' maps each of the models to "
                                 f"some of {', '.join(PER_MODEL_FIELDS)}; got {model!r}: {own!r}")
        _check_ranges(notebook, dataclasses.replace(values, per_model={}, **own))

    def fail(name, meaning, value):
        raise ParameterError(f"{notebook} parameter {name!r} must be {meaning}, got {value!r}")

    for names, rule in _RANGES:
        for name in names:
            value = getattr(values, name, None)
            if value is not None and not rule.holds(value):
                fail(name, rule.meaning, value)
    for names, test, meaning in _LIST_SHAPES:
        for name in names:
            value = getattr(values, name, None)
            if value is not None and not test(value):
                fail(name, meaning, value)
    for point in getattr(values, "baseline_grid", None) or []:  # [RandAugment, dropout, mixup]
        if len(point) != 3 or not (NON_NEGATIVE_FLOAT.holds(point[0]) and FRACTION.holds(point[1])
                                   and MIX_ALPHA.holds(point[2])):
            fail("baseline_grid", "a list of [RandAugment magnitude >= 0, dropout in [0, 1), "
                 "mixup alpha >= 0] points", values.baseline_grid)
    if getattr(values, "baseline_grid", None) and not getattr(values, "holdout_per_class", None):
        fail("holdout_per_class", "a whole number >= 1 when baseline_grid has points", None)
    for names, rule in _LIST_RANGES:
        for name in names:
            value = getattr(values, name, None)
            if value is not None and not all(rule.holds(item) for item in value):
                fail(name, f"a list of numbers each {rule.meaning}", value)


# A rehearsal divides the global batches a plan states by this (512 -> 8, 4096 -> 64) and gives a
# transfer set it cannot read a stand-in as many global batches long as the real set (at most
# train_samples images): Flowers102's 2,040 images at 512 become 32 at 8 (experiments.transfer)
REHEARSAL_BATCH_SCALE = 64


def rehearsal(values):
    """The same parameters shrunk for a rehearsal: one or two steps per stage, tiny images, small
    grids; the same models, data sets, recipes, schedules and process counts (torchrun where the
    profile uses it, at most 2 processes on a CPU). Table 2 keeps 64 px and more: a batch of one
    image needs BatchNorm inputs larger than the 1 x 1 feature map 32 px leaves at
    EfficientNet-B6's end."""
    tiny = {"max_steps_per_epoch": 2, "workers": min(getattr(values, "workers", 0), 1),
            "train_samples": 64, "epochs": 1, "image_size": 32, "eval_size": 32, "batch_size": 4,
            "grid_epochs": 1, "grid_sizes": [32, 48],
            "grid_seeds": [0], "seeds": [0], "min_size": 32, "max_size": 48,
            "table2_sizes": [64, 96], "memory_budget_mb": 512, "max_batch_limit": 4,
            "table3_image_size": 32, "table3_batch_size": 2,
            "proxy_epochs": min(getattr(values, "proxy_epochs", 0), 1), "proxy_image_size": 32,
            "proxy_batch_size": 4,
            "proxy_eval_size": 32, "scaling_image_size": 32, "scaling_batch_size": 2,
            "timing_repeats": 1,
            "throughput_image_size": 32, "throughput_batch_size": 2, "trials": 2,
            "retrain_top": min(getattr(values, "retrain_top", 0), 2),
            "retrain_epochs": min(getattr(values, "retrain_epochs", 0), 1),
            "pretrain_epochs": min(getattr(values, "pretrain_epochs", 0), 1), "steps": 2,
            "images_per_class": 2 if getattr(values, "images_per_class", None) else None,
            "nproc": min(getattr(values, "nproc", 1), 2), "rehearse": True}
    changes = {k: v for k, v in tiny.items() if hasattr(values, k)}
    # two stages of one epoch; a grid of one size and two magnitudes
    if isinstance(values, ProgressiveProfile):
        changes.update(stages=2, epochs=2, eval_size=48, grid_sizes=[32],
                       grid_magnitudes=values.grid_magnitudes[:2])
        if values.schedule_source is not None:
            # the presets' sizes (128-300 px) shrink to min_size..max_size
            changes.update(schedule_source=None)
    # two stages of one epoch, both networks; the baselines' grid: one point (its path: trained on
    # the held-out split and scored; choosing among points is tested in tests/test_faster.py)
    if isinstance(values, FasterProfile):
        small = {"min_size": 32, "max_size": 48, "eval_size": 48, "schedule_source": None}
        changes.update(stages=2, epochs=2, eval_size=48, schedule_source=None, grid_epochs=1,
                       baseline_grid=values.baseline_grid[:1], grid_images_per_class=None,
                       holdout_per_class=min(values.holdout_per_class or 2, 2),
                       per_model={m: {**v, **small} for m, v in values.per_model.items()})
    # timing two models exercises the path; all are still counted
    if isinstance(values, ArchitectureProfile):
        changes.update(throughput_models=values.throughput_models[:2])
    if isinstance(values, TransferProfile):  # one model, every transfer set, smaller global batches
        batches = ("global_batch", "pretrain_global_batch")
        changes.update(models=values.models[:1], **{
            k: getattr(values, k) // REHEARSAL_BATCH_SCALE for k in batches if getattr(values, k)})
    # the presets' sizes are 128-300 px
    if isinstance(values, TrainingProfile) and values.progressive is not None:
        changes.update(progressive="stages=4 size=24:32 randaug=5:15 dropout=0.1:0.3", epochs=4)
    return dataclasses.replace(values, **changes)
