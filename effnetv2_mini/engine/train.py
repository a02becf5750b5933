"""One training loop for every experiment (paper section 5.1 recipe; docs/paper.md#training-recipe-section-51).

    from effnetv2_mini.engine.train import TrainConfig, fit
    summary = fit(TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=3, recipe="simple",
                              out_dir="runs/demo"))
    fit(config, schedule)      # progressive learning: a ProgressiveSchedule from effnetv2_mini.paper.progressive

Recipes (every value can be overridden field by field):

- ``paper``: RMSProp (decay 0.9, momentum 0.9, TF-style epsilon 1e-3 inside the square root), lr 0.016 per 256
  images, 5 warm-up epochs then x0.97 every 2.4 epochs, label smoothing 0.1, weight decay 1e-5 off BN and
  biases, EMA 0.9999, stochastic depth 0.2, BN momentum 0.01 (the paper's 0.99).
- ``simple``: AdamW, lr 0.016 per 256, 1 warm-up epoch then cosine, weight decay 0.05 off BN and biases,
  label smoothing 0.1, no EMA, BN momentum 0.1: for short CPU runs and small experiments.

The loop is in pieces a reader takes in one at a time: :func:`fit` opens the run (:func:`open_run`: run directory,
settings check, resume), then for each epoch :func:`train_one_epoch` and :func:`end_epoch` (evaluation, metrics,
checkpoints); :func:`evaluate` scores a model; :func:`launch` starts the same training under torchrun.

A run owns a directory: ``config.json`` (every resolved setting, library version, device), ``metrics.jsonl``
(one line per epoch), ``last.pt`` (written atomically every epoch and on Ctrl-C) and ``best.pt``. Rerunning
a directory resumes where it stopped (mid-epoch too); a finished run is a no-op. Each training sample's
augmentation is seeded by (seed, epoch, index), so a resumed run matches an uninterrupted one exactly on CPU.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .. import __version__
from ..data.datasets import is_built_in
from ..data.devicedecode import EncodedBatch
from ..data.loaders import Loaders
from ..paper.configs import get_config
from ..paper.model import build_model
from ..paper.optim import build_optimizer, lr_factor, make_ema
from ..paper.progressive import EpochPlan, ProgressiveSchedule, apply_stage, constant_schedule
from ..paper.recipe import RECIPES
from .checkpoint import atomic_link, atomic_save, atomic_write_text, load_checkpoint, non_finite_tensors, rng_state, set_rng_state
from .devices import autocast, device_name, peak_memory_mb
from .distributed import DistInfo, Rendezvous, all_reduce, barrier, read_spec, setup, torchrun

__all__ = ["TrainConfig", "RECIPES", "fit", "launch", "evaluate", "TrainingDiverged", "load_checkpoint",
           "reported_top1", "read_summary", "config_from_dict"]

# Settings that define a run: resuming a directory with different values is refused.
IDENTITY_FIELDS = (
    "model", "model_overrides", "init_from", "freeze_backbone", "dataset", "epochs", "batch_size", "image_size",
    "eval_size", "recipe", "optimizer", "lr", "base_lr", "warmup_epochs", "schedule", "weight_decay", "label_smoothing",
    "ema_decay", "seed", "num_classes", "randaug_magnitude", "mixup_alpha", "cutmix_alpha", "dropout", "drop_path_rate",
    "classes", "images_per_class", "bn_momentum", "preprocessing", "normalize", "randaug_reference", "cutmix_with_mixup",
    "ema_reference_batch", "cache", "decode_on_device",
)


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: take it from the recipe (or the model / data set)."""

    model: str = "demo_v2_tiny"
    model_overrides: dict = field(default_factory=dict)  # passed to build_model, e.g. {"fused_stages": 3}
    init_from: str | None = None  # fine-tuning: our checkpoint path, "torchvision" (its ImageNet weights), a state dict file
    freeze_backbone: bool = False  # train the classifier only (BatchNorm statistics still adapt)
    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    out_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    image_size: int | None = None  # training size; None: 64 for synthetic, else the model's train size
    eval_size: int | None = None
    recipe: str = "paper"
    optimizer: str | None = None  # rmsprop | adamw | sgd
    lr: float | None = None  # None: base_lr * batch_size * world_size / 256
    base_lr: float | None = None  # learning rate per 256 images (None: the recipe's, 0.016)
    warmup_epochs: float | None = None
    schedule: str | None = None  # exponential | cosine | constant
    decay_rate: float | None = None
    decay_epochs: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema_decay: float | None = None  # 0 turns EMA off
    ema_reference_batch: int | None = None  # the decay is per step at this global batch; None: per step as given
    drop_path_rate: float | None = None
    dropout: float | None = None  # None: the model's
    bn_momentum: float | None = None
    sync_bn: bool | None = None  # pool BatchNorm statistics over GPUs under DDP
    preprocessing: str | None = None  # official | torchvision | finetune (effnetv2_mini.data.transforms)
    normalize: str | None = None  # official | imagenet | finetune; None: the preprocessing's own
    randaug_magnitude: float = 0.0
    randaug_reference: int | None = None  # None: official absolute pixels in RandAugment; N: scaled as for N px
    crop_scale: tuple[float, float] | None = None  # training crop area range; None: the preprocessing's, synthetic (0.35, 1)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    cutmix_with_mixup: bool | None = None  # CutMix on half of each batch at the mixup alpha (the official code)
    init_from_ema: bool = True  # fine-tuning from our checkpoint starts from its EMA weights (the official ft_init_ema)
    num_classes: int | None = None  # None: from the data set
    classes: list[int] | None = None  # train and evaluate on these classes of the data set only (relabelled 0..k-1)
    images_per_class: int | None = None  # train on this many images per class (few-shot fine-tuning)
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    workers: int = 2
    seed: int = 0
    skip_corrupt: bool = False
    cache: bool | str | None = None  # folder data sets: decoded images pre-resized per stage size (effnetv2_mini.data.cache)
    # folder data sets: workers read JPEG bytes, the training device decodes (nvjpeg on CUDA) and augments them, same
    # seeds and draws as the CPU path (effnetv2_mini.data.devicedecode); preprocessing official or finetune; eval stays on CPU
    decode_on_device: bool = False
    max_steps_per_epoch: int | None = None
    eval_every: int = 1  # evaluate every N epochs (and always after the last)
    synthetic: dict = field(default_factory=dict)  # options of the synthetic set (num_samples, difficulty, ...)
    imagenette_size: str = "320px"
    quiet: bool = False
    resume_with_changes: bool = False  # continue a run directory with changed hyper-parameters (e.g. a lower lr)

    def resolved(self) -> TrainConfig:
        """A copy with every recipe value filled in (the lr still needs the world size, see :func:`fit`)."""
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; recipes: {', '.join(RECIPES)}")
        recipe = RECIPES[self.recipe]
        values = {k: (recipe[k] if getattr(self, k) is None else getattr(self, k)) for k in recipe if hasattr(self, k)}
        config = dataclasses.replace(self, **values)
        if config.preprocessing not in ("official", "torchvision", "finetune"):
            raise ValueError(f"unknown preprocessing {config.preprocessing!r}; choose official, torchvision or finetune")
        if config.optimizer not in ("rmsprop", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {config.optimizer!r}; choose rmsprop, adamw or sgd")
        if config.schedule not in ("exponential", "cosine", "constant"):
            raise ValueError(f"unknown schedule {config.schedule!r}; choose exponential, cosine or constant")
        if config.image_size is None:
            config.image_size = 64 if is_built_in(config.dataset) else get_config(config.model).train_size
        if config.eval_size is None:
            config.eval_size = config.image_size if is_built_in(config.dataset) else get_config(config.model).eval_size
        _validate(config)
        return config


# (fields, test, what they must be): checked on every resolved config, so that library callers get the CLI's errors
_RULES = [
    (("epochs", "batch_size", "image_size", "eval_size", "eval_every"), lambda v: v >= 1, "a whole number >= 1"),
    (("max_steps_per_epoch", "num_classes", "images_per_class", "ema_reference_batch", "randaug_reference"),
     lambda v: v is None or v >= 1, "None or >= 1"),
    (("workers",), lambda v: v >= 0, ">= 0"),
    (("lr", "base_lr"), lambda v: v is None or v > 0, "None or > 0"),
    (("warmup_epochs", "weight_decay", "randaug_magnitude", "mixup_alpha", "cutmix_alpha", "decay_epochs"),
     lambda v: v is None or v >= 0, ">= 0"),
    (("ema_decay", "label_smoothing", "drop_path_rate", "bn_momentum"), lambda v: v is None or 0 <= v < 1, "in [0, 1)"),
    (("dropout",), lambda v: v is None or 0 <= v < 1, "None or in [0, 1)"),
    (("decay_rate",), lambda v: v is None or 0 < v <= 1, "in (0, 1]"),
    (("crop_scale",), lambda v: v is None or 0 < v[0] <= v[1] <= 1, "None or (low, high) with 0 < low <= high <= 1"),
]


def _validate(config: TrainConfig) -> None:
    for names, test, meaning in _RULES:
        for name in names:
            value = getattr(config, name)
            ok = False
            try:
                ok = bool(test(value))
            except TypeError:
                pass
            if not ok or isinstance(value, bool):
                raise ValueError(f"{name} must be {meaning}, got {value!r} (CLI: --{name.replace('_', '-')})")


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the message says which checkpoint is kept."""


def reported_top1(row: dict) -> float | None:
    """The accuracy an epoch reports: the EMA weights' when the run keeps an EMA, else the raw weights' (None for
    an epoch that was not evaluated, see ``eval_every``)."""
    return row["ema_top1"] if row.get("ema_top1") is not None else row.get("val_top1")


# ------------------------------------------------------------------------------------------------------------
# A run: everything one training needs, built once by open_run
# ------------------------------------------------------------------------------------------------------------


@dataclass
class RunState:
    """Where a run stands: what a checkpoint records besides the weights."""

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current epoch already trained (an interrupted epoch)
    best_top1: float = -1.0
    elapsed: float = 0.0  # training seconds so far
    partial: dict = field(default_factory=lambda: {"loss_sum": 0.0, "seen": 0, "skipped": 0})


@dataclass
class Run:
    config: TrainConfig
    info: DistInfo
    device: torch.device
    out: Path
    data: Loaders
    model: nn.Module
    forward: nn.Module  # the model as called in training: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: nn.Module | None
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp: bool
    channels_last: bool
    steps_per_epoch: int
    state: RunState

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"


def open_run(config: TrainConfig, extra_config: dict | None = None) -> Run | dict:
    """Open the run in ``config.out_dir``: check its settings against the directory's, then either return the
    summary of a finished run, or build data, model, optimizer, EMA and restore the checkpoint if one exists."""
    config = config.resolved()
    info, device = setup(config.device)
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the run directory {out} (--out) is a file: give a directory (it holds config.json, "
                         "metrics.jsonl and the checkpoints)")
    changed = _check_settings(out / "config.json", config)
    checkpoint = load_checkpoint(out / "last.pt") if (out / "last.pt").exists() else None
    if checkpoint is not None and checkpoint.get("finished") and checkpoint["epoch"] >= config.epochs:
        if info.main and not config.quiet:
            print(f"{out}: run already finished ({checkpoint['epoch']} epochs); nothing to do")
        return checkpoint["summary"]
    if changed:
        extra_config = {**(extra_config or {}), "changes": _changes(out / "config.json", config, changed, checkpoint)}
    torch.manual_seed(config.seed)
    data = Loaders(config, info, device)
    config.num_classes = data.num_classes
    run = _build(config, info, device, out, data, fresh=checkpoint is None)
    if checkpoint is not None:
        _restore(run, checkpoint, changed)
    if info.main:
        _write_run_files(run, extra_config)
    return run


def _changes(config_path: Path, config: TrainConfig, changed: list[str], checkpoint: dict | None) -> list[dict]:
    """The run's history of --resume-with-changes, this one added (kept in config.json): [old, new] per field."""
    previous = json.loads(config_path.read_text())
    entry = {"at_epoch": checkpoint["epoch"] if checkpoint else 0,
             "fields": {k: [previous["config"].get(k), getattr(config, k)] for k in changed}}
    return previous.get("changes", []) + [entry]


def _build(config: TrainConfig, info: DistInfo, device: torch.device, out: Path, data: Loaders, fresh: bool) -> Run:
    amp = device.type == "cuda" if config.amp is None else config.amp
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    model = _build_model(config, info, fresh).to(device)
    if info.world > 1 and config.sync_bn and device.type == "cuda":  # SyncBatchNorm needs GPUs
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = data.steps_per_epoch()
    lr = config.lr if config.lr is not None else config.base_lr * config.batch_size * info.world / 256
    optimizer = build_optimizer(model, config.optimizer, lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / steps_per_epoch, config))
    forward = model
    if info.world > 1:
        forward = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        forward = torch.compile(forward)
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda" and not torch.cuda.is_bf16_supported())
    return Run(config, info, device, out, data, model, forward, optimizer, scheduler,
               make_ema(model, ema_decay_per_step(config, info.world)) if config.ema_decay else None, scaler,
               nn.CrossEntropyLoss(label_smoothing=config.label_smoothing), amp, channels_last, steps_per_epoch, RunState())


