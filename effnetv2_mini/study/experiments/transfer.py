"""Transfer learning (paper section 5.3, Table 8; ImageNet-21k pretraining, section 5.2): fine-tuning a pretrained
model against training the same model from scratch on the same images for the same number of steps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...data.datasets import dataset_or_fallback
from ...engine.config import TrainConfig
from ...engine.devices import pick_device
from ...engine.launch import launch
from ...engine.rundir import read_history
from ...paper.transfer import finetune_config, imagenet21k_config
from ..reference import paper_table
from .common import data_fields
from .results import FINAL_EMA, FINAL_RAW, Result, measure_conditions, result_type

__all__ = ["TransferResult", "transfer"]


@result_type
@dataclass
class TransferResult(Result):
    finetune_recipe: str = ""
    steps: int = 0
    pretraining: dict = field(default_factory=dict)  # model -> {source, top1, dataset, classes}
    rows: list[dict] = field(default_factory=list)  # model, dataset, start, epochs, top1, paper_top1, train_images
    curves: dict = field(default_factory=dict)  # "model/data set/start" -> metrics rows
    fallback_notices: list[str] = field(default_factory=list)


def transfer(settings, output_dir: str) -> TransferResult:
    """Notebook 06: for each model, pretrain (or take torchvision's or ImageNet-21k weights), then for each transfer
    set fine-tune from them and train from scratch with the same recipe, steps and images."""
    start, device = time.perf_counter(), pick_device(settings.device)
    runs = Path(output_dir) / "06_transfer_runs"
    pretraining = {model: _pretrain(model, settings, runs, device) for model in settings.models}
    rows, curves, notices = [], {}, []
    for model in settings.models:
        for requested in settings.transfer_sets:
            dataset, notice = dataset_or_fallback(requested, settings.data_root, download=settings.download)
            if notice:
                print(notice)
                notices.append(notice)
                dataset = "synthetic_b"
            for start_from, source in (("pretrained", pretraining[model]["source"]), ("scratch", None)):
                config = _finetune(model, dataset, source, settings, str(runs / f"{model}-{dataset}-{start_from}"))
                summary = launch(config, nproc=settings.nproc)
                curves[f"{model}/{dataset}/{start_from}"] = read_history(config.out_dir)
                rows.append({"model": model, "dataset": dataset, "start": start_from, "epochs": config.epochs,
                             "top1": summary["top1"], "paper_top1": paper_table("table8")["top1"].get(model, {}).get(dataset),
                             **_run_facts(config.out_dir), "run_dir": config.out_dir,
                             "accuracy": FINAL_EMA if summary["top1_weights"] == "EMA" else FINAL_RAW})
    conditions = measure_conditions(device, settings.profile, settings.rehearse, processes=settings.nproc,
                                    model=",".join(settings.models), dataset=",".join(sorted({r["dataset"] for r in rows})),
                                    dataset_requested=",".join(settings.transfer_sets),
                                    fallback_notice=" ".join(notices), num_classes=rows[-1]["num_classes"],
                                    val_images=rows[-1]["val_images"], recipe=f"finetune {settings.finetune_recipe}",
                                    seeds=[0], steps_per_epoch=settings.max_steps_per_epoch,
                                    accuracy=rows[-1]["accuracy"], wall_clock_s=time.perf_counter() - start)
    return TransferResult(conditions, settings.finetune_recipe, settings.steps, pretraining, rows, curves, notices)


def _pretrain(model: str, settings, runs: Path, device) -> dict:
    """Where the pretrained weights come from: a short pretraining here (``init_from="pretrain"``), ImageNet-21k
    (section 5.2), or a given source (torchvision's ImageNet weights, a checkpoint)."""
    if settings.init_from == "pretrain":
        dataset, notice = dataset_or_fallback(settings.pretrain_dataset, settings.data_root, download=settings.download)
        fields = data_fields(settings, dataset, subset=False)
        if dataset.startswith("synthetic"):
            fields["synthetic"] = {"num_samples": 2000, "num_classes": 6}  # the six shapes the transfer task lacks
        classes = None if dataset.startswith("synthetic") else settings.pretrain_classes
        config = TrainConfig(model=model, epochs=settings.pretrain_epochs, recipe="simple", batch_size=settings.batch_size,
                             image_size=settings.image_size, eval_size=settings.image_size, classes=classes,
                             out_dir=str(runs / f"pretrain-{model}"), **fields)
        summary = launch(config)
        return {"source": str(runs / f"pretrain-{model}" / "last.pt"), "top1": summary["top1"], "dataset": dataset,
                "classes": classes, "epochs": settings.pretrain_epochs, "fallback_notice": notice}
    if settings.init_from == "imagenet21k":
        config = imagenet21k_config(model, settings.data_root, str(runs / f"imagenet21k-{model}"), device=str(device),
                                    workers=settings.workers, max_steps_per_epoch=settings.max_steps_per_epoch)
        summary = launch(config, nproc=settings.nproc)
        return {"source": str(runs / f"imagenet21k-{model}" / "last.pt"), "top1": summary["top1"], "dataset": "imagenet21k"}
    return {"source": settings.init_from, "top1": None, "dataset": None}


def _finetune(model: str, dataset: str, source: str | None, settings, out_dir: str) -> TrainConfig:
    options = {k: v for k, v in dict(batch_size=settings.batch_size, lr=settings.lr, image_size=settings.image_size).items()
               if v is not None}
    fields = data_fields(settings, dataset)
    del fields["dataset"]  # finetune_config's own argument
    if not dataset.startswith("synthetic"):
        fields["classes"] = settings.transfer_classes
    if options.get("image_size"):
        options["eval_size"] = options["image_size"]
    return finetune_config(model, dataset, source, finetune_recipe=settings.finetune_recipe, steps=settings.steps,
                           out_dir=out_dir, **fields, **options)


def _run_facts(out_dir: str) -> dict:
    recorded = json.loads((Path(out_dir) / "config.json").read_text())
    return {"train_images": recorded["train_images"], "val_images": recorded["val_images"],
            "num_classes": recorded["config"]["num_classes"]}


