"""Every training of the quick and full plans beside the official code's values: global batch, peak
learning rate, optimizer steps, image sizes and schedule, computed from the profiles with the
experiments' own builders (so the table cannot drift from what the plans run;
tests/test_transfer_plans.py checks docs/paper.md against it).

    python -m reproduce.plan_table            # print the Markdown table
    python -m reproduce.plan_table --write    # replace it in docs/paper.md (between the markers)

Steps are counted as the training loop counts them (whole batches per epoch, one optimizer step per
accumulated group) on the data sets' full training splits
(:data:`effnetv2_mini.data.datasets.TRAIN_IMAGES`)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from effnetv2_mini.data.datasets import TRAIN_IMAGES
from effnetv2_mini.engine.config import TrainConfig, global_batch, optimizer_steps_per_epoch
from effnetv2_mini.engine.finetune import imagenet21k_config
from effnetv2_mini.engine.schedule_spec import parse_schedule
from effnetv2_mini.models import default_sizes
from effnetv2_mini.study.experiments.progressive import base_config, comparison_schedule
from effnetv2_mini.study.experiments.training import training_config
from effnetv2_mini.study.experiments.transfer import finetune_run_config
from effnetv2_mini.study.profiles import notebook_profile

from .plans import ROOT, load_plan

__all__ = ["plan_rows", "markdown", "PLANS", "START", "END"]

PLANS = ("quick", "full", "full_transfer", "full_imagenet21k")
START, END = "<!-- plan-table:start -->", "<!-- plan-table:end -->"
DOC = ROOT / "docs" / "paper.md"

# The official values (google/automl efficientnetv2 at 6a54c87). ImageNet: batch 4096
# (hparams.py:262), lr_base 0.016 per 256 (hparams.py:251, main.py:157), 350 epochs (hparams.py:247)
# of the 1,256,144-image train split (datasets.py:85): 350 x 1,256,144 // 4096 = 107,336 steps
# (main.py:381-383), exponential x0.97 every 2.4 epochs after 5 warm-up epochs (hparams.py:250-254).
_IMAGENET = {"global batch": 4096, "lr": 0.256, "steps": 107_336, "lr decay": "exponential"}
# ImagenetFt (datasets.py:698-727): batch 512, lr_base 0.0005 per 256, max(min_steps 10,000, 15
# epochs), constant lr (the paper: cosine, 10,000 steps; on ImageNet 15 epochs), no stages (isize
# 1.0 of the eval size); on ImageNet 15 x 1,256,144 // 512 = 36,801 steps (main.py:381-383)
_TABLE8 = {"global batch": 512, "lr": 0.001, "steps": 10_000, "progressive": "none"}
_IMAGENET_FT = {"global batch": 512, "lr": 0.001, "steps": 36_801, "progressive": "none"}
# ImageNet21k (datasets.py:666-695): batch 4096, lr_base 0.008, cosine, 224 px, no stages; 60 epochs
# of 12,720,275 images (datasets.py:461): 186,332 steps
_IMAGENET21K = {"global batch": 4096, "lr": 0.128, "steps": "186,332 (60 epochs)",
                "sizes": "224 / 224", "lr decay": "cosine", "progressive": "none"}
# Own sizes: effnetv2_configs.py:192-197 (V2 train / eval), :106-113 and :133 (V1: train 0.8 of
# eval, no stages); paper Table 6 for the progressive sizes
_SIZES = {"efficientnetv2_s": "128-300 / 384", "efficientnetv2_m": "128-380 / 480",
          "efficientnetv2_l": "128-380 / 480", "efficientnetv2_xl": "- / 512",
          "efficientnet_b4": "304 / 380", "efficientnet_b7": "480 / 600",
          "resnet50": "224 / 224 (Table 12)"}
# The progressive schedule of the paper's run (Tables 6, 10, 12); "not printed": it names none
_PROGRESSIVE = {"efficientnetv2_s": "paper Table 6", "efficientnetv2_m": "paper Table 6",
                "efficientnetv2_l": "paper Table 6", "efficientnet_b7": "not printed (Table 10)",
                "efficientnet_b4": "not printed (Table 12)", "resnet50": "not printed (Table 12)"}


def _official(kind: str, model: str) -> dict:
    """The official values of a kind of training; fine-tunings train and evaluate at the eval size
    (isize=1.0)."""
    values = dict({"imagenet": _IMAGENET, "table8": _TABLE8, "imagenet_ft": _IMAGENET_FT}[kind])
    if kind == "imagenet":
        values.update(sizes=_SIZES.get(model, "-"), progressive=_PROGRESSIVE.get(model, "-"))
    else:
        size = default_sizes(model)[1]
        values["sizes"] = f"{size} / {size}"
    return values


def _row(plan: str, notebook: str, run: str, config: TrainConfig, processes: int, schedule=None,
         official: dict | None = None, count: int = 1) -> dict:
    """One training (or ``count`` alike) as the loop would run it: batch arithmetic, lr, steps,
    sizes, schedule."""
    resolved = config.resolved()
    images = TRAIN_IMAGES.get(config.dataset)
    batch = global_batch(config, processes)
    epochs = schedule.total_epochs if schedule else config.epochs
    steps = f"{epochs} epochs"
    if images:
        steps = epochs * optimizer_steps_per_epoch(images, config.batch_size, processes,
                                                   config.accumulate)
    sizes = sorted({s.image_size for s in schedule.stages}) if schedule else [resolved.image_size]
    eval_size = schedule.eval_size if schedule else resolved.eval_size
    lr = resolved.lr if resolved.lr is not None else resolved.base_lr * batch / 256
    shown = f"{sizes[0]}-{sizes[-1]}" if len(sizes) > 1 else str(sizes[0])
    return {"plan": plan, "nb": notebook, "run": run + (f" (x{count})" if count > 1 else ""),
            "data": config.dataset, "global batch": batch,
            "per process": f"{config.batch_size} x {processes} x {config.accumulate}", "lr": lr,
            "steps": steps, "sizes": f"{shown} / {eval_size}", "lr decay": resolved.schedule,
            "progressive": schedule.source if schedule else "none", "official": official or {}}


def _training(plan: str, s) -> list[dict]:  # 02
    config = training_config(s, s.dataset, "plan")
    schedule = parse_schedule(s.progressive, config.resolved()) if s.progressive else None
    return [_row(plan, "02", s.model, config, s.nproc, schedule, _official("imagenet", s.model))]


def _efficiency(plan: str, s) -> list[dict]:  # 03: Table 3's short trainings
    if not s.proxy_epochs:
        return []
    config = TrainConfig(model="efficientnet_b4", dataset=s.dataset, epochs=s.proxy_epochs,
                         batch_size=s.proxy_batch_size, image_size=s.proxy_image_size,
                         eval_size=s.proxy_eval_size, recipe="paper")
    return [_row(plan, "03", "B4 fused variants", config, 1, count=4)]


def _nas(plan: str, s) -> list[dict]:  # 04: the search's proxy trainings
    config = TrainConfig(dataset=s.dataset, epochs=s.epochs, batch_size=s.batch_size,
                         image_size=s.image_size, eval_size=s.image_size, recipe=s.recipe)
    official = {"steps": "about 10 epochs each", "sizes": "reduced (section 3.3)"}
    return [_row(plan, "04", f"search space {s.space}", config, 1, official=official,
                 count=s.trials)]


def _progressive(plan: str, s) -> list[dict]:  # 05: Table 5's grid and the comparison
    base = base_config(s, s.dataset, "plan")
    largest = max(s.grid_sizes)
    grid = dataclasses.replace(base, epochs=s.grid_epochs, image_size=largest, eval_size=largest)
    cells = len(s.grid_sizes) * len(s.grid_magnitudes) * len(s.grid_seeds)
    rows = [_row(plan, "05", f"Table 5 grid, largest size {largest}", grid, 1, count=cells,
                 official={"sizes": "128 / 192 / 300"})]
    rows.append(_row(plan, "05", f"{s.model} variants", base, s.nproc, comparison_schedule(s),
                     _official("imagenet", s.model), count=len(s.variants) * len(s.seeds)))
    return rows


def _transfer(plan: str, s) -> list[dict]:  # 06
    rows = []
    for model in s.models:
        if s.init_from == "imagenet21k":
            config = imagenet21k_config(model, "data", "plan", global_batch=s.pretrain_global_batch,
                                        processes=s.nproc, batch_size=s.batch_size)
            rows.append(_row(plan, "06", f"{model} ImageNet-21k", config, s.nproc,
                             official=_IMAGENET21K))
        for dataset in s.transfer_sets:
            config = finetune_run_config(model, dataset, s.init_from, s, "plan", s.nproc,
                                         train_size=TRAIN_IMAGES[dataset])
            official = _official("imagenet_ft" if dataset == "imagenet" else "table8", model)
            # the paper's cosine (Table 8, section 5.2), the official code's constant lr
            official["lr decay"] = "cosine" if s.finetune_recipe == "paper" else "constant"
            rows.append(_row(plan, "06", f"{model} fine-tuned", config, s.nproc,
                             official=official, count=2))
    return rows


def _faster(plan: str, s) -> list[dict]:  # 07: each network fixed and with Algorithm 1
    rows = []
    for model in s.models:
        config = TrainConfig(model=model, dataset=s.dataset, batch_size=s.batch_size,
                             accumulate=s.accumulate, recipe=s.recipe)
        rows.append(_row(plan, "07", f"{model} fixed + progressive", config, s.nproc,
                         comparison_schedule(s, model=model), _official("imagenet", model),
                         count=2 * len(s.seeds)))
    return rows


_BUILDERS = {"02_training": _training, "03_training_efficiency": _efficiency, "04_nas": _nas,
             "05_progressive_learning": _progressive, "06_transfer": _transfer,
             "07_faster_training": _faster}


def plan_rows(plan: str) -> list[dict]:
    """Every training of ``plan`` (its notebooks in their profiles), one row per kind of run."""
    rows = []
    for entry in load_plan(plan).entries:
        if entry.name in _BUILDERS:
            settings = notebook_profile(entry.name, entry.parameters.get("profile"))
            rows += _BUILDERS[entry.name](plan, settings)
    return rows


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cell(ours, official=None) -> str:
    """Ours, and the official value in brackets where it differs."""
    if official is None or _shown(official) == _shown(ours):
        return _shown(ours)
    return f"{_shown(ours)} ({_shown(official)})"


def markdown(plans=PLANS) -> str:
    """The table: one row per kind of training; "ours (official)" where the two differ."""
    head = ["plan", "nb", "run", "data", "global batch", "per process", "lr", "steps", "sizes",
            "lr decay", "progressive"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for plan in plans:
        for row in plan_rows(plan):
            cells = [_cell(row[k], row["official"].get(k)) for k in head]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _write(path: Path = DOC) -> None:
    text = path.read_text()
    before, rest = text.split(START)
    _, after = rest.split(END)
    path.write_text(f"{before}{START}\n{markdown()}{END}{after}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true",
                        help=f"replace the table in {DOC.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    _write() if args.write else print(markdown(), end="")


if __name__ == "__main__":
    main()