def ema_decay_per_step(config: TrainConfig, world: int = 1) -> float:
    """The EMA decay per optimizer step. The recipes' 0.9999 was set for a global batch of 4096
    (``ema_reference_batch``); at batch B it becomes ``0.9999 ** (B / 4096)``, so that the EMA averages over the
    same number of images whatever the batch (docs/paper.md, "EMA")."""
    if not config.ema_reference_batch:
        return config.ema_decay
    return config.ema_decay ** (config.batch_size * world / config.ema_reference_batch)


def _build_model(config: TrainConfig, info: DistInfo, fresh: bool) -> nn.Module:
    overrides = dict(config.model_overrides, num_classes=config.num_classes, drop_path_rate=config.drop_path_rate,
                     bn_momentum=config.bn_momentum)
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    model = build_model(config.model, **overrides)
    if config.init_from and fresh:  # fine-tuning; a resumed run has its weights
        from ..compat import load_pretrained, load_torchvision_pretrained

        source = load_torchvision_pretrained(config.model) if config.init_from == "torchvision" else config.init_from
        model.init_report = load_pretrained(model, source, prefer_ema=config.init_from_ema)
        if info.main and not config.quiet:
            print(f"initialized {config.model} {model.init_report}")
    if config.freeze_backbone:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("classifier.")
    return model


