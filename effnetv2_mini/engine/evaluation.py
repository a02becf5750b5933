"""Evaluating a saved checkpoint on a data set (``effnetv2 eval``), refusing what would
give a silent wrong number."""

from __future__ import annotations

from ..data.datasets import get_dataset, is_built_in
from ..data.loaders import make_loader
from ..data.transforms import eval_transform
from ..models import build_model
from .checkpoint import CheckpointError, load_checkpoint
from .devices import pick_device
from .loop import evaluate

__all__ = ["evaluate_checkpoint", "load_model", "load_weights", "checkpoint_eval_transform"]


def load_model(checkpoint_path: str, ema: bool = False):
    """The model of a checkpoint of ours, with its raw or (``ema=True``) EMA
    weights; and the checkpoint."""
    checkpoint = load_checkpoint(checkpoint_path)
    missing = [k for k in ("model", "model_name", "num_classes") if k not in checkpoint]
    if missing:
        raise CheckpointError(f"{checkpoint_path} is not a checkpoint of this library's training "
                              f"(no {', '.join(missing)}); to evaluate other weights, load them "
                              "with effnetv2_mini.compat.load_pretrained")
    model = build_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"],
                        **checkpoint.get("model_overrides", {}))
    weights = checkpoint["model"]
    if ema:
        if not checkpoint.get("ema"):
            raise ValueError(f"{checkpoint_path} has no EMA weights (the run trained with "
                             "ema_decay 0); drop --ema")
        weights = {k.removeprefix("module."): v for k, v in checkpoint["ema"].items()
                   if k.startswith("module.")}
    load_weights(model, weights, checkpoint_path, checkpoint["model_name"])
    return model, checkpoint


def load_weights(model, weights: dict, path, model_name: str) -> None:
    """``model.load_state_dict(weights)``; weights that do not fit name the
    file and the likely cause."""
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        detail = " ".join(str(error).split())[:240]
        raise CheckpointError(f"{path}: its weights do not fit the model it names "
                              f"({model_name!r}): {detail} ... The checkpoint's model_name or "
                              "model_overrides do not match its weights (edited, or written "
                              "under another name); evaluate it with the model it was "
                              "trained as") from None


def evaluate_checkpoint(checkpoint_path: str, dataset: str, data_root: str | None = None,
                        image_size: int | None = None, batch_size: int = 64, workers: int = 2,
                        device: str = "auto", ema: bool = False,
                        skip_corrupt: bool = False) -> dict:
    """Top-1/top-5 of a checkpoint on ``dataset``'s validation split; the
    classes must be the checkpoint's."""
    model, checkpoint = load_model(checkpoint_path, ema)
    run_device = pick_device(device)
    size = (image_size or checkpoint.get("eval_size")
            or (64 if is_built_in(dataset) else model.config.eval_size))
    options = {"resolution": size} if is_built_in(dataset) else {}
    data = get_dataset(dataset, "val", root=data_root, skip_corrupt=skip_corrupt, **options)
    _check_classes(checkpoint_path, checkpoint, data.classes)
    data.transform = checkpoint_eval_transform(checkpoint, size, dataset)
    loader = make_loader(data, batch_size, workers, run_device)
    result = evaluate(model.to(run_device), loader, run_device, amp=run_device.type == "cuda")
    return {**result, "image_size": size, "images": result["count"],
            "weights": "EMA" if ema else "raw"}


def checkpoint_eval_transform(checkpoint: dict, size: int, dataset: str):
    """The evaluation transform the run itself used (its preprocessing and normalization)."""
    return eval_transform(size, checkpoint.get("preprocessing") or "official",
                          crop=not is_built_in(dataset), normalize=checkpoint.get("normalize"))


def _check_classes(path: str, checkpoint: dict, classes) -> None:
    names = [c if isinstance(c, str) else c[0] for c in classes]
    if len(names) != checkpoint["num_classes"]:
        raise ValueError(f"{path} was trained for {checkpoint['num_classes']} classes but this "
                         f"data set has {len(names)} ({', '.join(map(str, names[:5]))}"
                         f"{', ...' if len(names) > 5 else ''}): evaluate it on the data set it "
                         "was trained on, or fine-tune it first (effnetv2 train --init-from ...)")
    trained = checkpoint.get("classes")
    if trained and list(trained) != names:
        raise ValueError(f"{path} was trained on classes {trained[:5]}... but this data set's are "
                         f"{names[:5]}...: the labels would not match")
