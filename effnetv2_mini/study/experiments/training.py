"""Training with the paper's recipe (section 5.1) and, optionally, progressive learning
(section 4): Table 7's accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ...data.datasets import dataset_or_fallback, is_built_in
from ...engine.build import resolve
from ...engine.config import TrainConfig, global_batch
from ...engine.launch import launch
from ...engine.rundir import read_history
from ...engine.schedule_spec import parse_schedule
from ...paper.progressive import ProgressiveSchedule
from .common import data_fields, known_differences, schedule_facts
from .results import FINAL_EMA, FINAL_RAW, Result, measure_conditions, result_type

__all__ = ["TrainingResult", "train_model", "training_config", "training_run", "run_conditions"]


@result_type
@dataclass
class TrainingResult(Result):
    """One training run: the final top-1 (EMA weights when the run keeps an EMA), its per-epoch
    history and the resolved recipe."""

    top1: float | None = None
    top5: float | None = None
    history: list[dict] = field(default_factory=list)  # metrics.jsonl
    config: dict = field(default_factory=dict)  # every resolved setting
    schedule: dict | None = None  # the progressive schedule, if any
    run_dir: str = ""


def training_config(settings, dataset: str, out_dir: str) -> TrainConfig:
    """The :class:`TrainConfig` notebook 02's settings describe."""
    return TrainConfig(model=settings.model, epochs=settings.epochs, batch_size=settings.batch_size,
                       accumulate=settings.accumulate, image_size=settings.image_size,
                       eval_size=settings.eval_size, recipe=settings.recipe,
                       randaug_magnitude=settings.randaug_magnitude,
                       mixup_alpha=settings.mixup_alpha, ema_decay=settings.ema_decay,
                       seed=settings.seed, out_dir=out_dir, **data_fields(settings, dataset))


def training_run(settings, dataset: str,
                 out_dir: str) -> tuple[TrainConfig, ProgressiveSchedule | None]:
    """The settings notebook 02 trains with, every recipe rule applied
    (:func:`effnetv2_mini.engine.build.resolve`, as the command line and
    :func:`~effnetv2_mini.engine.loop.fit` do), and its progressive schedule if any."""
    config = training_config(settings, dataset, out_dir)
    schedule = (parse_schedule(settings.progressive, resolve(config)[0]) if settings.progressive
                else None)
    return resolve(config, schedule)[0], schedule


def train_model(settings, output_dir: str) -> TrainingResult:
    """Train ``settings.model`` (notebook 02) into ``output_dir/02_training_run`` (resumes; a
    finished run is read back), with the progressive schedule ``settings.progressive`` if one is
    given."""
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root, settings.download)
    if notice:
        print(notice)
    config = training_config(settings, dataset, str(Path(output_dir) / "02_training_run"))
    schedule = (parse_schedule(settings.progressive, resolve(config)[0]) if settings.progressive
                else None)
    summary = launch(config, nproc=settings.nproc, schedule=schedule)
    return TrainingResult(run_conditions(settings, config, summary, schedule, notice),
                          summary["top1"],
                          summary["final"].get("ema_top5" if summary["top1_weights"] == "EMA"
                                               else "val_top5"),
                          read_history(config.out_dir), _recorded(config.out_dir)["config"],
                          schedule.to_dict() if schedule else None, config.out_dir)


def run_conditions(settings, config: TrainConfig, summary: dict,
                   schedule: ProgressiveSchedule | None, notice: str = "", seeds=None, **more):
    """The conditions of one finished training (read from its run directory)."""
    recorded = _recorded(config.out_dir)
    sizes = (sorted({s.image_size for s in schedule.stages}) if schedule
             else [recorded["config"]["image_size"]])
    return measure_conditions(
        recorded["device"], settings.profile, settings.rehearse, processes=recorded["world_size"],
        model=config.model, dataset=config.dataset,
        dataset_requested=getattr(settings, "dataset", config.dataset), fallback_notice=notice,
        num_classes=recorded["config"]["num_classes"], val_images=recorded.get("val_images"),
        epochs=recorded["config"]["epochs"], image_sizes=sizes,
        eval_size=recorded["config"]["eval_size"], schedule=schedule.source if schedule else None,
        recipe=config.recipe, seeds=list(seeds) if seeds is not None else [config.seed],
        steps_per_epoch=config.max_steps_per_epoch,
        global_batch=global_batch(config, recorded["world_size"]), **schedule_facts(recorded),
        differences=known_differences(config, schedule),
        crops_from_cache=bool(config.cache) and not is_built_in(config.dataset),
        wall_clock_s=summary["wall_time"],
        accuracy=FINAL_EMA if summary["top1_weights"] == "EMA" else FINAL_RAW, **more)


def _recorded(out_dir: str) -> dict:
    """The run's ``config.json``: every resolved setting, the device, the data set's sizes."""
    return json.loads((Path(out_dir) / "config.json").read_text())
