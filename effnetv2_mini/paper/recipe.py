"""The training recipe as data (paper section 5.1 and the official ``hparams.py``; docs/paper.md,
"Training recipe").

``RECIPES`` holds each recipe's defaults; :class:`effnetv2_mini.engine.config.TrainConfig` fills
every field left None from its ``recipe``. :func:`explain` lists a resolved config's recipe items
with what each one does, leaving out items the recipe does not use (a cosine schedule has no decay
rate).
"""

from __future__ import annotations

__all__ = ["RECIPES", "OPTIMIZERS", "explain"]

# paper: the paper where it says something, else the official code; code: the official code
# (docs/paper.md, "Paper, official code and our presets"); simple: ours, for short runs on a CPU;
# short: ours, a few epochs on small real data (each choice explained beside it).
_OFFICIAL = dict(optimizer="rmsprop", base_lr=0.016, warmup_epochs=5.0, schedule="exponential",
                 decay_rate=0.97, decay_epochs=2.4, weight_decay=1e-5, label_smoothing=0.1,
                 ema_decay=0.9999, ema_reference_batch=4096, drop_path_rate=0.2, sync_bn=True,
                 preprocessing="official", randaug_reference=None)
RECIPES = {
    # BN decay 0.99 (the paper)
    "paper": dict(_OFFICIAL, bn_momentum=0.01, cutmix_with_mixup=False),
    # BN decay 0.9, CutMix scheduled with mixup
    "code": dict(_OFFICIAL, bn_momentum=0.1, cutmix_with_mixup=True),
    "simple": dict(optimizer="adamw", base_lr=0.016, warmup_epochs=1.0, schedule="cosine",
                   decay_rate=0.97, decay_epochs=2.4, weight_decay=0.05, label_smoothing=0.1,
                   ema_decay=0.0, ema_reference_batch=None, drop_path_rate=0.0, bn_momentum=0.1,
                   sync_bn=False, preprocessing="official", randaug_reference=224,
                   cutmix_with_mixup=False),
    # short: ours, not the paper's: a few epochs (5-20) on a small real data set (e.g. Imagenette, a
    # few thousand photos), for every network alike (EfficientNets and torchvision's ResNets).
    # Chosen from published short-run recipes, not tuned here. The model: fast.ai's Imagenette
    # leaderboard runs (fastai/imagenette 2020-01-train.md: Ranger, lr 8e-3 at batch 64, momentum
    # 0.95 / 0.99, flat-then-cosine schedule, weight decay 1e-2, label smoothing, random crops of at
    # least 35% of the image, no mixup below 80 epochs).
    # - AdamW: the Adam family those runs use, with decoupled weight decay as fastai's
    #   (Loshchilov & Hutter 2019).
    # - lr 0.016 per 256 images = 4e-3 at batch 64: half of Ranger's 8e-3, whose Lookahead (alpha
    #   0.5) moves the weights about half of each step; the same value as `simple`, which trains the
    #   demo models.
    # - 1 warm-up epoch, then cosine to zero: plain AdamW lacks RAdam's built-in warm-up (about
    #   2 / (1 - 0.99) = 200 steps in Ranger, Ma & Yarats 2021; Imagenette at batch 64 has 148 steps
    #   per epoch); a cosine that ends at 0 fits any epoch count, and one epoch is 5-20% of a 5-20
    #   epoch run (one-cycle warms up for 25%).
    # - weight decay 0.01 (fastai's default and torch's AdamW default): few epochs underfit more
    #   than they overfit, so less than `simple`'s 0.05 (DeiT's 300-epoch value).
    # - label smoothing 0.1 (Szegedy et al. 2016; the paper's and fastai's).
    # - crops of 35-100% of the image (fastai's min_scale 0.35): the official 5-100% crops are for
    #   350 epochs.
    # - no EMA: an EMA averages over about 1 / (1 - decay) steps (0.9999: 10,000), longer than the
    #   whole run (a few hundred steps), so it would mostly hold early weights; the cosine to zero
    #   already settles the last weights.
    # - no stochastic depth, BN momentum 0.1 (PyTorch's default): statistics that follow a short
    #   run.
    # - RandAugment shifts scaled as if 224 px (randaug_reference, as `simple`): mild on small
    #   images; the magnitude itself is the run's (or the progressive schedule's), as in every
    #   recipe.
    # - the classifier initialised with ImageNet's range, U(+-1/sqrt(1000)) (head_init_classes): the
    #   official rule, U(+-1/sqrt(classes)), is 10x wider on 10 classes, its first logits have a std
    #   of about 3 and the loss starts near 4; measured (docs/benchmarks.md): V2-B0 on Imagenette at
    #   64 px, 40.7% after 4 of 5 epochs against 24.5%.
    "short": dict(optimizer="adamw", base_lr=0.016, warmup_epochs=1.0, schedule="cosine",
                  decay_rate=0.97, decay_epochs=2.4, weight_decay=0.01, label_smoothing=0.1,
                  ema_decay=0.0, ema_reference_batch=None, drop_path_rate=0.0, bn_momentum=0.1,
                  sync_bn=False, preprocessing="official", randaug_reference=224,
                  cutmix_with_mixup=False, crop_scale=(0.35, 1.0), head_init_classes=1000),
}

