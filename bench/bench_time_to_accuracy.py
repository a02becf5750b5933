"""Benchmark: faster training, measured (the paper's headline: Figure 1a, Tables 7, 10, 11 and 12).

    python bench/bench_time_to_accuracy.py --dataset imagefolder --data-root DATA \\
        --models efficientnetv2_b0 efficientnet_b0 --epochs 10 --min-size 96 --size 192 --seeds 0 1 \\
        --recipe short --cache --out runs/tta --json runs/tta.json
    python bench/bench_time_to_accuracy.py --models efficientnetv2_b0 resnet50 ...   # Table 12 on a ResNet
    python bench/bench_time_to_accuracy.py                        # the built-in set, demo models, a few minutes on a CPU

For each seed, for each model: a fixed-size run (the last stage's size and regularization throughout), then a run
with progressive learning (Algorithm 1: ``--stages`` stages, sizes linear from ``--min-size`` to ``--size``,
RandAugment and dropout growing), same data, epochs, evaluation size and recipe: interleaved, so that a machine's
drift hits all alike. ``--dataset imagefolder`` takes any class-per-folder tree (``DATA/train/<class>/*``,
``DATA/val/<class>/*``) of photos of any size and shape: training crops and evaluation resizes come from the
official preprocessing.

Times are the epochs' own training seconds (loading, augmentation and steps; evaluation excluded), accuracies
final top-1 (EMA weights when the recipe keeps an EMA). The JSON holds every run (final top-1, seconds,
per-epoch top-1 and cumulative seconds) and, averaged over seeds, ``v2_progressive_time_to_v1_fixed_accuracy``
(V2 with Algorithm 1: seconds to first reach V1 fixed-size's final top-1, over V1's seconds; null if it never
does), ``progressive_time_ratio`` and ``progressive_top1_diff`` per model, with their per-seed values, the time
each pair needs to reach the lower of its two accuracies, and the claims' verdicts.

The paper's four comparisons (effnetv2_mini.study.verdict), each with its ``ratio`` (time to the
accuracy both runs reach), ``noise`` (the larger of the machine's drift, measured by a speed probe
between runs, and the seeds' spread), ``verdict`` and ``regime`` (still learning or not):
``architecture_alone`` (V2 vs V1, both fixed), ``table10`` (both with Algorithm 1), ``fig1a`` (V2
with Algorithm 1 vs V1 fixed) and ``table12`` (each network, Algorithm 1 vs fixed), with
``baselines_regularization``: each fixed-size baseline's RandAugment, dropout and mixup, chosen
from ``--baseline-grid`` on ``--holdout-per-class`` photos per class held out of the training
split. ``--out`` keeps the run directories (a rerun resumes and reuses finished runs).
``--table11`` also times V2-B0..B3 against V1-B0..B3 (training and inference images/s; Table 11).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from effnetv2_mini.argtypes import (
    data,
    fraction,
    image_size,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_int,
    unique,
)
from effnetv2_mini.paper.recipe import RECIPES
from effnetv2_mini.study.claims import claims_for
from effnetv2_mini.study.experiments.faster import faster_settings, table11_speed, time_to_accuracy
from effnetv2_mini.study.verdict import comparisons, headline

FOUR = ("architecture_alone", "table10", "fig1a", "table12")  # the paper's comparisons


def parse(argv=None):
    """The arguments, each checked as the command line checks its own (effnetv2_mini.argtypes): exit
    2 naming the option, never a traceback after minutes of training."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", help="synthetic, imagenette or imagefolder")
    parser.add_argument("--data-root", help="folder holding the data set (imagefolder: train/ and val/ class folders)")
    parser.add_argument("--models", nargs="+", type=model_name,
                        default=["demo_v2_tiny", "demo_v1_tiny"],
                        help="any name build_model knows (efficientnetv2_b0, efficientnet_b0, "
                             "resnet18, resnet50, ...)")
    parser.add_argument("--v2-model", type=model_name,
                        help="the V2 network of the headline (default: the first V2-style of "
                             "--models)")
    parser.add_argument("--v1-model", type=model_name,
                        help="the V1 network of the headline (default: the first V1-style of "
                             "--models)")
    parser.add_argument("--recipe", default="short", choices=list(RECIPES))
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--stages", type=positive_int, default=4,
                        help="progressive stages (at most --epochs)")
    parser.add_argument("--min-size", type=image_size, default=32,
                        help="the first stage's image size")
    parser.add_argument("--size", type=image_size, default=64,
                        help="the last stage's (and the fixed runs') image size; above --min-size")
    parser.add_argument("--eval-size", type=image_size, help="default: --size")
    parser.add_argument("--randaug", type=non_negative_float, nargs=2, default=[0.0, 10.0],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--dropout", type=fraction, nargs=2, default=[0.05, 0.2],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1],
                        help="each once")
    parser.add_argument("--baseline-grid", type=non_negative_float, nargs="+",
                        default=[0.0, 0.05, 0.0, 0.0, 0.2, 0.0], metavar="VALUE",
                        help="the baselines' regularization points, three numbers each: "
                             "RandAugment magnitude, dropout, mixup alpha (default: two points)")
    parser.add_argument("--grid-epochs", type=positive_int, default=2,
                        help="epochs of each grid point (the same for every point and network)")
    parser.add_argument("--holdout-per-class", type=positive_int, default=20,
                        help="photos per class held out of the training split to score the grid on")
    parser.add_argument("--grid-images-per-class", type=positive_int,
                        help="photos: the grid's training photos per class (default: all)")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--images-per-class", type=positive_int,
                        help="train on this many images per class (default: all)")
    parser.add_argument("--train-samples", type=positive_int, default=1000,
                        help="the built-in set's training images")
    parser.add_argument("--cache", action="store_true", help="decode photos once per size (effnetv2_mini.data.cache)")
    parser.add_argument("--workers", type=non_negative_int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--table11", action="store_true", help="also time V2-B0..B3 against V1-B0..B3 (Table 11)")
    parser.add_argument("--speed-batch", type=positive_int, default=32,
                        help="--table11: images per timed step")
    parser.add_argument("--out", help="run directories (default: a temporary folder)")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args(argv)
    unique(parser, "--seeds", args.seeds)
    unique(parser, "--models", args.models)
    if args.stages > args.epochs:
        parser.error(f"argument --stages: {args.stages} stages need at least as many epochs "
                     f"(--epochs {args.epochs})")
    if args.min_size >= args.size:
        parser.error(f"argument --min-size: progressive learning grows the image size: --min-size "
                     f"{args.min_size} must be below --size {args.size}")
    data(parser, args.dataset, args.data_root)
    values = args.baseline_grid
    if len(values) % 3 or any(v >= 1 for v in values[1::3]):
        parser.error("argument --baseline-grid: three numbers per point (RandAugment magnitude, "
                     f"dropout below 1, mixup alpha), got {values}")
    args.baseline_grid = [values[i:i + 3] for i in range(0, len(values), 3)]
    return args


def run(args) -> dict:
    cfg = faster_settings("smoke", models=args.models, v2_model=args.v2_model, v1_model=args.v1_model,
                          device=args.device, dataset=args.dataset, data_root=args.data_root, recipe=args.recipe,
                          epochs=args.epochs, stages=args.stages, min_size=args.min_size, max_size=args.size,
                          eval_size=args.eval_size or args.size, randaug_range=list(args.randaug),
                          dropout_range=list(args.dropout), mixup_range=[0.0, 0.0], seeds=args.seeds,
                          batch_size=args.batch_size, images_per_class=args.images_per_class,
                          train_samples=args.train_samples, cache=args.cache, workers=args.workers,
                          scaling_image_size=None, scaling_batch_size=args.speed_batch,
                          timing_repeats=5, baseline_grid=args.baseline_grid,
                          grid_epochs=args.grid_epochs,
                          holdout_per_class=args.holdout_per_class,
                          grid_images_per_class=args.grid_images_per_class)
    cfg.profile = "bench"  # labelled as what it is (smoke defaults fill the rest)
    result = time_to_accuracy(cfg, args.out or tempfile.mkdtemp(prefix="bench-time-to-accuracy-"))
    head = result.v2_progressive_time_to_v1_fixed_accuracy
    found = comparisons(result)
    summary = {**{key: found[key] for key in FOUR}, "headline_sentence": headline(result, found),
               "drift": found["drift"], "speed_probes": result.speed_probes,
               "baselines_regularization": result.regularization,
               "v2_progressive_time_to_v1_fixed_accuracy": head["mean"], "headline": head,
               "progressive_time_ratio": {m: e["progressive_time_ratio"] for m, e in result.per_model.items()},
               "progressive_top1_diff": {m: e["progressive_top1_diff"] for m, e in result.per_model.items()},
               "per_model": result.per_model, "pairs": result.pairs,
               "rows": [{k: v for k, v in r.items() if k != "run_dir"} for r in result.rows],
               "schedules": result.schedules, "conditions": vars(args),
               "machine": f"{result.conditions.device_name}, torch {result.conditions.torch}",
               "claims": [_claim(c) for c in claims_for(result)], "result": result.to_dict()}
    if args.table11:
        speed = table11_speed(cfg)
        summary.update(table11=speed.rows, claims=summary["claims"] + [_claim(c) for c in claims_for(speed)])
    return summary


def _claim(c) -> dict:
    return {"key": c.key, "table": c.table, "statement": c.statement, "ours": c.ours, "paper": c.paper,
            "verdict": str(c.verdict), "comparable": str(c.comparable)}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(summary: dict) -> None:
    print(f"\n{'run':>3} {'seed':>4} {'model':<20} {'variant':<12} {'top-1':>6} {'train s':>8}  per epoch (top-1 @ seconds)")
    for r in summary["rows"]:
        curve = " ".join(f"{_fmt(p['top1'], '.1f')}@{p['wall_time']:.1f}" for p in r["curve"])
        print(f"{r['order']:>3} {r['seed']:>4} {r['model']:<20} {r['variant']:<12} {_fmt(r['final_top1'], '6.2f')} "
              f"{r['train_seconds']:>8.1f}  {curve}")
    print("\nprogressive learning per model (mean over seeds): time ratio progressive / fixed, top-1 difference")
    for model, e in summary["per_model"].items():
        seeds = ", ".join(f"s{p['seed']} {p['time_ratio']:.2f}x {_fmt(p['top1_diff'], '+.2f')}" for p in e["per_seed"])
        print(f"  {model:<20} {_fmt(e['progressive_time_ratio'], '.3f')}x  {_fmt(e['progressive_top1_diff'], '+.2f')} points"
              f"  ({seeds})")
    print("\ntime to the lower of each pair's final accuracies (b / a):")
    for p in summary["pairs"]:
        print(f"  s{p['seed']} {p['a']} vs {p['b']}: {_fmt(p['target_top1'], '.1f')}% in {_fmt(p['a_seconds'], '.1f')} s vs "
              f"{_fmt(p['b_seconds'], '.1f')} s ({_fmt(p['ratio'], '.2f')}x)")
    head = summary["headline"]
    print(f"\n{head['v2_model']} + Algorithm 1, time to {head['v1_model']} fixed-size's final top-1 / its time: "
          f"{_fmt(head['mean'], '.3f')} (reached in {head['reached']} of {head['seeds']} seed(s))")
    for row in summary.get("table11", []):
        print(f"  {row['v2_model']} vs {row['v1_model']}: inference {row['eval_speedup']:.2f}x, training "
              f"{row['train_speedup']:.2f}x" + (f" (paper {row['paper_v2']} vs {row['paper_v1']}: {row['paper_speedup']:.2f}x)"
                                                if "paper_speedup" in row else ""))
    for key in FOUR:
        found = summary[key]
        if found is None:
            print(f"- {key}: no V2 / V1 pair")
            continue
        print(f"- {key}: {found['verdict']} ({found['why']})")
    for model, reg in summary["baselines_regularization"].items():
        print(f"  {model} baseline: {reg['chosen']} ({reg['how']})")
    print(f"\n{summary['headline_sentence']}")
    for c in summary["claims"]:
        print(f"- {c['table']}: {c['statement']}: {c['verdict']}")


def main(argv=None) -> None:
    args = parse(argv)
    summary = run(args)
    report(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