def _restore(run: Run, checkpoint: dict, changed: list[str] = ()) -> None:
    """Load the checkpoint into the run; with changed hyper-parameters (--resume-with-changes) the new learning
    rate, weight decay and schedule take over (and a new optimizer starts with fresh state)."""
    run.model.load_state_dict(checkpoint["model"])
    if "optimizer" not in changed:
        run.optimizer.load_state_dict(checkpoint["optimizer"])
    new_lrs = list(run.scheduler.base_lrs)
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if changed:
        run.scheduler.base_lrs = new_lrs
        factor = lr_factor(run.scheduler.last_epoch / run.steps_per_epoch, run.config)
        for group, weight_decay in zip(run.optimizer.param_groups, (run.config.weight_decay, 0.0)):
            group.update(initial_lr=new_lrs[0], lr=new_lrs[0] * factor, weight_decay=weight_decay)
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(checkpoint["ema"])
    set_rng_state(checkpoint["rng"])
    run.state = RunState(checkpoint["epoch"], checkpoint["batches_done"], checkpoint["best_top1"], checkpoint["elapsed"],
                         checkpoint["partial_epoch"])
    if run.info.main and not run.config.quiet:
        print(f"resuming {run.out} at epoch {run.state.epoch + 1}, batch {run.state.batches_done}")


