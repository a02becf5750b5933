"""Fine-tuning and ImageNet-21k runs built from the recipes of :mod:`effnetv2_mini.paper.transfer`
(paper sections 5.2 and 5.3): the data set's size, the processes and the global batch turned into a
:class:`TrainConfig`.

    from effnetv2_mini.engine.finetune import finetune_config
    config = finetune_config("efficientnetv2_s", "cifar10", init_from="torchvision",
                             data_root="data", out_dir="runs/s-cifar10",
                             processes=8)      # Table 8: 64 x 8 = 512 per step
    fit(config)      # or effnetv2_mini.engine.launch.launch(config, nproc=8)

Sources to fine-tune from (``init_from``): a checkpoint of our training engine (``runs/x/best.pt``),
``"torchvision"`` (its ImageNet weights, downloaded when online) or any state-dict file whose names
we can map (ours, torchvision's; DDP/EMA prefixes stripped). What was loaded, newly initialized and
ignored is printed and written to the run's ``init_report.json`` (see
:func:`effnetv2_mini.compat.load_pretrained`). Torchvision's ImageNet weights were trained on
ImageNet mean/std inputs, so fine-tuning them keeps that normalization (the official code's
checkpoints use its own, which the recipes use otherwise).

The global batch is the recipe's (512) unless given;
:func:`~effnetv2_mini.engine.config.split_global_batch` turns it into images per process and batch
(``batch_size``: at most that many, 64 by default) and accumulated batches, so that the learning
rate, the EMA and the step count follow the recipe whatever the hardware."""

from __future__ import annotations

from ..compat import LoadReport, load_pretrained
from ..data.datasets import get_dataset, is_built_in
from ..data.loaders import ClassSubset
from ..models import default_sizes
from ..paper.model import EfficientNet, build_model
from ..paper.transfer import IMAGENET21K_PRETRAINING, finetune_length
from ..paper.transfer import finetune_recipe as recipe_values
from .config import TrainConfig, optimizer_steps_per_epoch, split_global_batch

__all__ = ["finetune_config", "imagenet21k_config", "from_21k_to_1k", "DEVICE_BATCH",
           "EVALUATIONS"]

# images per process and batch when a run gives none (the recipes state global batches only)
DEVICE_BATCH = 64
# a fine-tuning evaluates about this many times (and after its last epoch), whatever its epochs
EVALUATIONS = 20


