"""Benchmark: fixed-size training vs progressive learning with adaptive regularization (paper section 4).

    python bench/bench_progressive.py --dataset imagefolder --data-root DATA --model demo_v2_tiny --epochs 12 \\
        --min-size 56 --size 128 --seeds 0 1 --json runs/bench-progressive.json
    python bench/bench_progressive.py                           # the built-in set, CPU, 8 epochs, 3 seeds

Same model, same epochs, same evaluation size, same data, one continuous learning-rate schedule:
- fixed: the largest size with the strongest regularization for every epoch;
- progressive: ``--stages`` stages, sizes linear from ``--min-size`` to ``--size``, RandAugment and dropout
  growing with them (Algorithm 1; the paper's own schedules start at 0.4x-0.5x of the final size).
The time ratio is progressive / fixed training wall-clock (the epochs' own time: loading, augmentation and the
steps; evaluation excluded), the top-1 difference progressive minus fixed final top-1 (EMA weights when an EMA
is kept), each the mean over seeds, with the per-seed values and per-stage times. Run directories are kept in
``--out`` (reruns resume and reuse finished runs); ``--json`` writes the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
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
from effnetv2_mini.study.experiments import progressive_comparison
from effnetv2_mini.study.experiments.progressive import comparison_schedule
from effnetv2_mini.study.profiles import notebook_profile
from effnetv2_mini.study.tables import schedule_table


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="synthetic", help="synthetic, imagenette or imagefolder")
    parser.add_argument("--data-root", help="folder holding the data set (imagefolder: train/ and val/ class folders)")
    parser.add_argument("--model", type=model_name, default="demo_v2_tiny")
    parser.add_argument("--recipe", default="simple", choices=["paper", "code", "simple"])
    parser.add_argument("--epochs", type=positive_int, default=8)
    parser.add_argument("--stages", type=positive_int, default=4, help="at most --epochs")
    parser.add_argument("--min-size", type=image_size, default=28,
                        help="the first stage's image size")
    parser.add_argument("--size", type=image_size, default=64,
                        help="the last stage's (and the fixed run's) image size")
    parser.add_argument("--eval-size", type=image_size, help="default: --size")
    parser.add_argument("--randaug", type=non_negative_float, nargs=2, default=[0.0, 10.0],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--dropout", type=fraction, nargs=2, default=[0.05, 0.2],
                        metavar=("FIRST", "LAST"))
    parser.add_argument("--seeds", type=non_negative_int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--images-per-class", type=positive_int,
                        help="train on this many images per class (default: all)")
    parser.add_argument("--train-samples", type=positive_int, default=2000,
                        help="the built-in set's training images")
    parser.add_argument("--cache", action="store_true", help="decode photos once per size (effnetv2_mini.data.cache)")
    parser.add_argument("--workers", type=non_negative_int, default=0)
    parser.add_argument("--out", help="run directories (default: a temporary folder)")
    parser.add_argument("--json", help="write the summary here")
    args = parser.parse_args(argv)
    unique(parser, "--seeds", args.seeds)
    if args.stages > args.epochs:
        parser.error(f"argument --stages: {args.stages} stages need at least as many epochs "
                     f"(--epochs {args.epochs})")
    if args.min_size >= args.size:
        parser.error(f"argument --min-size: progressive learning grows the image size: --min-size "
                     f"{args.min_size} must be below --size {args.size}")
    data(parser, args.dataset, args.data_root)
    return args


def run(args) -> dict:
    cfg = notebook_profile("05_progressive_learning", "smoke", device="cpu", dataset=args.dataset, data_root=args.data_root,
                           model=args.model, recipe=args.recipe, epochs=args.epochs, stages=args.stages, min_size=args.min_size,
                           max_size=args.size, eval_size=args.eval_size or args.size, randaug_range=list(args.randaug),
                           dropout_range=list(args.dropout), mixup_range=[0.0, 0.0], variants=["fixed", "progressive"],
                           seeds=args.seeds, batch_size=args.batch_size, images_per_class=args.images_per_class,
                           train_samples=args.train_samples, cache=args.cache, workers=args.workers)
    cfg = dataclasses.replace(cfg, profile="bench")  # labelled as what it is (smoke defaults fill the rest)
    print(schedule_table(comparison_schedule(cfg)), flush=True)
    result = progressive_comparison(cfg, args.out or tempfile.mkdtemp(prefix="bench-progressive-"))
    by = {(r["variant"], r["seed"]): r for r in result.rows}
    per_seed = [{"seed": s, "time_ratio": by["progressive", s]["train_seconds"] / by["fixed", s]["train_seconds"],
                 "top1_diff": by["progressive", s]["final_top1"] - by["fixed", s]["final_top1"],
                 "fixed_top1": by["fixed", s]["final_top1"], "progressive_top1": by["progressive", s]["final_top1"],
                 "fixed_seconds": by["fixed", s]["train_seconds"], "progressive_seconds": by["progressive", s]["train_seconds"]}
                for s in args.seeds]
    return {"time_ratio": statistics.mean(p["time_ratio"] for p in per_seed),
            "top1_diff": statistics.mean(p["top1_diff"] for p in per_seed), "per_seed": per_seed,
            "per_stage": result.per_stage, "curves": result.curves, "conditions": vars(args),
            "machine": f"{result.conditions.device_name}, torch {result.conditions.torch}"}


def report(summary: dict) -> None:
    print(f"\n{'seed':>4} {'fixed top-1':>11} {'progr. top-1':>12} {'fixed s':>8} {'progr. s':>8} {'ratio':>6}")
    for p in summary["per_seed"]:
        print(f"{p['seed']:>4} {p['fixed_top1']:>11.2f} {p['progressive_top1']:>12.2f} {p['fixed_seconds']:>8.1f} "
              f"{p['progressive_seconds']:>8.1f} {p['time_ratio']:>6.3f}")
    print("\nper stage (training seconds, images/s):")
    for s in summary["per_stage"]:
        print(f"  {s['variant']:<12} seed {s['seed']} stage {s['stage']} {s['image_size']:>4} px: {s['seconds']:7.1f} s, "
              f"{s['images_per_sec']:6.0f} img/s")
    diffs = [p["top1_diff"] for p in summary["per_seed"]]
    spread = f", seed spread {min(diffs):+.2f} .. {max(diffs):+.2f}" if len(diffs) > 1 else ""
    print(f"\ntime ratio progressive / fixed: {summary['time_ratio']:.3f}; top-1 progressive - fixed: "
          f"{summary['top1_diff']:+.2f} points{spread}")


def main(argv=None) -> None:
    args = parse(argv)
    summary = run(args)
    report(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