# What a run is: even --resume-with-changes cannot change these (the weights and data would not fit).
FIXED_FIELDS = ("model", "model_overrides", "init_from", "freeze_backbone", "dataset", "num_classes", "classes",
                "images_per_class", "batch_size")


def _check_settings(path: Path, config: TrainConfig) -> list[str]:
    """Refuse to continue a run directory with other settings (before anything else, finished runs included),
    unless ``resume_with_changes`` asks for it; return the fields that change."""
    if not path.exists():
        return []
    try:
        previous = json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as error:  # truncated or edited by hand
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}): it records the settings of the run in "
                         f"{path.parent}. Restore it, or use another output directory") from None
    current = dataclasses.asdict(config)
    differing = [k for k in IDENTITY_FIELDS if previous.get(k, getattr(TrainConfig, k, None)) != current.get(k)  # absent: default
                 and not (k == "num_classes" and current.get(k) is None)]
    changes = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing)
    fixed = [k for k in differing if k in FIXED_FIELDS]
    if differing and (fixed or not config.resume_with_changes):
        hint = "" if fixed else ("; to continue it from its last checkpoint with the new values (e.g. a lower --lr after "
                                 "a NaN), add --resume-with-changes")
        raise ValueError(f"{path.parent} holds a run with different settings ({changes}); use another output "
                         f"directory, or delete this one to start over{hint}")
    return differing


