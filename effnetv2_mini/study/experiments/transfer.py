"""Transfer learning (paper section 5.3, Table 8; ImageNet-21k pretraining, section 5.2):
fine-tuning a pretrained model against training the same model from scratch on the same images for
the same number of steps.

The plans state global batches (the fine-tuning's, 512 in the full plans, and the pretraining's,
4096 on ImageNet-21k); :func:`~effnetv2_mini.engine.config.split_global_batch` makes them
``batch_size`` images per process and batch at most, the rest accumulated. Every row records its
global batch, per-process batch, accumulation, peak learning rate and optimizer steps."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...data.datasets import CACHEABLE, TRAIN_IMAGES, dataset_or_fallback
from ...engine.config import TrainConfig, split_global_batch
from ...engine.devices import pick_device
from ...engine.finetune import finetune_config, imagenet21k_config
from ...engine.launch import launch
from ...engine.rundir import read_history
from ...paper.transfer import finetune_recipe
from ..profiles import REHEARSAL_BATCH_SCALE
from ..reference import paper_table
from .common import data_fields, schedule_facts
from .results import FINAL_EMA, FINAL_RAW, Result, measure_conditions, result_type

__all__ = ["TransferResult", "transfer", "finetune_run_config"]


@result_type
@dataclass
class TransferResult(Result):
    finetune_recipe: str = ""
    steps: int = 0  # fine-tuning steps asked for (the recipe's when the profile gives none)
    # model -> {source, top1, dataset, classes, and its global batch, lr, steps when trained here}
    pretraining: dict = field(default_factory=dict)
    # model, dataset, requested, start, epochs, top1, paper_top1, train_images, global_batch,
    # batch_size, accumulate, processes, lr, lr_schedule, optimizer_steps
    rows: list[dict] = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # "model/data set/start" -> metrics rows
    fallback_notices: list[str] = field(default_factory=list)


def transfer(settings, output_dir: str) -> TransferResult:
    """Notebook 06: for each model, pretrain (or take torchvision's or ImageNet-21k weights), then
    for each transfer set fine-tune from them and train from scratch with the same recipe, steps and
    images."""
    start, device = time.perf_counter(), pick_device(settings.device)
    runs = Path(output_dir) / "06_transfer_runs"
    pretraining = {model: _pretrain(model, settings, runs, device) for model in settings.models}
    rows, curves, notices = [], {}, []
    for model in settings.models:
        for requested in settings.transfer_sets:
            dataset, notice = dataset_or_fallback(requested, settings.data_root,
                                                  download=settings.download)
            if notice:
                print(notice)
                notices.append(notice)
                dataset = "synthetic_b"
            for start_from in ("pretrained", "scratch"):
                source = pretraining[model]["source"] if start_from == "pretrained" else None
                # a rehearsal goes through torchrun for its first run only: fewer process launches
                nproc = 1 if settings.rehearse and rows else settings.nproc
                out = str(runs / f"{model}-{requested}-{start_from}")
                config = finetune_run_config(model, dataset, source, settings, out, nproc,
                                             requested if notice else None)
                summary = launch(config, nproc=nproc)
                shown = f"{dataset} for {requested}" if notice else dataset
                curves[f"{model}/{shown}/{start_from}"] = read_history(config.out_dir)
                rows.append(_row(model, dataset, requested, start_from, config, summary))
    conditions = _conditions(settings, device, rows, notices, time.perf_counter() - start)
    return TransferResult(conditions, settings.finetune_recipe, _asked_steps(settings),
                          pretraining, rows, curves, notices)


def _row(model: str, dataset: str, requested: str, start_from: str, config, summary: dict) -> dict:
    paper = paper_table("table8")["top1"].get(model, {}).get(dataset)
    return {"model": model, "dataset": dataset, "requested": requested, "start": start_from,
            "epochs": config.epochs, "top1": summary["top1"], "paper_top1": paper,
            **_run_facts(config.out_dir), "run_dir": config.out_dir,
            "accuracy": FINAL_EMA if summary["top1_weights"] == "EMA" else FINAL_RAW}


def _conditions(settings, device, rows: list[dict], notices: list[str], seconds: float):
    """What the fine-tunings ran under: the first run's batch arithmetic, lr and steps (every row
    keeps its own), and the differences from the recipe a profile asked for."""
    first, last = rows[0], rows[-1]
    cached = bool(settings.cache) and any(r["dataset"] in CACHEABLE for r in rows)
    return measure_conditions(
        device, settings.profile, settings.rehearse, processes=first["processes"],
        model=",".join(settings.models), dataset=",".join(sorted({r["dataset"] for r in rows})),
        dataset_requested=",".join(settings.transfer_sets), fallback_notice=" ".join(notices),
        num_classes=last["num_classes"], val_images=last["val_images"],
        recipe=f"finetune {settings.finetune_recipe}", seeds=[0],
        steps_per_epoch=settings.max_steps_per_epoch, global_batch=first["global_batch"],
        optimizer_steps=first["optimizer_steps"], lr=first["lr"], lr_schedule=first["lr_schedule"],
        differences=_differences(settings), crops_from_cache=cached, accuracy=last["accuracy"],
        wall_clock_s=seconds)


def _recipe_steps(settings) -> int:
    return finetune_recipe(settings.finetune_recipe, settings.transfer_sets[0])["steps"]


def _asked_steps(settings) -> int:
    """The fine-tuning steps the settings ask for: theirs, or the recipe's."""
    return settings.steps or _recipe_steps(settings)


