"""One place turns a :class:`TrainConfig` (and a progressive schedule) into a run: its
settings, then its objects.

Every caller trains through here (``effnetv2 train``, :func:`effnetv2_mini.engine.loop.fit`, the
experiments, the notebooks), so the same settings give the same run whoever asks. The recipe's rules
(paper section 5.1; docs/paper.md#training-recipe-section-51), each in one function:

- :func:`resolve`: the recipe's values for every setting left to None
  (:meth:`TrainConfig.resolved`), a schedule's epochs and sizes, and
  :func:`fixed_size_regularization`: ``paper``/``code`` at a fixed size trains with the last stage's
  RandAugment, mixup and dropout, as every official configuration does;
- :func:`peak_lr`: the learning rate is given per 256 images and grows with the global batch;
- :func:`ema_decay_per_step`: the EMA decay, set for the recipe's global
  batch, is rescaled to this one;
- :func:`build_objects`: model, optimizer, learning-rate schedule, EMA, loss, DDP wrapper, compiled
  model and gradient scaler. (The mixer is Algorithm 1's per stage:
  :func:`effnetv2_mini.paper.progressive.apply_stage`.)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ..models import build_model
from ..paper.configs import get_config
from ..paper.optim import build_optimizer, lr_factor, make_ema
from ..paper.progressive import PAPER_TABLE_6, ProgressiveSchedule, schedule_preset
from .config import TrainConfig, bn_momentum_per_batch, global_batch
from .devices import speed_defaults
from .distributed import DistInfo

__all__ = ["resolve", "fixed_size_regularization", "peak_lr", "ema_decay_per_step", "build_network",
           "build_objects", "RunObjects"]


def resolve(config: TrainConfig, schedule: ProgressiveSchedule | None = None
            ) -> tuple[TrainConfig, dict | None]:
    """The settings a run trains with: with a schedule, its epochs, last size and evaluation size;
    the recipe's values; and without a schedule, the fixed-size regularization rule. Returns the
    resolved config and, when the rule filled something in,
    ``{"fields": {...}, "source": ...}`` (else None)."""
    if schedule is not None:
        config = dataclasses.replace(config, epochs=schedule.total_epochs,
                                     eval_size=schedule.eval_size,
                                     image_size=schedule.stages[-1].image_size)
    config = config.resolved()
    rule = None if schedule is not None else fixed_size_regularization(config)
    chosen = {}
    if rule is not None:
        chosen = {k: v for k, v in rule[0].items() if getattr(config, k) is None}
    # no rule (or a value given): RandAugment and mixup off unless asked for;
    # dropout None keeps the model's
    defaults = {"randaug_magnitude": 0.0, "mixup_alpha": 0.0}
    filled = {k: v for k, v in defaults.items() if getattr(config, k) is None and k not in chosen}
    config = dataclasses.replace(config, **chosen, **filled)
    return config, ({"fields": chosen, "source": rule[1]} if chosen else None)


def fixed_size_regularization(config: TrainConfig) -> tuple[dict, str] | None:
    """What ``recipe`` ``paper`` or ``code`` trains with at a fixed size on a model that has a
    schedule preset (efficientnetv2_s/m/l): the preset's last stage's RandAugment magnitude, mixup
    alpha and dropout, as the paper's fixed-size baselines do (every official configuration trains
    with them). Returns (the fields, where they come from), or None for other recipes and models."""
    try:
        name = get_config(config.model).name
    except (KeyError, ValueError):
        return None  # not one of our EfficientNets (e.g. a torchvision baseline)
    if config.recipe not in ("paper", "code") or name not in PAPER_TABLE_6:
        return None
    # its regularization only
    preset = schedule_preset(name, config.recipe, epochs=max(config.epochs, 4))
    last = preset.stages[-1]
    fields = {"randaug_magnitude": float(last.randaug_magnitude),
              "mixup_alpha": float(last.mixup_alpha), "dropout": last.dropout}
    return fields, f"the last stage of {preset.source}"


def peak_lr(config: TrainConfig, world: int = 1) -> float:
    """The learning rate after the warm-up: ``lr`` when given, else ``base_lr`` (per 256 images, the
    paper's 0.016 for RMSProp) times the global batch / 256 (section 5.1's linear scaling)."""
    if config.lr is not None:
        return config.lr
    return config.base_lr * global_batch(config, world) / 256


def ema_decay_per_step(config: TrainConfig, world: int = 1) -> float:
    """The EMA decay per optimizer step. The recipes' 0.9999 was set for a global batch of 4096
    (``ema_reference_batch``); at batch B it becomes ``0.9999 ** (B / 4096)``, so that the EMA
    averages over the same number of images whatever the batch (docs/paper.md, "EMA")."""
    if not config.ema_reference_batch:
        return config.ema_decay
    return config.ema_decay ** (global_batch(config, world) / config.ema_reference_batch)


def build_network(config: TrainConfig, info: DistInfo, fresh: bool) -> nn.Module:
    """The network with the run's overrides; a fresh run also gets its classifier's init range and,
    when fine-tuning (``init_from``), the pretrained weights; ``freeze_backbone``
    trains the classifier only."""
    # under gradient accumulation, per batch: the recipe's momentum per optimizer step (official)
    bn_momentum = bn_momentum_per_batch(config.bn_momentum, config.accumulate)
    overrides = dict(config.model_overrides, num_classes=config.num_classes,
                     drop_path_rate=config.drop_path_rate, bn_momentum=bn_momentum)
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    model = build_model(config.model, **overrides)
    if config.head_init_classes and fresh and hasattr(model, "init_classifier"):
        model.init_classifier(range_classes=config.head_init_classes)
    if config.init_from and fresh:  # fine-tuning; a resumed run has its weights
        from ..compat import load_pretrained, load_torchvision_pretrained

        source = config.init_from
        if source == "torchvision":
            source = load_torchvision_pretrained(config.model)
        model.init_report = load_pretrained(model, source, prefer_ema=config.init_from_ema)
        if info.main and not config.quiet:
            print(f"initialized {config.model} {model.init_report}")
    if config.freeze_backbone:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("classifier.")
    return model


@dataclass(kw_only=True)
class RunObjects:
    """What a run trains with, built by :func:`build_objects`."""

    model: nn.Module
    forward: nn.Module  # the model as called in training: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: nn.Module | None
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp: bool
    channels_last: bool


def build_objects(config: TrainConfig, info: DistInfo, device: torch.device, steps_per_epoch: int,
                  fresh: bool) -> RunObjects:
    """Model, optimizer, learning-rate schedule, EMA and loss of a resolved ``config``
    (section 5.1's recipe), on ``device``, with the speed settings (AMP, channels_last) the device's
    defaults or the config choose, wrapped for DDP when ``info`` has several processes and compiled
    when asked."""
    defaults = speed_defaults(device)
    amp = defaults["amp"] if config.amp is None else config.amp
    channels_last = (defaults["channels_last"] if config.channels_last is None
                     else config.channels_last)
    model = build_network(config, info, fresh).to(device)
    if info.world > 1 and config.sync_bn and device.type == "cuda":  # SyncBatchNorm needs GPUs
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optimizer, peak_lr(config, info.world),
                                config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step / steps_per_epoch, config))
    forward = model
    if info.world > 1:
        ids = [device.index] if device.type == "cuda" else None
        forward = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if config.compile:
        forward = torch.compile(forward)
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler(device.type, enabled=amp and device.type == "cuda" and not bf16)
    ema = make_ema(model, ema_decay_per_step(config, info.world)) if config.ema_decay else None
    return RunObjects(model=model, forward=forward, optimizer=optimizer, scheduler=scheduler,
                      ema=ema, scaler=scaler,
                      criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                      amp=amp, channels_last=channels_last)