def _write_run_files(run: Run, extra_config: dict | None) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    config = run.config
    payload = {"config": dataclasses.asdict(config), "library_version": __version__, "torch": torch.__version__,
               "device": str(run.device), "device_name": device_name(run.device), "world_size": run.info.world,
               "peak_lr": run.scheduler.base_lrs[0], "steps_per_epoch": run.steps_per_epoch, "amp": run.amp,
               "channels_last": run.channels_last,
               "ema_decay_per_step": ema_decay_per_step(config, run.info.world) if config.ema_decay else 0.0,
               "sync_bn_active": any(isinstance(m, nn.SyncBatchNorm) for m in run.model.modules()),
               "train_images": len(run.data.train_set), "val_images": len(run.data.val_set), **(extra_config or {})}
    for stale in (p for pattern in ("*.pt*.tmp", "*.json*.tmp", "*.jsonl*.tmp") for p in run.out.glob(pattern)):
        stale.unlink(missing_ok=True)  # a partial write of a killed process (kill -9 while saving)
    atomic_write_text(run.out / "config.json", json.dumps(payload, indent=2, default=str))
    report = getattr(run.model, "init_report", None)
    if report is not None:
        (run.out / "init_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if run.metrics_path.exists():  # drop lines of epochs that the checkpoint does not cover
        lines = [ln for ln in run.metrics_path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= run.state.epoch]
        atomic_write_text(run.metrics_path, "".join(line + "\n" for line in lines))


# ------------------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------------------


def fit(config: TrainConfig, schedule: ProgressiveSchedule | None = None, extra_config: dict | None = None,
        stop_after_steps: int | None = None, on_epoch_start=None) -> dict:
    """Train (or resume, or do nothing if finished) the run in ``config.out_dir``; return its summary.

    ``schedule`` (progressive learning, paper section 4) gives each epoch's image size and regularization; its
    epochs and eval size replace the config's, and it is recorded in ``config.json``. Without one, size and
    regularization are the config's throughout. ``stop_after_steps`` requests a stop (as Ctrl-C does) after that
    many optimizer steps of this call, for tests. ``on_epoch_start(epoch, model, loader, mixer)`` is called
    before each epoch's first step (inspection, logging).
    """
    if schedule is not None:
        config = dataclasses.replace(config, epochs=schedule.total_epochs, eval_size=schedule.eval_size,
                                     image_size=schedule.stages[-1].image_size)
        extra_config = {"progressive": schedule.to_dict(), **(extra_config or {})}
    run = open_run(config, extra_config)
    if isinstance(run, dict):
        return run
    config = run.config
    schedule = schedule or constant_schedule(config.epochs, config.image_size, config.eval_size, config.dropout,
                                             config.randaug_magnitude, config.mixup_alpha)
    with StopRequests(run, stop_after_steps) as stop:
        try:
            for epoch in range(run.state.epoch, config.epochs):
                plan = schedule.stage_at(epoch)
                stats = train_one_epoch(run, epoch, plan, stop, on_epoch_start)
                end_epoch(run, epoch, plan, stats)
        finally:
            run.data.close()
    barrier(run.info)
    return read_summary(run.out)


def train_one_epoch(run: Run, epoch: int, plan: EpochPlan, stop: StopRequests, on_epoch_start=None) -> dict:
    """One epoch (or the rest of an interrupted one): returns the epoch's loss sum, images seen, images skipped
    and seconds. A stop request (Ctrl-C, SIGTERM) ends it at a batch boundary with a checkpoint."""
    config, state = run.config, run.state
    loader, mixer = apply_stage(plan, run.model, run.data, epoch, state.batches_done, config.cutmix_alpha,
                                config.cutmix_with_mixup)
    if on_epoch_start is not None:
        on_epoch_start(epoch, run.model, loader, mixer)
    run.model.train()
    sums = dict(state.partial)
    seen_before, start = sums["seen"], time.perf_counter()
    total = run.steps_per_epoch - state.batches_done
    progress = tqdm(islice(loader, total), total=total, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                    disable=config.quiet or not run.info.main, file=sys.stdout,
                    mininterval=0.5 if sys.stdout.isatty() else 10.0)
    for images, labels, skipped in progress:
        sums["skipped"] += skipped
        if images is not None:
            loss = _train_step(run, images, labels, mixer, epoch)
            sums["seen"] += len(labels)  # images may be an EncodedBatch (decode_on_device)
            sums["loss_sum"] += loss * len(labels)
            rate = (sums["seen"] - seen_before) * run.info.world / max(1e-9, time.perf_counter() - start)
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}", img_s=f"{rate:.0f}",
                                 refresh=False)
        state.batches_done += 1
        if stop.requested():
            progress.close()
            _save_interrupted(run, epoch, sums, time.perf_counter() - start)
    progress.close()
    seconds = time.perf_counter() - start
    return {**sums, "timed": sums["seen"] - seen_before, "seconds": seconds}


