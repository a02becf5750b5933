"""Training-aware architecture search (paper section 3.3): run the search, read what the best
candidates choose, and check the proxy ranking against a longer training of a few candidates."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...data.datasets import CACHEABLE, dataset_or_fallback
from ...engine.config import TrainConfig
from ...engine.devices import pick_device
from ...engine.launch import launch
from ...paper.nas import SPACES, pareto_front
from ..nas_driver import failures, run_search, summarize
from .common import data_fields
from .results import FINAL_RAW, Result, measure_conditions, result_type

__all__ = ["NasResult", "nas_search", "spearman", "top_choices", "sensitivity"]


@result_type
@dataclass
class NasResult(Result):
    space: str = ""
    trials: int = 0
    # completed candidates, best reward first (accuracy in %)
    ranked: list[dict] = field(default_factory=list)
    pareto_trials: list[int] = field(default_factory=list)
    # per stage: fraction fused, kernel 3, mean expansion
    top_choices: list[dict] = field(default_factory=list)
    # top trial and rank correlation for other w, v
    sensitivity: list[dict] = field(default_factory=list)
    # trial, proxy accuracy, longer-training accuracy
    retrained: list[dict] = field(default_factory=list)
    proxy_vs_longer_spearman: float | None = None
    failures: list[dict] = field(default_factory=list)


def spearman(a: list, b: list) -> float:
    """Spearman rank correlation of two orderings of the same items (no ties), in [-1, 1]."""
    n = len(a)
    if n < 2 or sorted(map(str, a)) != sorted(map(str, b)):
        return float("nan")
    rank_b = {item: i for i, item in enumerate(b)}
    return 1 - 6 * sum((i - rank_b[item]) ** 2 for i, item in enumerate(a)) / (n * (n * n - 1))


def top_choices(ranked: list[dict], stages: int) -> list[dict]:
    """What the top quarter (at least 3) of the candidates chose, per stage: EfficientNetV2-S's own
    choices are Fused-MBConv early, small expansions there, 3x3 kernels everywhere."""
    top = ranked[: max(3, len(ranked) // 4)]
    return [{"stage": i + 1, "fused": sum(r[f"s{i}_op"] == "Fused-MBConv" for r in top) / len(top),
             "kernel3": sum(r[f"s{i}_kernel"] == 3 for r in top) / len(top),
             "mean_expansion": sum(r[f"s{i}_expand"] for r in top) / len(top)}
            for i in range(stages)]


def sensitivity(study, ranked: list[dict]) -> list[dict]:
    """The top candidate, and the rank correlation with the default ranking, for other exponents w
    and v."""
    default = [r["trial"] for r in ranked]
    rows = []
    for w in (0.0, -0.07, -0.15, -0.3):
        for v in (0.0, -0.05, -0.15):
            order = [r["trial"] for r in summarize(study, top=0, w=w, v=v)]
            rows.append({"w": w, "v": v, "top_trial": order[0],
                         "spearman_vs_default": spearman(order, default)})
    return rows


def nas_search(settings, output_dir: str) -> NasResult:
    """Run (or resume) the search of notebook 04, then retrain ``retrain_top`` candidates for
    ``retrain_epochs``."""
    start, device = time.perf_counter(), pick_device(settings.device)
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root,
                                          download=settings.download)
    if notice:
        print(notice)
    template = _template(settings, dataset)
    study = run_search(f"{output_dir}/04_nas_search", template, settings.trials,
                       space=settings.space, storage=settings.storage, sampler=settings.sampler,
                       seed=settings.seed)
    ranked = summarize(study, top=0)
    retrained = _retrain(ranked, settings, template, output_dir) if settings.retrain_top else []
    by_proxy = [r["trial"] for r in sorted(retrained, key=lambda r: -r["proxy_accuracy"])]
    by_longer = [r["trial"] for r in sorted(retrained, key=lambda r: -r["longer_accuracy"])]
    num_classes = ((settings.num_classes or 10) if dataset.startswith("synthetic")
                   else _classes(dataset, settings))
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model=f"NAS space {settings.space}", dataset=dataset,
                                    dataset_requested=settings.dataset, fallback_notice=notice,
                                    num_classes=num_classes, epochs=settings.epochs,
                                    image_sizes=[settings.image_size],
                                    eval_size=settings.image_size, recipe=settings.recipe,
                                    seeds=[settings.seed], accuracy=FINAL_RAW,
                                    steps_per_epoch=settings.max_steps_per_epoch,
                                    global_batch=template.batch_size * template.accumulate,
                                    crops_from_cache=bool(template.cache) and dataset in CACHEABLE,
                                    wall_clock_s=time.perf_counter() - start)
    return NasResult(conditions, settings.space, settings.trials, ranked,
                     [r["trial"] for r in pareto_front(ranked)],
                     top_choices(ranked, len(SPACES[settings.space].backbone)),
                     sensitivity(study, ranked), retrained,
                     spearman(by_proxy, by_longer) if len(retrained) >= 2 else None,
                     failures(study))


def _template(settings, dataset: str) -> TrainConfig:
    """The proxy training: reduced size, evaluated at that size (section 3.3)."""
    fields = dict(data_fields(settings, dataset), quiet=True)
    return TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size,
                       image_size=settings.image_size, eval_size=settings.image_size,
                       recipe=settings.recipe, seed=settings.seed, **fields)


def _retrain(ranked: list[dict], settings, template: TrainConfig, output_dir: str) -> list[dict]:
    """Retrain candidates spread evenly over the proxy-accuracy ranking (so that the check sees good
    and bad ones)."""
    by_accuracy = sorted(ranked, key=lambda r: -r["accuracy"])
    k = min(settings.retrain_top, len(by_accuracy))
    picks = [by_accuracy[round(i * (len(by_accuracy) - 1) / max(1, k - 1))] for i in range(k)]
    space, rows = SPACES[settings.space], []
    for row in {r["trial"]: r for r in picks}.values():
        blocks = tuple(row["blocks"].split())
        config = dataclasses.replace(template, model=space.base_model,
                                     model_overrides=space.overrides(blocks),
                                     epochs=settings.retrain_epochs, quiet=True,
                                     out_dir=str(Path(output_dir) / "04_nas_retrain"
                                                 / f"trial{row['trial']}"))
        rows.append({"trial": row["trial"], "proxy_accuracy": row["accuracy"],
                     "longer_accuracy": launch(config)["top1"], "blocks": row["blocks"]})
    return rows


def _classes(dataset: str, settings) -> int | None:
    from ...data.datasets import get_dataset

    try:
        return len(get_dataset(dataset, "train", root=settings.data_root).classes)
    except (ValueError, OSError):
        return None