def _differences(settings) -> list[str]:
    """A step count other than the recipe's (the paper's 10,000) is not the paper's setting."""
    if settings.steps is not None and settings.steps != _recipe_steps(settings):
        return [f"{settings.steps} fine-tuning steps, the recipe's: {_recipe_steps(settings)}"]
    return []


def _pretrain(model: str, settings, runs: Path, device) -> dict:
    """Where the pretrained weights come from: a short pretraining here (``init_from="pretrain"``),
    ImageNet-21k (section 5.2), or a given source (torchvision's ImageNet weights, a checkpoint)."""
    if settings.init_from == "pretrain":
        return _pretrain_here(model, settings, runs)
    if settings.init_from == "imagenet21k":
        out = runs / f"imagenet21k-{model}"
        shorter = {"epochs": 1} if settings.rehearse else {}  # a rehearsal: 1 of the official 60
        config = imagenet21k_config(model, settings.data_root, str(out),
                                    global_batch=settings.pretrain_global_batch,
                                    processes=settings.nproc, batch_size=settings.batch_size,
                                    device=str(device), workers=settings.workers,
                                    max_steps_per_epoch=settings.max_steps_per_epoch, **shorter)
        summary = launch(config, nproc=settings.nproc)
        return {"source": str(out / "last.pt"), "top1": summary["top1"], "dataset": "imagenet21k",
                **_run_facts(config.out_dir)}
    return {"source": settings.init_from, "top1": None, "dataset": None}


def _pretrain_here(model: str, settings, runs: Path) -> dict:
    """A short pretraining on ``settings.pretrain_dataset`` (its classes the transfer set lacks)."""
    dataset, notice = dataset_or_fallback(settings.pretrain_dataset, settings.data_root,
                                          download=settings.download)
    fields = data_fields(settings, dataset, subset=False)
    if dataset.startswith("synthetic"):  # the six shapes the transfer task lacks
        fields["synthetic"] = {"num_samples": 2000, "num_classes": 6}
    classes = None if dataset.startswith("synthetic") else settings.pretrain_classes
    batch_size, accumulate = _pretrain_batch(settings, 1)
    out = runs / f"pretrain-{model}"
    config = TrainConfig(model=model, epochs=settings.pretrain_epochs, recipe="simple",
                         batch_size=batch_size, accumulate=accumulate,
                         image_size=settings.image_size, eval_size=settings.image_size,
                         classes=classes, out_dir=str(out), **fields)
    summary = launch(config)
    return {"source": str(out / "last.pt"), "top1": summary["top1"], "dataset": dataset,
            "classes": classes, "epochs": settings.pretrain_epochs, "fallback_notice": notice,
            **_run_facts(config.out_dir)}


def _pretrain_batch(settings, processes: int) -> tuple[int, int]:
    """(batch_size, accumulate) of a pretraining here: the settings' global batch, or batch_size
    per process."""
    if settings.pretrain_global_batch is None:
        return settings.batch_size, 1
    return split_global_batch(settings.pretrain_global_batch, processes, settings.batch_size)


def finetune_run_config(model: str, dataset: str, source: str | None, settings, out_dir: str,
                        nproc: int, stand_in_for: str | None = None,
                        train_size: int | None = None) -> TrainConfig:
    """The fine-tuning (or from-scratch) run of ``model`` on ``dataset`` by ``nproc`` processes with
    notebook 06's ``settings`` (``train_size``: the training split's length, None: read from the
    data set). A rehearsal's built-in stand-in for a transfer set it cannot read (``stand_in_for``)
    is as many global batches long as that set (at most ``train_samples`` images): Flowers102's
    2,040 images at 512 become 32 at 8."""
    options = {k: v for k, v in dict(lr=settings.lr, image_size=settings.image_size).items()
               if v is not None}
    fields = data_fields(settings, dataset)
    del fields["dataset"]  # finetune_config's own argument
    if not dataset.startswith("synthetic"):
        fields["classes"] = settings.transfer_classes
    elif settings.rehearse and settings.global_batch and stand_in_for in TRAIN_IMAGES:
        real = math.ceil(TRAIN_IMAGES[stand_in_for] / REHEARSAL_BATCH_SCALE)
        fields["synthetic"] = {**fields["synthetic"],
                               "num_samples": min(real, settings.train_samples or real)}
    if options.get("image_size"):
        options["eval_size"] = options["image_size"]
    # the same global batch on any number of processes
    wanted = settings.global_batch or settings.batch_size * settings.nproc
    rehearsal = {"min_epochs": 0} if settings.rehearse else {}  # its 2 steps, not 15 epochs
    return finetune_config(model, dataset, source, finetune_recipe=settings.finetune_recipe,
                           steps=settings.steps, global_batch=wanted, processes=nproc,
                           batch_size=settings.batch_size, out_dir=out_dir, train_size=train_size,
                           **rehearsal, **fields, **options)


def _run_facts(out_dir: str) -> dict:
    """A run's data and batch arithmetic as its ``config.json`` recorded them."""
    recorded = json.loads((Path(out_dir) / "config.json").read_text())
    config = recorded["config"]
    return {"train_images": recorded["train_images"], "val_images": recorded["val_images"],
            "num_classes": config["num_classes"], "processes": recorded["world_size"],
            "global_batch": recorded["global_batch"], "batch_size": config["batch_size"],
            "accumulate": config["accumulate"], **schedule_facts(recorded)}