def _train_step(run: Run, images: torch.Tensor | EncodedBatch, labels: torch.Tensor, mixer, epoch: int) -> float:
    if isinstance(images, EncodedBatch):  # decode_on_device: decode and augment on the training device
        images = run.data.pipeline(images)
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    if run.channels_last:
        images = images.to(memory_format=torch.channels_last)
    if mixer is not None:
        images, labels = mixer(images, labels)
    with autocast(run.device, run.amp):
        loss = run.criterion(run.forward(images), labels)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch + 1}, batch {run.state.batches_done + 1}; "
                               f"{_kept(run)}")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    if run.ema is not None:
        run.ema.update_parameters(run.model)
    return loss.item()


def _kept(run: Run) -> str:
    """What a diverged run leaves, and how to go on."""
    if run.last_path.exists():
        epoch = load_checkpoint(run.last_path)["epoch"]
        return (f"the last good checkpoint {run.last_path} (end of epoch {epoch}, every tensor finite) is kept. To "
                "continue from it with a lower learning rate, rerun with e.g. --lr <lower> --resume-with-changes "
                "(Python: TrainConfig(..., resume_with_changes=True)); or check the data.")
    return (f"no checkpoint was written before this point: {run.out} holds nothing to resume from; start again with "
            "a lower --lr (delete the directory or use another --out).")


def _save_interrupted(run: Run, epoch: int, sums: dict, seconds: float) -> None:
    run.state.elapsed += seconds
    run.state.partial = {k: sums[k] for k in ("loss_sum", "seen", "skipped")}
    if run.info.main:
        _save(run, [run.last_path])
        if not run.config.quiet:
            print(f"\ninterrupted: checkpoint written to {run.last_path}; rerun the same command to resume")
    raise KeyboardInterrupt