def finetune_config(model: str, dataset: str, init_from: str | None, finetune_recipe: str = "paper",
                    steps: int | None = None, train_size: int | None = None,
                    global_batch: int | None = None, processes: int = 1,
                    min_epochs: int | None = None, **overrides) -> TrainConfig:
    """A :class:`TrainConfig` for fine-tuning ``model`` on ``dataset`` with the recipe
    ``finetune_recipe`` (:func:`effnetv2_mini.paper.transfer.finetune_recipe`: Table 8's on the
    transfer sets, section 5.2's on ImageNet) run by ``processes`` processes.

    ``global_batch``: images per optimizer step over all processes (None: the recipe's 512, or
    ``batch_size x processes`` when ``batch_size`` is given); ``batch_size``: the most images per
    process and batch (:data:`DEVICE_BATCH` by default), the rest is accumulated. ``steps`` and
    ``min_epochs`` replace the recipe's step count and fewest epochs; the epochs follow
    :func:`~effnetv2_mini.paper.transfer.finetune_length` for the training split's length
    (``train_size`` to give it). Other ``overrides`` replace any field, e.g. ``image_size``,
    ``freeze_backbone``."""
    values = recipe_values(finetune_recipe, dataset)
    recipe_batch = values.pop("global_batch")
    length = {k: values.pop(k) for k in ("steps", "min_epochs")}
    if min_epochs is not None:
        length["min_epochs"] = min_epochs
    device_batch = overrides.pop("batch_size", None)
    values.update({k: v for k, v in overrides.items() if k in values})
    extra = _sizes(model, dataset, init_from,
                   {k: v for k, v in overrides.items() if k not in values and k != "accumulate"})
    if global_batch is None:
        global_batch = device_batch * processes if device_batch else recipe_batch
    batch_size, accumulate = split_global_batch(global_batch, processes,
                                                device_batch or DEVICE_BATCH)
    epochs = extra.pop("epochs", None)
    if epochs is None:
        size = train_size if train_size is not None else _train_size(dataset, extra)
        per_epoch = optimizer_steps_per_epoch(size, batch_size, processes, accumulate,
                                              extra.get("max_steps_per_epoch"))
        if per_epoch < 1:
            raise ValueError(f"{dataset}'s {size} training images are fewer than one global batch "
                             f"of {global_batch}: lower the global batch (global_batch=, or "
                             "batch_size)")
        epochs = finetune_length(length, per_epoch, steps)[0]
    # Flowers102 at 512: 3,334 epochs of 3 steps; the official code evaluates its checkpoints apart
    extra.setdefault("eval_every", max(1, epochs // EVALUATIONS))
    return TrainConfig(model=model, dataset=dataset, init_from=init_from, epochs=epochs,
                       batch_size=batch_size, accumulate=accumulate, **values, **extra)


def _sizes(model: str, dataset: str, init_from: str | None, extra: dict) -> dict:
    """Training and evaluation sizes (the official fine-tuning trains at the eval size, isize=1.0)
    and the normalization torchvision's weights were trained with."""
    if extra.get("image_size") is None and not is_built_in(dataset):
        extra["image_size"] = default_sizes(model)[1]
    if extra.get("image_size") is not None and extra.get("eval_size") is None:
        extra["eval_size"] = extra["image_size"]
    if init_from == "torchvision" and "normalize" not in extra:
        extra["normalize"] = "imagenet"  # the inputs torchvision's weights were trained on
    return extra


def _train_size(dataset: str, extra: dict) -> int:
    """The length of the training split the run will use (a class or few-shot subset included)."""
    options = dict(extra.get("synthetic", {})) if is_built_in(dataset) else {}
    train_set = get_dataset(dataset, "train", root=extra.get("data_root"), **options)
    if extra.get("classes") is not None or extra.get("images_per_class") is not None:
        train_set = ClassSubset(train_set, extra.get("classes"), extra.get("images_per_class"),
                                extra.get("seed", 0))
    return len(train_set)


def imagenet21k_config(model: str, data_root: str, out_dir: str, global_batch: int | None = None,
                       processes: int = 1, batch_size: int = DEVICE_BATCH,
                       **overrides) -> TrainConfig:
    """Pretraining on ImageNet-21k with the official settings
    (:data:`~effnetv2_mini.paper.transfer.IMAGENET21K_PRETRAINING`, paper section 5.2) at
    ``global_batch`` (None: the official 4096), ``batch_size`` images per process and batch at
    most, by ``processes`` processes."""
    values = dict(IMAGENET21K_PRETRAINING)
    global_batch = global_batch or values["global_batch"]
    del values["global_batch"]
    per_process, accumulate = split_global_batch(global_batch, processes, batch_size)
    values.update(model=model, dataset="imagenet21k", data_root=data_root, out_dir=out_dir,
                  batch_size=per_process, accumulate=accumulate)
    values.update(overrides)
    return TrainConfig(**values)


def from_21k_to_1k(source, model: str | None = None, num_classes: int = 1000
                   ) -> tuple[EfficientNet, LoadReport]:
    """The 21k -> 1k step: the pretrained backbone with a new ``num_classes``-way head (the old head
    is ignored, :data:`~effnetv2_mini.paper.transfer.REINITIALIZED`).

    ``source`` is a 21k checkpoint (path or dict) or a model; ``model`` defaults to the
    checkpoint's."""
    if isinstance(source, EfficientNet):
        model = model or source.config.name
        overrides = {}
    else:
        from .checkpoint import load_checkpoint

        checkpoint = load_checkpoint(source) if not isinstance(source, dict) else source
        model = model or checkpoint["model_name"]
        overrides = checkpoint.get("model_overrides", {})
    target = build_model(model, num_classes=num_classes, **overrides)
    return target, load_pretrained(target, source)
