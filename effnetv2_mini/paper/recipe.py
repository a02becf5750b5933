"""The training recipe as data (paper section 5.1 and the official ``hparams.py``; docs/paper.md, "Training recipe").

``RECIPES`` holds each recipe's defaults; :class:`effnetv2_mini.engine.config.TrainConfig` fills every field left None
from its ``recipe``. :func:`explain` lists a resolved config's recipe items with what each one does, leaving out
items the recipe does not use (a cosine schedule has no decay rate).
"""

from __future__ import annotations

__all__ = ["RECIPES", "explain"]

# paper: the paper where it says something, else the official code; code: the official code (docs/paper.md,
# "Paper, official code and our presets"); simple: ours, for short runs on a CPU.
_OFFICIAL = dict(optimizer="rmsprop", base_lr=0.016, warmup_epochs=5.0, schedule="exponential", decay_rate=0.97,
                 decay_epochs=2.4, weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999, ema_reference_batch=4096,
                 drop_path_rate=0.2, sync_bn=True, preprocessing="official", randaug_reference=None)
RECIPES = {
    "paper": dict(_OFFICIAL, bn_momentum=0.01, cutmix_with_mixup=False),  # BN decay 0.99 (the paper)
    "code": dict(_OFFICIAL, bn_momentum=0.1, cutmix_with_mixup=True),  # BN decay 0.9, CutMix scheduled with mixup
    "simple": dict(optimizer="adamw", base_lr=0.016, warmup_epochs=1.0, schedule="cosine", decay_rate=0.97,
                   decay_epochs=2.4, weight_decay=0.05, label_smoothing=0.1, ema_decay=0.0, ema_reference_batch=None,
                   drop_path_rate=0.0, bn_momentum=0.1, sync_bn=False, preprocessing="official", randaug_reference=224,
                   cutmix_with_mixup=False),
}

MEANINGS = {
    "model": "the network (block strings, notebook 01)",
    "dataset": "the data the run trains and evaluates on",
    "epochs": "passes over the training set",
    "batch_size": "images per step and process",
    "image_size": "training resolution (progressive learning changes it per stage)",
    "eval_size": "evaluation resolution",
    "recipe": "which set of defaults filled the rest",
    "optimizer": "rmsprop: TensorFlow's RMSProp (decay 0.9, momentum 0.9, eps 1e-3 inside the root)",
    "lr": "peak learning rate (None: 0.016 per 256 images)",
    "warmup_epochs": "linear warm-up from 0 to the peak",
    "schedule": "decay after the warm-up",
    "decay_rate": "exponential schedule: x this every decay_epochs (staircase)",
    "decay_epochs": "exponential schedule: epochs between two decays",
    "weight_decay": "L2 penalty on convolution and linear weights (not BN, not biases)",
    "label_smoothing": "target = 1 - eps on the true class, eps spread over the others",
    "ema_decay": "exponential moving average of the weights per step (0: none); evaluated beside the raw weights",
    "drop_path_rate": "stochastic depth: the last block's chance to skip its branch (linear in depth)",
    "ema_reference_batch": "the global batch the EMA decay was set for: per step it is decay ** (batch / this)",
    "bn_momentum": "BatchNorm running-statistics update (PyTorch convention: 1 - TensorFlow's decay)",
    "sync_bn": "BatchNorm statistics pooled over all GPUs under DDP (SyncBatchNorm)",
    "preprocessing": "official: the official crop, RandAugment and eval crop; torchvision: torchvision's",
    "randaug_reference": "None: RandAugment shifts in the official absolute pixels; N: scaled to the image as if N px",
    "cutmix_with_mixup": "CutMix on half of each batch, scheduled like mixup (the official code)",
    "randaug_magnitude": "RandAugment strength (2 ops per image)",
    "mixup_alpha": "MixUp strength (0: off)",
}


def explain(config) -> list[dict]:
    """``[{"setting", "value", "meaning"}]`` for a resolved :class:`~effnetv2_mini.engine.config.TrainConfig`."""
    unused = set() if config.schedule == "exponential" else {"decay_rate", "decay_epochs"}
    unused |= set() if config.ema_decay else {"ema_reference_batch"}
    return [{"setting": key, "value": str(getattr(config, key)), "meaning": meaning}
            for key, meaning in MEANINGS.items() if key not in unused]