def end_epoch(run: Run, epoch: int, plan: EpochPlan, stats: dict) -> dict:
    """Evaluate, write the epoch's metrics line, then the checkpoints (best.pt before last.pt, so that a failure
    in between leaves last.pt at the previous epoch and a rerun redoes this one)."""
    state = run.state
    state.elapsed += stats["seconds"]
    loss_sum, seen, skipped, timed = all_reduce(
        [stats["loss_sum"], float(stats["seen"]), float(stats["skipped"]), float(stats["timed"])], run.info, run.device)
    evaluated = (epoch + 1) % run.config.eval_every == 0 or epoch + 1 == run.config.epochs
    metrics = {"epoch": epoch + 1, "stage": plan.stage, "train_loss": loss_sum / max(1.0, seen),
               **(_scores(run) if evaluated else {}), "lr": run.scheduler.get_last_lr()[0], "image_size": plan.image_size,
               "dropout": run.model.dropout.p, "randaug_magnitude": plan.randaug_magnitude,
               "mixup_alpha": plan.mixup_alpha, "images_per_sec": timed / max(1e-9, stats["seconds"]),
               "epoch_seconds": stats["seconds"], "wall_time": state.elapsed,
               "peak_memory_mb": peak_memory_mb(run.device), "skipped_images": int(skipped)}
    run.model.train()
    is_best = evaluated and reported_top1(metrics) > state.best_top1
    state.best_top1 = max(state.best_top1, reported_top1(metrics)) if evaluated else state.best_top1
    state.epoch, state.batches_done, state.partial = epoch + 1, 0, RunState().partial
    if run.info.main:
        before = run.metrics_path.read_text() if run.metrics_path.exists() else ""
        atomic_write_text(run.metrics_path, before + json.dumps(metrics) + "\n")  # never a torn line (full disk)
        finished = state.epoch == run.config.epochs
        _save(run, ([run.out / "best.pt"] if is_best else []) + [run.last_path], finished)
        _print_epoch(run, metrics)
    return metrics


def _scores(run: Run) -> dict:
    loader = run.data.val(run.config.eval_size)
    val = evaluate(run.model, loader, run.device, run.amp, run.channels_last, run.info)
    scores = {"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]}
    if run.ema is not None:
        ema = evaluate(run.ema.module, loader, run.device, run.amp, run.channels_last, run.info)
        scores.update(ema_top1=ema["top1"], ema_top5=ema["top5"])
    return scores


def _print_epoch(run: Run, metrics: dict) -> None:
    if run.config.quiet:
        return
    ema = f", EMA top-1 {metrics['ema_top1']:.1f}%" if "ema_top1" in metrics else ""
    top1 = f", top-1 {metrics['val_top1']:.1f}%{ema}" if "val_top1" in metrics else " (not evaluated)"
    print(f"epoch {metrics['epoch']}/{run.config.epochs}: loss {metrics['train_loss']:.3f}{top1}, "
          f"{metrics['images_per_sec']:.0f} img/s, {metrics['image_size']}px")


def _save(run: Run, paths: list[Path], finished: bool = False) -> None:
    """Write the checkpoint to ``paths`` in order, unless a weight is not finite (then the old files stay). The
    first is written, the others become hard links to it (each replaced atomically): one write, not two."""
    payload = _payload(run, finished)
    bad = non_finite_tensors(payload["model"]) + non_finite_tensors(payload["ema"])
    if bad:
        raise TrainingDiverged(f"{len(bad)} tensor(s) of the model became NaN or infinite (e.g. {bad[0]}) at epoch "
                               f"{run.state.epoch}; they were not saved: {_kept(run)}")
    atomic_save(payload, paths[0])
    for path in paths[1:]:
        atomic_link(paths[0], path)


def _payload(run: Run, finished: bool) -> dict:
    state = run.state
    return {"partial_epoch": state.partial, "model": run.model.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else {}, "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(), "epoch": state.epoch,
            "batches_done": state.batches_done, "best_top1": state.best_top1, "elapsed": state.elapsed,
            "rng": rng_state(), "finished": finished, "summary": _summary(run) if finished else {},
            "model_name": run.config.model, "model_overrides": dict(run.config.model_overrides),
            "num_classes": run.data.num_classes, "classes": run.data.class_names, "eval_size": run.config.eval_size,
            "preprocessing": run.config.preprocessing, "normalize": run.config.normalize}


def _summary(run: Run) -> dict:
    return summarize_metrics(run.metrics_path, run.state.best_top1, run.state.elapsed)


def summarize_metrics(metrics_path: Path, best_top1: float, elapsed: float) -> dict:
    """A run's summary: ``top1`` is the final epoch's reported accuracy (EMA weights when the run keeps an EMA;
    never the best epoch chosen on the validation set, which would flatter it); ``best_top1`` is kept for
    ``best.pt``."""
    lines = [json.loads(line) for line in Path(metrics_path).read_text().splitlines() if line]
    final = lines[-1] if lines else {}
    return {"epochs": len(lines), "top1": reported_top1(final) if final else None,
            "top1_weights": "EMA" if final.get("ema_top1") is not None else "raw",
            "best_top1": best_top1, "final": final, "wall_time": elapsed, "metrics_path": str(metrics_path)}


def read_summary(out_dir: str | Path) -> dict:
    """The summary of the run in ``out_dir`` (finished or not) from its checkpoint and metrics."""
    out = Path(out_dir)
    checkpoint = load_checkpoint(out / "last.pt")
    return checkpoint["summary"] or summarize_metrics(out / "metrics.jsonl", checkpoint["best_top1"], checkpoint["elapsed"])


# ------------------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False, channels_last: bool = False,
             info: DistInfo | None = None) -> dict:
    """Top-1 / top-5 accuracy (%), mean cross-entropy, images scored and unreadable images skipped over ``loader``
    (all ranks together under DDP)."""
    info = info or DistInfo()
    model.eval()
    correct1 = correct5 = loss_sum = count = skipped = 0.0
    for images, labels, unreadable in loader:
        skipped += unreadable
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        if labels.ndim == 2:  # soft (multi-label, normalized) targets: score against the strongest label
            labels = labels.argmax(1)
        with autocast(device, amp):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == labels).sum().item()
        correct5 += (top5 == labels[:, None]).any(1).sum().item()
        count += labels.numel()
    correct1, correct5, loss_sum, count, skipped = all_reduce([correct1, correct5, loss_sum, count, skipped], info, device)
    scored = max(count, 1)
    return {"top1": 100 * correct1 / scored, "top5": 100 * correct5 / scored, "loss": loss_sum / scored,
            "count": int(count), "skipped": int(skipped)}


