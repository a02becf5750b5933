"""Transfer learning (section 5.3, Table 8) and ImageNet-21k (section 5.2): recipes and rules.

This module holds what the paper and the official code say, as data and small pure functions;
building a run from them (data sets, devices, processes) is :mod:`effnetv2_mini.engine.finetune`::

    from effnetv2_mini.engine.finetune import finetune_config
    config = finetune_config("efficientnetv2_s", "cifar10", init_from="torchvision",
                             data_root="data", out_dir="runs/s-cifar10")  # Table 8's recipe

Fine-tuning recipes (docs/paper.md#transfer-learning-section-53 and
#paper-official-code-and-our-presets), both from the official ``ImagenetFt`` config where the paper
is silent: RMSProp at a **global batch of 512**, 0.0005 per 256 images (0.001 at 512), 1 warm-up
epoch, EMA 0.9996 per step at 512, label smoothing 0.1, dropout 0 (the official 1e-6), stochastic
depth 0.2, the official fine-tuning preprocessing (the whole image resized to the training size,
flip, a noise-filled cutout of half the side), starting from the checkpoint's EMA weights
(``ft_init_ema``), training *and* evaluating at the model's evaluation size (the official
``isize=1.0``: 384 px for V2-S).

Table 8 (the transfer sets):

- ``paper``: cosine decay over 10,000 steps, no weight decay, BN momentum 0.01 (decay 0.99, section
  5.1).
- ``code``: the official ``ImagenetFt``: constant lr, weight decay 1e-5, ``max(10,000 steps, 15
  epochs)``, BN momentum 0.1 (TensorFlow decay 0.9).

ImageNet-1k after ImageNet-21k (section 5.2), :data:`IMAGENET_FINETUNE_RECIPES`:

- ``paper``: 15 epochs with cosine decay (the paper); weight decay 1e-5 as the official code (the
  paper says nothing for this step); BN momentum 0.01, the paper's 0.99 of section 5.1 (labelled in
  docs/paper.md).
- ``code``: the official ``ImagenetFt`` as above (constant lr, at least 10,000 steps, 15 epochs).

ImageNet-21k pretraining, :data:`IMAGENET21K_PRETRAINING` (official ``ImageNet21k`` config): global
batch 4096, 60 epochs, 0.008 per 256 images, 1 warm-up epoch, cosine, no label smoothing, no
stochastic depth, dropout 0, 224 px, no RandAugment or mixup (the official random crop and flip
stay), no progressive stages, 21,841 classes; an image filed under several synsets gets all of them
as a normalized label. Then the 21,841-way head is replaced by a new 1,000-way one
(:data:`REINITIALIZED`) and the network is fine-tuned on ImageNet-1k.

What is kept and what starts anew: every tensor of the pretrained network is loaded (its EMA
weights) except the classifier, whose shape differs (:data:`REINITIALIZED`, the official
``exclude_layers=('_fc', ...)`` and ``skip_mismatch``); nothing is frozen (``freeze_backbone``
trains the classifier only, an option of ours)."""

from __future__ import annotations

import math

__all__ = ["FINETUNE_RECIPES", "IMAGENET_FINETUNE_RECIPES", "IMAGENET21K_PRETRAINING",
           "IMAGENET21K_CLASSES", "REINITIALIZED", "finetune_recipe", "finetune_length",
           "is_imagenet_finetune"]

IMAGENET21K_CLASSES = 21_841
# The layers a fine-tuning initializes anew (a new number of classes): the classifier only.
REINITIALIZED = ("classifier.weight", "classifier.bias")

# Official datasets.py ImagenetFt (lines 698-727): batch 512, rmsprop, lr_base 0.0005, warm-up 1
# epoch, EMA 0.9996, weight decay 1e-5, label smoothing 0.1, min_steps 10000, epochs 15, dropout
# 1e-6, survival 0.8, augname 'ft'.
_FINETUNE = dict(optimizer="rmsprop", global_batch=512, base_lr=0.0005, warmup_epochs=1.0,
                 ema_decay=0.9996, ema_reference_batch=512, label_smoothing=0.1, dropout=0.0,
                 drop_path_rate=0.2, preprocessing="finetune", randaug_magnitude=0.0,
                 mixup_alpha=0.0, cutmix_alpha=0.0, cutmix_with_mixup=False, init_from_ema=True)
_OFFICIAL_FT = dict(_FINETUNE, recipe="code", schedule="constant", weight_decay=1e-5,
                    bn_momentum=0.1, steps=10_000, min_epochs=15)
FINETUNE_RECIPES = {  # Table 8: the transfer sets
    "paper": dict(_FINETUNE, recipe="paper", schedule="cosine", weight_decay=0.0, bn_momentum=0.01,
                  steps=10_000, min_epochs=0),
    "code": _OFFICIAL_FT,
}
IMAGENET_FINETUNE_RECIPES = {  # section 5.2: ImageNet-1k after ImageNet-21k
    "paper": dict(_FINETUNE, recipe="paper", schedule="cosine", weight_decay=1e-5, bn_momentum=0.01,
                  steps=0, min_epochs=15),
    "code": _OFFICIAL_FT,
}
# Official datasets.py ImageNet21k (lines 666-695) on hparams.py's base_config (batch_size 4096,
# line 262; ema 0.9999, line 256; weight decay 1e-5, line 257; bn_momentum 0.9, line 228).
IMAGENET21K_PRETRAINING = dict(recipe="code", global_batch=4096, epochs=60, base_lr=0.008,
                               warmup_epochs=1.0, schedule="cosine", label_smoothing=0.0,
                               drop_path_rate=0.0, dropout=0.0, image_size=224, eval_size=224,
                               randaug_magnitude=0.0, mixup_alpha=0.0, cutmix_alpha=0.0,
                               cutmix_with_mixup=False, num_classes=IMAGENET21K_CLASSES)


def is_imagenet_finetune(dataset: str) -> bool:
    """True on ImageNet-1k: section 5.2's step after ImageNet-21k, not a Table 8 transfer."""
    return dataset == "imagenet"


def finetune_recipe(name: str, dataset: str) -> dict:
    """The fine-tuning recipe ``name`` (``paper`` or ``code``) for ``dataset``: Table 8's for the
    transfer sets, section 5.2's on ImageNet-1k. A copy: change it freely."""
    table = IMAGENET_FINETUNE_RECIPES if is_imagenet_finetune(dataset) else FINETUNE_RECIPES
    if name not in table:
        raise ValueError(f"unknown fine-tuning recipe {name!r}; recipes: {', '.join(table)}")
    return dict(table[name])


def finetune_length(recipe: dict, steps_per_epoch: int, steps: int | None = None
                    ) -> tuple[int, int]:
    """``(epochs, optimizer steps)`` of a fine-tuning whose epochs have ``steps_per_epoch``
    optimizer steps: the official ``max(min_steps, epochs x steps per epoch)`` (main.py,
    ``train_steps``), in whole epochs: the recipe's (or the given) ``steps`` rounded up to whole
    epochs, and at least its ``min_epochs``. The paper's Table 8 recipe is 10,000 steps; whole
    epochs add less than one epoch's steps (CIFAR-10 at 512: 10,088)."""
    if steps_per_epoch < 1:
        raise ValueError("an epoch of fine-tuning has no optimizer step: the training set is "
                         "smaller than one global batch; lower the global batch")
    steps = recipe["steps"] if steps is None else steps
    epochs = max(1, recipe["min_epochs"], math.ceil(steps / steps_per_epoch))
    return epochs, epochs * steps_per_epoch
