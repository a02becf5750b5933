"""Transfer learning (paper section 5.3, Table 8) and ImageNet-21k pretraining (section 5.2).

    from effnetv2_mini.transfer import finetune_config
    config = finetune_config("efficientnetv2_s", "cifar10", init_from="torchvision", data_root="data",
                             out_dir="runs/s-cifar10")          # the paper's recipe
    fit(config)

Sources to fine-tune from (``init_from``): a checkpoint of our training engine (``runs/x/best.pt``),
``"torchvision"`` (its ImageNet weights, downloaded when online) or any state-dict file whose names we can map
(ours, torchvision's; DDP/EMA prefixes stripped). What was loaded, newly initialized and ignored is printed and
written to the run's ``init_report.json`` (see :func:`effnetv2_mini.compat.load_pretrained`).

Fine-tuning presets (PAPER.md sections 6-7):

- ``paper``: batch 512, lr 0.001 with cosine decay, 10,000 steps, no weight decay, cutout (``v2.RandomErasing``,
  p=0.5: our reading of "cutout"). The paper does not name the optimizer; we use SGD with Nesterov momentum 0.9.
- ``code``: the official code's variant: constant lr and an EMA of 0.9996 (otherwise as ``paper``).

ImageNet-21k (section 5.2): 60 epochs, cosine, no progressive stages, no augmentation, 21,841 classes; an image
filed under several synsets gets all of them as a normalized label (``data.MultiLabelImageFolder``). Then
:func:`from_21k_to_1k` swaps the 21,841-way head for a 1,000-way one to fine-tune on ImageNet-1k for 15 epochs.
"""

from __future__ import annotations

import math

from .compat import LoadReport, load_pretrained
from .data import get_dataset, is_built_in
from .model import EfficientNet, build_model
from .reference import paper_table
from .train import TrainConfig

__all__ = ["FINETUNE_PRESETS", "IMAGENET21K_CLASSES", "finetune_config", "imagenet21k_config", "from_21k_to_1k",
           "PAPER_TABLE_8"]

IMAGENET21K_CLASSES = 21_841
FINETUNE_PRESETS = {
    "paper": dict(batch_size=512, lr=0.001, steps=10_000, schedule="cosine", warmup_epochs=0.0, weight_decay=0.0,
                  random_erasing=0.5, ema_decay=0.0, optimizer="sgd", label_smoothing=0.1, preset="paper"),
    "code": dict(batch_size=512, lr=0.001, steps=10_000, schedule="constant", warmup_epochs=0.0, weight_decay=0.0,
                 random_erasing=0.5, ema_decay=0.9996, optimizer="sgd", label_smoothing=0.1, preset="paper"),
}
# Paper Table 8 (top-1 %, models pretrained on ImageNet-1k), from the reference file.
PAPER_TABLE_8 = paper_table("table8")["top1"]


def finetune_config(model: str, dataset: str, init_from: str | None, recipe: str = "paper", steps: int | None = None,
                    train_size: int | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for fine-tuning ``model`` on ``dataset`` with a recipe of ``FINETUNE_PRESETS``.

    The recipe counts optimizer steps; our loop counts epochs, so ``epochs = ceil(steps * batch / train_size)``
    (``train_size`` defaults to the training split's length). ``overrides`` replace any field, e.g.
    ``image_size`` to fine-tune at another resolution, ``freeze_backbone=True``, ``batch_size``.
    """
    if recipe not in FINETUNE_PRESETS:
        raise ValueError(f"unknown fine-tuning recipe {recipe!r}; recipes: {', '.join(FINETUNE_PRESETS)}")
    values = dict(FINETUNE_PRESETS[recipe])
    values.update({k: v for k, v in overrides.items() if k in values})
    steps = steps or values.pop("steps")
    values.pop("steps", None)
    extra = {k: v for k, v in overrides.items() if k not in values and k != "steps"}
    if train_size is None:
        options = dict(extra.get("synthetic", {})) if is_built_in(dataset) else {}
        train_size = len(get_dataset(dataset, "train", root=extra.get("data_root"), **options))
    epochs = max(1, math.ceil(steps * values["batch_size"] / train_size))
    return TrainConfig(model=model, dataset=dataset, init_from=init_from, epochs=epochs, **values, **extra)


def imagenet21k_config(model: str, data_root: str, out_dir: str, **overrides) -> TrainConfig:
    """Pretraining on ImageNet-21k: 60 epochs, cosine, no augmentation, 21,841 classes (paper section 5.2)."""
    values = dict(model=model, dataset="imagenet21k", data_root=data_root, out_dir=out_dir, epochs=60,
                  num_classes=IMAGENET21K_CLASSES, preset="paper", schedule="cosine", randaug_magnitude=0.0,
                  mixup_alpha=0.0, cutmix_alpha=0.0)
    values.update(overrides)
    return TrainConfig(**values)


def from_21k_to_1k(source, model: str | None = None, num_classes: int = 1000) -> tuple[EfficientNet, LoadReport]:
    """The 21k -> 1k step: the pretrained backbone with a new ``num_classes``-way head (the old head is ignored).

    ``source`` is a 21k checkpoint (path or dict) or a model; ``model`` defaults to the checkpoint's."""
    if isinstance(source, EfficientNet):
        model = model or source.config.name
        overrides = {}
    else:
        from .train import load_checkpoint

        checkpoint = load_checkpoint(source) if not isinstance(source, dict) else source
        model = model or checkpoint["model_name"]
        overrides = checkpoint.get("model_overrides", {})
    target = build_model(model, num_classes=num_classes, **overrides)
    return target, load_pretrained(target, source)