# ------------------------------------------------------------------------------------------------------------
# Stopping cleanly: Ctrl-C and SIGTERM end the epoch at a batch boundary
# ------------------------------------------------------------------------------------------------------------


class StopRequests:
    """Defers SIGINT (Ctrl-C) and SIGTERM (SLURM time limits, ``timeout``) during training to the end of the
    current batch, so that the checkpoint written then holds exactly the batches it says it does. A second
    signal stops at once. Under DDP every process stops at the same batch (the request is all-reduced)."""

    def __init__(self, run: Run, after_steps: int | None = None):
        self.run, self.after_steps, self.steps, self.flag = run, after_steps, 0, False
        self.previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.flag = True
        signal.signal(signum, self.previous.get(signum, signal.default_int_handler))  # a second signal: at once

    def requested(self) -> bool:
        """Called after each batch: True if training must stop now."""
        self.steps += 1
        flag = self.flag or (self.after_steps is not None and self.steps >= self.after_steps)
        if self.run.info.world > 1:
            flag = all_reduce([float(flag)], self.run.info, self.run.device)[0] > 0
        return flag


# ------------------------------------------------------------------------------------------------------------
# Launching: in this process, or under torchrun
# ------------------------------------------------------------------------------------------------------------


def config_from_dict(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from its JSON form (``dataclasses.asdict``; JSON turns tuples into lists)."""
    values = dict(values)
    if values.get("crop_scale") is not None:
        values["crop_scale"] = tuple(values["crop_scale"])
    return TrainConfig(**values)


def launch(config: TrainConfig, nproc: int = 1, schedule: ProgressiveSchedule | None = None,
           rendezvous: Rendezvous | None = None) -> dict:
    """Train in this process (``nproc`` 1 on one node), or under torchrun with ``nproc`` processes per node.

    The CLI, the notebooks and the experiments all start training through this. The config (and schedule)
    travel as ``<out_dir>/launch.json``; the summary is read back from the run directory.
    """
    if nproc <= 1 and (rendezvous is None or rendezvous.nnodes == 1):
        return fit(config, schedule)
    spec = {"config": dataclasses.asdict(config), "schedule": schedule.to_dict() if schedule else None}
    torchrun("effnetv2_mini.engine.train", spec, Path(config.out_dir) / "launch.json", nproc, rendezvous)
    return read_summary(config.out_dir) if (Path(config.out_dir) / "last.pt").exists() else {}


def _main(argv=None) -> None:
    spec = read_spec(argv)
    schedule = ProgressiveSchedule.from_dict(spec["schedule"]) if spec.get("schedule") else None
    fit(config_from_dict(spec["config"]), schedule)


if __name__ == "__main__":
    _main()