MEANINGS = {
    "model": "the network (block strings, notebook 01)",
    "dataset": "the data the run trains and evaluates on",
    "epochs": "passes over the training set",
    "batch_size": "images per step and process",
    "image_size": "training resolution (progressive learning changes it per stage)",
    "eval_size": "evaluation resolution",
    "recipe": "which set of defaults filled the rest",
    "optimizer": "the update rule",
    "lr": "peak learning rate (None: 0.016 per 256 images)",
    "warmup_epochs": "linear warm-up from 0 to the peak",
    "schedule": "decay after the warm-up",
    "decay_rate": "exponential schedule: x this every decay_epochs (staircase)",
    "decay_epochs": "exponential schedule: epochs between two decays",
    "weight_decay": "how strongly weights are pulled towards 0",
    "label_smoothing": "target = 1 - eps on the true class, eps spread over the others",
    "ema_decay": "exponential moving average of the weights per step (0: none); evaluated beside "
                 "the raw weights",
    "drop_path_rate": "stochastic depth: the last block's chance to skip its branch (linear in "
                      "depth)",
    "ema_reference_batch": "the global batch the EMA decay was set for: per step it is decay ** "
                           "(batch / this)",
    "bn_momentum": "BatchNorm running-statistics update (PyTorch convention: 1 - TensorFlow's "
                   "decay)",
    "sync_bn": "BatchNorm statistics pooled over all GPUs under DDP (SyncBatchNorm)",
    "preprocessing": "official: the official crop, RandAugment and eval crop; torchvision: "
                     "torchvision's",
    "crop_scale": "training crops cover this fraction of the image area (None: the preprocessing's "
                  "own)",
    "randaug_reference": "None: RandAugment shifts in the official absolute pixels; N: scaled to "
                         "the image as if N px",
    "cutmix_with_mixup": "CutMix on half of each batch, scheduled like mixup (the official code)",
    "head_init_classes": "the classifier's init range is 1/sqrt(this) (None: the number of "
                         "classes, the official rule)",
    "randaug_magnitude": "RandAugment strength (2 ops per image)",
    "mixup_alpha": "MixUp strength (0: off)",
}


# What "optimizer" and "weight_decay" mean, per optimizer (paper.optim.build_optimizer). Weight
# decay applies to convolution and linear weights only, never to BN parameters or biases
# (paper.optim.param_groups).
OPTIMIZERS = {
    "rmsprop": {
        "optimizer": "TensorFlow's RMSProp, the paper's (section 5.1): decay 0.9, momentum 0.9, "
                     "eps 1e-3 inside the root",
        "weight_decay": "L2 term in the loss (the official code): wd * w joins the gradient before "
                        "RMSProp scales it; not on BN or biases",
    },
    "adamw": {
        "optimizer": "AdamW (PyTorch's: betas 0.9 / 0.999, eps 1e-8): Adam with decoupled "
                     "weight decay",
        "weight_decay": "decoupled (Loshchilov & Hutter 2019): each step shrinks w by lr * wd * w, "
                        "outside Adam's scaling, no loss term; not on BN or biases",
    },
    "sgd": {
        "optimizer": "SGD with Nesterov momentum 0.9",
        "weight_decay": "L2 term: wd * w joins the gradient before the momentum; not on BN or "
                        "biases",
    },
}


def explain(config) -> list[dict]:
    """``[{"setting", "value", "meaning"}]`` for a resolved
    :class:`~effnetv2_mini.engine.config.TrainConfig`; ``optimizer`` and ``weight_decay`` say what
    they mean for the config's optimizer (:data:`OPTIMIZERS`)."""
    unused = set() if config.schedule == "exponential" else {"decay_rate", "decay_epochs"}
    unused |= set() if config.ema_decay else {"ema_reference_batch"}
    unused |= set() if config.crop_scale else {"crop_scale"}
    unused |= set() if config.head_init_classes else {"head_init_classes"}
    meanings = dict(MEANINGS, **OPTIMIZERS.get(config.optimizer, {}))
    return [{"setting": key, "value": str(getattr(config, key)), "meaning": meaning}
            for key, meaning in meanings.items() if key not in unused]
