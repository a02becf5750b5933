"""Transfer learning (paper section 5.3, Table 8) and ImageNet-21k pretraining (section 5.2).

    from effnetv2_mini.paper.transfer import finetune_config
    config = finetune_config("efficientnetv2_s", "cifar10", init_from="torchvision", data_root="data",
                             out_dir="runs/s-cifar10")          # the paper's recipe
    fit(config)

Sources to fine-tune from (``init_from``): a checkpoint of our training engine (``runs/x/best.pt``),
``"torchvision"`` (its ImageNet weights, downloaded when online) or any state-dict file whose names we can map
(ours, torchvision's; DDP/EMA prefixes stripped). What was loaded, newly initialized and ignored is printed and
written to the run's ``init_report.json`` (see :func:`effnetv2_mini.compat.load_pretrained`).

Fine-tuning recipes (docs/paper.md#transfer-learning-section-53 and #paper-official-code-and-our-presets), both from
the official ``ImagenetFt`` config where the paper is silent: RMSProp, 0.001 at batch 512 (0.0005 per 256 images,
scaled with the batch), 1 warm-up epoch, EMA 0.9996 per step at batch 512, label smoothing 0.1, dropout 0, stochastic
depth 0.2, the official fine-tuning preprocessing (the whole image resized to the training size, flip, a noise-filled
cutout of half the side), starting from the checkpoint's EMA weights (``ft_init_ema``), training *and* evaluating at
the model's evaluation size (384 px for V2-S: the official ``ft`` preprocessing uses ``isize=1.0`` of it):

- ``paper``: the paper's schedule: cosine decay over 10,000 steps, no weight decay, BN momentum 0.01 (decay 0.99).
- ``code``: the official code's: constant lr, weight decay 1e-5, max(10,000 steps, 15 epochs), BN momentum 0.1
  (TensorFlow decay 0.9).

Torchvision's ImageNet weights were trained on ImageNet mean/std inputs, so fine-tuning them keeps that
normalization (the official code's checkpoints use its own, which the recipes use otherwise).

ImageNet-21k (section 5.2, official ``ImageNet21k`` config): 60 epochs, 0.008 per 256 images, 1 warm-up epoch,
cosine, no label smoothing, no stochastic depth, dropout 0, 224 px, no RandAugment or mixup (the official random
crop and flip stay), no progressive stages, 21,841 classes; an image filed under several synsets gets all of them
as a normalized label (``data.MultiLabelImageFolder``). Then :func:`from_21k_to_1k` swaps the 21,841-way head for
a 1,000-way one to fine-tune on ImageNet-1k for 15 epochs.
"""

from __future__ import annotations

import math

from ..compat import LoadReport, load_pretrained
from ..data.datasets import get_dataset, is_built_in
from ..data.loaders import ClassSubset
from ..engine.config import TrainConfig
from .configs import get_config
from .model import EfficientNet, build_model

__all__ = ["FINETUNE_RECIPES", "IMAGENET21K_CLASSES", "finetune_config", "imagenet21k_config", "from_21k_to_1k"]

IMAGENET21K_CLASSES = 21_841
_FINETUNE = dict(recipe="paper", optimizer="rmsprop", batch_size=512, base_lr=0.0005, warmup_epochs=1.0, ema_decay=0.9996,
                 ema_reference_batch=512, label_smoothing=0.1, dropout=0.0, drop_path_rate=0.2, preprocessing="finetune",
                 randaug_magnitude=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_with_mixup=False, init_from_ema=True)
FINETUNE_RECIPES = {
    "paper": dict(_FINETUNE, schedule="cosine", weight_decay=0.0, bn_momentum=0.01, steps=10_000, min_epochs=0),
    "code": dict(_FINETUNE, schedule="constant", weight_decay=1e-5, bn_momentum=0.1, steps=10_000,
                 min_epochs=15),
}


def finetune_config(model: str, dataset: str, init_from: str | None, finetune_recipe: str = "paper", steps: int | None = None,
                    train_size: int | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for fine-tuning ``model`` on ``dataset`` with a recipe of ``FINETUNE_RECIPES``.

    The recipe counts optimizer steps; our loop counts epochs, so ``epochs = ceil(steps * batch / train_size)``
    (``train_size`` defaults to the training split's length). ``overrides`` replace any field, e.g.
    ``image_size`` to fine-tune at another resolution, ``freeze_backbone=True``, ``batch_size``.
    """
    if finetune_recipe not in FINETUNE_RECIPES:
        raise ValueError(f"unknown fine-tuning recipe {finetune_recipe!r}; recipes: {', '.join(FINETUNE_RECIPES)}")
    values = dict(FINETUNE_RECIPES[finetune_recipe])
    values.update({k: v for k, v in overrides.items() if k in values})
    steps = steps or values.pop("steps")
    values.pop("steps", None)
    min_epochs = values.pop("min_epochs")
    extra = {k: v for k, v in overrides.items() if k not in values and k != "steps"}
    if extra.get("image_size") is None and not is_built_in(dataset):
        extra["image_size"] = get_config(model).eval_size  # the official fine-tuning trains at the eval size (isize=1.0)
    if extra.get("image_size") is not None and extra.get("eval_size") is None:
        extra["eval_size"] = extra["image_size"]
    if init_from == "torchvision" and "normalize" not in extra:
        extra["normalize"] = "imagenet"  # the inputs torchvision's weights were trained on
    if train_size is None:
        options = dict(extra.get("synthetic", {})) if is_built_in(dataset) else {}
        train_set = get_dataset(dataset, "train", root=extra.get("data_root"), **options)
        if extra.get("classes") is not None or extra.get("images_per_class") is not None:
            train_set = ClassSubset(train_set, extra.get("classes"), extra.get("images_per_class"), extra.get("seed", 0))
        train_size = len(train_set)
    epochs = max(1, min_epochs, math.ceil(steps * values["batch_size"] / train_size))
    return TrainConfig(model=model, dataset=dataset, init_from=init_from, epochs=epochs, **values, **extra)


def imagenet21k_config(model: str, data_root: str, out_dir: str, **overrides) -> TrainConfig:
    """Pretraining on ImageNet-21k with the official settings (see the module docstring; paper section 5.2)."""
    values = dict(model=model, dataset="imagenet21k", data_root=data_root, out_dir=out_dir, epochs=60,
                  num_classes=IMAGENET21K_CLASSES, recipe="code", base_lr=0.008, warmup_epochs=1.0, schedule="cosine",
                  label_smoothing=0.0, drop_path_rate=0.0, dropout=0.0, image_size=224, eval_size=224,
                  randaug_magnitude=0.0, mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_with_mixup=False)
    values.update(overrides)
    return TrainConfig(**values)


def from_21k_to_1k(source, model: str | None = None, num_classes: int = 1000) -> tuple[EfficientNet, LoadReport]:
    """The 21k -> 1k step: the pretrained backbone with a new ``num_classes``-way head (the old head is ignored).

    ``source`` is a 21k checkpoint (path or dict) or a model; ``model`` defaults to the checkpoint's."""
    if isinstance(source, EfficientNet):
        model = model or source.config.name
        overrides = {}
    else:
        from ..engine.checkpoint import load_checkpoint

        checkpoint = load_checkpoint(source) if not isinstance(source, dict) else source
        model = model or checkpoint["model_name"]
        overrides = checkpoint.get("model_overrides", {})
    target = build_model(model, num_classes=num_classes, **overrides)
    return target, load_pretrained(target, source)

