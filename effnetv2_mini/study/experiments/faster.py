"""Faster training, measured: the paper's headline (abstract, Figure 1a; Tables 7, 10, 11 and 12;
section 6).

- :func:`time_to_accuracy`: pairs of trainings on the same data, epochs and recipe, each network
  once at a fixed size and once with progressive learning (Algorithm 1, section 4), seeds
  interleaved, with every epoch's top-1 and cumulative training time. From them: how long
  EfficientNetV2 with Algorithm 1 needs to reach the final accuracy of EfficientNet (V1) trained
  at a fixed size (Figure 1a, Tables 7 and 10: several times faster), and what progressive
  learning does to each network (Table 12: 1.4x-2.8x faster, accuracy never lower; ResNets via
  torchvision, :mod:`effnetv2_mini.baselines`).
- :func:`table11_speed`: training and inference images/s of V2-B0..B3 beside V1-B0..B3 on this
  machine, with Table 11's V100 numbers beside them.

The pure functions (:func:`time_to_reach`, :func:`progressive_effect`,
:func:`common_accuracy_times`, :func:`v2_progressive_time_to_v1_fixed_accuracy`) work on the
runs' rows alone, so that a reader can check them on numbers of their own.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...baselines import is_baseline
from ...data.datasets import dataset_or_fallback, is_built_in
from ...engine.config import TrainConfig
from ...engine.devices import pick_device
from ...engine.launch import launch
from ...engine.rundir import read_history, reported_top1
from ...measure import benchmark_throughput
from ...models import build_model
from ...paper.configs import get_config
from ...paper.progressive import variant
from ...zoo import model_counts
from ..profiles import FasterProfile, notebook_profile
from ..reference import paper_table
from .common import data_fields, known_differences, schedule_facts
from .progressive import comparison_schedule
from .results import Result, measure_conditions, result_type
from .training import run_conditions

__all__ = ["faster_settings", "TimeToAccuracyResult", "Table11Result", "time_to_accuracy",
           "table11_speed", "time_to_reach", "progressive_effect", "common_accuracy_times",
           "pair_times", "v2_progressive_time_to_v1_fixed_accuracy", "generation", "TABLE11_PAIRS",
           "speed_probe", "choose_regularization", "with_chosen"]

RUNS_PER_MODEL = ("fixed", "progressive")  # each (seed, model): fixed size first, then Algorithm 1
TABLE11_PAIRS = [(f"efficientnetv2_b{i}", f"efficientnet_b{i}") for i in range(4)]


def faster_settings(profile: str | None = None, rehearse: bool = False,
                    **overrides) -> FasterProfile:
    """Notebook 07's settings (``study.profiles.notebook_profile("07_faster_training", ...)``) with
    ``overrides``."""
    return notebook_profile("07_faster_training", profile, rehearse, **overrides)


@result_type
@dataclass
class TimeToAccuracyResult(Result):
    """Every run (model, variant, seed, training order, final top-1, training seconds, per-epoch
    curve) and what they say: per model the effect of progressive learning, per pair the time to
    a common accuracy, and the headline ratio. Times are the epochs' own training seconds (data
    loading included, evaluation excluded)."""

    models: list[str] = field(default_factory=list)
    v2_model: str | None = None
    v1_model: str | None = None
    # model -> its progressive schedule (the fixed run: its last stage)
    schedules: dict = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    # model -> progressive_time_ratio, progressive_top1_diff, per_seed
    per_model: dict = field(default_factory=dict)
    pairs: list[dict] = field(default_factory=list)
    v2_progressive_time_to_v1_fixed_accuracy: dict = field(default_factory=dict)
    speed_probes: list = field(default_factory=list)  # images/s before the first run and after each
    # model -> chosen, how, grid (choose_regularization)
    regularization: dict = field(default_factory=dict)


@result_type
@dataclass
class Table11Result(Result):
    """Per size (B0..B3): V2's and V1's training and inference images/s (median, and the range of
    the timed repeats), their ratios, and Table 11's V100 numbers of the paper's nearest pair."""

    batch_size: int = 0
    rows: list[dict] = field(default_factory=list)


# ---- the pure part: rows in, numbers out
# ------------------------------------------------------------------------

def time_to_reach(curve: list[dict], target: float) -> float | None:
    """Cumulative training seconds (``wall_time``) at the end of the first epoch whose ``top1`` >=
    ``target``; None if none does. No interpolation: an epoch's accuracy is known only at its
    end. Epochs not evaluated (``top1`` None) are skipped."""
    for point in curve:
        if point.get("top1") is not None and point["top1"] >= target:
            return point["wall_time"]
    return None


def _run(rows: list[dict], model: str, name: str, seed: int) -> dict | None:
    return next((r for r in rows
                 if r["model"] == model and r["variant"] == name and r["seed"] == seed), None)


def _seeds(rows: list[dict]) -> list[int]:
    return list(dict.fromkeys(r["seed"] for r in rows))


def _mean(values: list) -> float | None:
    return statistics.mean(values) if values and None not in values else None


def progressive_effect(rows: list[dict]) -> dict[str, dict]:
    """Per model (Table 12): ``progressive_time_ratio`` (progressive / fixed training seconds) and
    ``progressive_top1_diff`` (progressive minus fixed final top-1, points), each the mean over
    seeds, and ``per_seed``."""
    effect = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        per_seed = []
        for seed in _seeds(rows):
            fixed, prog = _run(rows, model, "fixed", seed), _run(rows, model, "progressive", seed)
            if fixed is None or prog is None:
                continue
            diff = (prog["final_top1"] - fixed["final_top1"]
                    if None not in (prog["final_top1"], fixed["final_top1"]) else None)
            ratio = prog["train_seconds"] / fixed["train_seconds"]
            per_seed.append({"seed": seed, "time_ratio": ratio, "top1_diff": diff,
                             "fixed_top1": fixed["final_top1"],
                             "progressive_top1": prog["final_top1"],
                             "fixed_seconds": fixed["train_seconds"],
                             "progressive_seconds": prog["train_seconds"]})
        effect[model] = {"progressive_time_ratio": _mean([p["time_ratio"] for p in per_seed]),
                         "progressive_top1_diff": _mean([p["top1_diff"] for p in per_seed]),
                         "per_seed": per_seed}
    return effect


def common_accuracy_times(a: dict, b: dict) -> dict:
    """For two runs: the lower of their final top-1s (``target_top1``), the training seconds each
    needs to first reach it (``a_seconds``, ``b_seconds``; see :func:`time_to_reach`) and
    ``ratio`` = b's / a's."""
    if a["final_top1"] is None or b["final_top1"] is None:
        return {"target_top1": None, "a_seconds": None, "b_seconds": None, "ratio": None}
    target = min(a["final_top1"], b["final_top1"])
    a_seconds, b_seconds = time_to_reach(a["curve"], target), time_to_reach(b["curve"], target)
    ratio = b_seconds / a_seconds if a_seconds and b_seconds is not None else None
    return {"target_top1": target, "a_seconds": a_seconds, "b_seconds": b_seconds, "ratio": ratio}


def pair_times(rows: list[dict], v2_model: str | None = None,
               v1_model: str | None = None) -> list[dict]:
    """:func:`common_accuracy_times` for each model's (fixed, progressive) pair per seed, and for
    (V1 fixed, V2 progressive) per seed when both models are given."""
    pairs = []
    for seed in _seeds(rows):
        wanted = [(m, "fixed", m, "progressive") for m in dict.fromkeys(r["model"] for r in rows)]
        if v2_model and v1_model:
            wanted.append((v1_model, "fixed", v2_model, "progressive"))
        for a_model, a_variant, b_model, b_variant in wanted:
            a, b = _run(rows, a_model, a_variant, seed), _run(rows, b_model, b_variant, seed)
            if a is not None and b is not None:
                pairs.append({"seed": seed, "a": f"{a_model} {a_variant}",
                              "b": f"{b_model} {b_variant}", **common_accuracy_times(a, b)})
    return pairs


def v2_progressive_time_to_v1_fixed_accuracy(rows: list[dict], v2_model: str | None,
                                             v1_model: str | None) -> dict:
    """The headline (Figure 1a, Tables 7 and 10): per seed, the training seconds V2 with Algorithm 1
    needs to first reach the V1 fixed-size run's final top-1, divided by that V1 run's training
    seconds (``ratio``; None if V2 never reaches it). ``mean`` is over seeds, None unless every
    seed reached it (``reached`` counts them)."""
    per_seed = []
    for seed in _seeds(rows) if v2_model and v1_model else []:
        v2, v1 = _run(rows, v2_model, "progressive", seed), _run(rows, v1_model, "fixed", seed)
        if v2 is None or v1 is None or v1["final_top1"] is None:
            continue
        seconds = time_to_reach(v2["curve"], v1["final_top1"])
        per_seed.append({"seed": seed, "target_top1": v1["final_top1"],
                         "v1_fixed_seconds": v1["train_seconds"], "v2_progressive_seconds": seconds,
                         "v2_progressive_final_top1": v2["final_top1"],
                         "ratio": seconds / v1["train_seconds"] if seconds is not None else None})
    ratios = [p["ratio"] for p in per_seed]
    return {"v2_model": v2_model, "v1_model": v1_model, "mean": _mean(ratios),
            "reached": sum(r is not None for r in ratios), "seeds": len(per_seed),
            "per_seed": per_seed}


def generation(name: str) -> str | None:
    """"v2" or "v1" for an EfficientNet (a demo model by its blocks: Fused-MBConv stages make it
    V2-style), None for any other network (torchvision's ResNets)."""
    if is_baseline(name):
        return None
    config = get_config(name)
    if config.family in ("v1", "v2"):
        return config.family
    return "v2" if any(stage.fused for stage in config.stages()) else "v1"


# ---- the trainings
# -----------------------------------------------------------------------------------------------

def _pick(models: list[str], wanted: str | None, kind: str) -> str | None:
    if wanted is not None:
        if wanted not in models:
            raise ValueError(f"{kind}_model {wanted!r} is not one of the models {models}")
        return wanted
    return next((m for m in models if generation(m) == kind), None)


def time_to_accuracy(settings: FasterProfile, output_dir: str) -> TimeToAccuracyResult:
    """Train every model of ``settings.models`` at a fixed size and with Algorithm 1 (same data,
    epochs, stages, eval size and recipe; the fixed run uses the last stage's size and
    regularization throughout), for each seed, interleaved (for seed: for model: fixed, then
    progressive) so that a machine's drift hits all alike. First, each network's regularization
    is chosen on photos held out of the training split (:func:`choose_regularization`); a speed
    probe before the first run and after each measures the machine's drift (:func:`speed_probe`).
    Run directories: ``output_dir/time_to_accuracy_runs/<model>-<variant>-s<seed>`` (a rerun
    resumes them; a finished run is read back, so only a first pass keeps the interleaved order)."""
    start = time.perf_counter()
    dataset, notice = dataset_or_fallback(settings.dataset, settings.data_root, settings.download)
    if notice:
        print(notice)
    models = list(settings.models)
    v2_model = _pick(models, settings.v2_model, "v2")
    v1_model = _pick(models, settings.v1_model, "v1")
    runs = Path(output_dir) / "time_to_accuracy_runs"
    chosen = {m: choose_regularization(settings, dataset, m, runs / "baseline_grid")
              for m in models}
    settings = with_chosen(settings, chosen)
    schedules = {m: comparison_schedule(settings, model=m) for m in models}
    rows, last, differences, probes = [], None, {}, [speed_probe(settings)]
    for seed in settings.seeds:
        for model in models:
            for name in RUNS_PER_MODEL:
                config = TrainConfig(model=model, batch_size=settings.batch_size,
                                     accumulate=settings.accumulate, recipe=settings.recipe,
                                     seed=seed,
                                     out_dir=str(runs / f"{model}-{name}-s{seed}"),
                                     **data_fields(settings, dataset))
                run_schedule = variant(schedules[model], name, seed=seed)
                # a rehearsal goes through torchrun for its first run only: the
                # same path, fewer launches
                nproc = 1 if settings.rehearse and rows else settings.nproc
                summary = launch(config, nproc=nproc, schedule=run_schedule)
                rows.append(_run_row(model, name, seed, len(rows), summary, config.out_dir))
                probes.append(speed_probe(settings))
                last = (config, summary, run_schedule)
                differences.update(dict.fromkeys(known_differences(config, run_schedule)))
    conditions = run_conditions(settings, *last, notice, seeds=settings.seeds)
    conditions.model = ",".join(models)
    conditions.schedule = schedules[models[-1]].source
    conditions.image_sizes = sorted({s.image_size for sch in schedules.values()
                                     for s in sch.stages})
    conditions.per_model = {m: {**_model_conditions(s, rows, m), "regularization": chosen[m]}
                            for m, s in schedules.items()}
    if len({s.eval_size for s in schedules.values()}) > 1:
        conditions.eval_size = None  # each network its own: conditions.per_model
    conditions.differences = list(differences)
    conditions.wall_clock_s = time.perf_counter() - start
    as_json = {m: {**s.to_dict(), "stages": [dataclasses.asdict(x) for x in s.stages]}
               for m, s in schedules.items()}
    return TimeToAccuracyResult(conditions, models, v2_model, v1_model, as_json,
                                rows, progressive_effect(rows),
                                pair_times(rows, v2_model, v1_model),
                                v2_progressive_time_to_v1_fixed_accuracy(rows, v2_model, v1_model),
                                probes, chosen)


# ---- the machine's drift and the baselines' regularization
# ----------------------------------------------------------

def speed_probe(settings) -> float:
    """Training images/s of one fixed small step (``demo_v2_tiny`` at 64 px, batch 16; a rehearsal:
    32 px, batch 4) on the runs' device, the best of three short timings (anything else running
    only slows one down): taken before the first run and after each, its spread is the machine's
    drift during the runs (:func:`effnetv2_mini.study.verdict.measured_drift`)."""
    device = pick_device(settings.device)
    size, batch = (32, 4) if settings.rehearse else (64, 16)
    model = build_model("demo_v2_tiny").to(device)
    return max(benchmark_throughput(model, size, batch, mode="train", warmup=1,
                                    repeats=2)["images_per_sec"]
               for _ in range(1 if settings.rehearse else 3))


def choose_regularization(settings, dataset: str, model: str, folder: Path) -> dict:
    """The fixed-size baseline at its best: ``settings.baseline_grid``'s points ([RandAugment
    magnitude, dropout, mixup alpha]) each trained at ``model``'s fixed size (its schedule's last
    size) for ``settings.grid_epochs`` epochs on the training split less
    ``settings.holdout_per_class`` photos per class, and scored on those held-out photos (never
    the validation photos the verdicts read); the best point (the first of equals) is chosen. The
    same budget for every point and network. Without a grid: the ranges' last values, as given (a
    preset such as the paper's Table 6 keeps its own)."""
    schedule = comparison_schedule(settings, model=model)
    last = schedule.stages[-1]
    given = {"randaug_magnitude": last.randaug_magnitude, "dropout": last.dropout,
             "mixup_alpha": last.mixup_alpha}
    own = settings.per_model.get(model, {})
    preset = (own.get("schedule_source") or settings.schedule_source) is not None
    if not settings.baseline_grid or preset:
        given_by = ("the preset schedule's last stage" if preset
                    else "no grid: the ranges' last values")
        return {"chosen": given, "how": f"as given ({given_by})", "grid": []}
    grid = []
    for i, (magnitude, dropout, mixup) in enumerate(settings.baseline_grid):
        point = {"randaug_magnitude": magnitude, "dropout": dropout, "mixup_alpha": mixup}
        data = {**data_fields(settings, dataset), **_grid_subset(settings, dataset)}
        config = TrainConfig(model=model, batch_size=settings.batch_size,
                             accumulate=settings.accumulate, recipe=settings.recipe, seed=0,
                             epochs=settings.grid_epochs, eval_every=settings.grid_epochs,
                             image_size=last.image_size, eval_size=schedule.eval_size,
                             holdout_per_class=settings.holdout_per_class,
                             out_dir=str(folder / f"{model}-{i}"), **point, **data)
        summary = launch(config, nproc=1 if settings.rehearse else settings.nproc)
        grid.append({**point, "holdout_top1": summary["top1"]})
    best = max(grid, key=lambda g: (g["holdout_top1"] if g["holdout_top1"] is not None else -1.0))
    how = (f"the best of {len(grid)} points, each {settings.grid_epochs} epoch(s) at "
           f"{last.image_size} px, scored on {settings.holdout_per_class} photos per class held "
           "out of the training split")
    return {"chosen": {k: best[k] for k in given}, "how": how, "grid": grid}


def _grid_subset(settings, dataset: str) -> dict:
    """The grid's training photos per class (photos only; the built-in set trains on all its
    images)."""
    if is_built_in(dataset):
        return {}
    return {"images_per_class": settings.grid_images_per_class or settings.images_per_class}


def with_chosen(settings, chosen: dict):
    """``settings`` whose schedules end at each network's chosen regularization (Algorithm 1's end
    points come from the same choice as the fixed-size baseline's): each range becomes
    [min(first, chosen), chosen]."""
    per_model = {m: dict(v) for m, v in settings.per_model.items()}
    for model, choice in chosen.items():
        if not choice["grid"]:
            continue
        ranges = ("randaug_range", "dropout_range", "mixup_range")
        own = {**{k: getattr(settings, k) for k in ranges}, **per_model.get(model, {})}
        values = choice["chosen"]
        for key, field_name in zip(ranges, ("randaug_magnitude", "dropout", "mixup_alpha")):
            first = own[key][0] if own.get(key) else values[field_name]
            own[key] = [min(first, values[field_name]), values[field_name]]
        per_model[model] = {k: v for k, v in {**per_model.get(model, {}), **own}.items()}
    return dataclasses.replace(settings, per_model=per_model)


def _model_conditions(schedule, rows: list[dict], model: str) -> dict:
    """One network's own conditions (notebook 07 trains each at its own sizes): its progressive
    schedule's sizes, evaluation size and source, and the global batch, optimizer steps and peak lr
    its first run recorded."""
    run = next(r for r in rows if r["model"] == model)
    recorded = json.loads((Path(run["run_dir"]) / "config.json").read_text())
    return {"image_sizes": sorted({s.image_size for s in schedule.stages}),
            "eval_size": schedule.eval_size, "schedule": schedule.source,
            "global_batch": recorded["global_batch"], **schedule_facts(recorded)}


def _run_row(model: str, name: str, seed: int, order: int, summary: dict, out_dir: str) -> dict:
    """One run: its final top-1 (EMA weights when the run keeps an EMA, see ``reported_top1``),
    training seconds and per-epoch curve (``wall_time``: cumulative training seconds at the
    epoch's end, evaluation excluded)."""
    history = read_history(out_dir)
    curve = [{"epoch": m["epoch"], "wall_time": m["wall_time"], "top1": reported_top1(m),
              "image_size": m["image_size"],
              "images_per_sec": m.get("images_per_sec")} for m in history]
    top1 = [p["top1"] for p in curve if p["top1"] is not None]
    return {"model": model, "variant": name, "seed": seed, "order": order,
            "final_top1": summary["top1"], "train_seconds": summary["wall_time"],
            "weights": summary["top1_weights"], "curve": curve,
            "last_gain": top1[-1] - top1[-2] if len(top1) >= 2 else None, "run_dir": out_dir}


# ---- Table 11: speed on this machine
# -----------------------------------------------------------------------------

def table11_speed(settings, pairs=tuple(TABLE11_PAIRS)) -> Table11Result:
    """Training and inference images/s of each (V2, V1) pair (default V2-B0..B3 and V1-B0..B3),
    timed alternately at each model's eval size (or ``settings.scaling_image_size``) and batch
    ``settings.scaling_batch_size``, ``settings.timing_repeats`` repeats; Table 11's V100 numbers
    beside (its V2-7M/8M/14M are close relatives of V2-B0/B1/B3, paired in the paper with V1 one
    size larger). A rehearsal times the first pair only."""
    start, device = time.perf_counter(), pick_device(settings.device)
    paper = {row["v2_relative"]: row for row in paper_table("table11")["rows"]}
    timed = list(pairs)[:1] if settings.rehearse else list(pairs)
    rows = [_table11_row(v2, v1, settings, device, paper.get(v2)) for v2, v1 in timed]
    conditions = measure_conditions(device, settings.profile, settings.rehearse,
                                    model=",".join(m for pair in timed for m in pair),
                                    image_sizes=sorted({r[f"{g}_size"] for r in rows
                                                        for g in ("v2", "v1")}),
                                    wall_clock_s=time.perf_counter() - start)
    return Table11Result(conditions, settings.scaling_batch_size, rows)


def _table11_row(v2: str, v1: str, settings, device, paper: dict | None) -> dict:
    cuda = device.type == "cuda"
    nets = {g: build_model(name).to(device) for g, name in (("v2", v2), ("v1", v1))}
    sizes = {g: settings.scaling_image_size or get_config(name).eval_size
             for g, name in (("v2", v2), ("v1", v1))}
    row = {"v2_model": v2, "v1_model": v1, **{f"{g}_size": s for g, s in sizes.items()},
           **{f"{g}_params": model_counts(name)["params"] for g, name in (("v2", v2), ("v1", v1))}}
    for mode in ("eval", "train"):
        for g in ("v2", "v1"):  # alternately: drift hits both
            r = benchmark_throughput(nets[g], sizes[g], settings.scaling_batch_size, mode=mode,
                                     amp=cuda, channels_last=cuda,
                                     warmup=1, repeats=settings.timing_repeats)
            batch = settings.scaling_batch_size
            row[f"{g}_{mode}_images_per_sec"] = r["images_per_sec"]
            row[f"{g}_{mode}_range"] = [batch / max(r["times"]), batch / min(r["times"])]
        row[f"{mode}_speedup"] = row[f"v2_{mode}_images_per_sec"] / row[f"v1_{mode}_images_per_sec"]
    if paper:
        row.update(paper_v2=paper["v2_model"], paper_v1=paper["v1_model"],
                   paper_v2_images_per_sec=paper["v2_images_per_sec"],
                   paper_v1_images_per_sec=paper["v1_images_per_sec"],
                   paper_speedup=paper["v2_images_per_sec"] / paper["v1_images_per_sec"])
    return row
