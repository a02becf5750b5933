"""Benchmark: fixed-size training vs progressive learning with adaptive regularization (paper section 4).

    python bench/bench_progressive.py                      # 3 seeds, 8 epochs, built-in data set, CPU

Same model (demo_v2_tiny), same epochs, same eval size (64 px), same data (2,000 synthetic training images):
- fixed: 64 px with the strongest regularization (dropout 0.2, RandAugment 10) for all epochs;
- progressive: 4 stages, 28 -> 64 px, dropout 0.05 -> 0.2, RandAugment 0 -> 10 (Algorithm 1).
Prints per-seed rows, then the wall-clock ratio progressive / fixed (training time of the epochs, and total time
including data rendering and evaluation) and the final top-1 difference with its spread over seeds.
Targets (issue): ratio <= 0.65, accuracy no worse than fixed beyond noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from effnetv2_mini.progressive import compare_variants, linear_schedule
from effnetv2_mini.train import TrainConfig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--min-size", type=int, default=28)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    args = parser.parse_args(argv)

    schedule = linear_schedule(args.epochs, 4, (args.min_size, args.size), args.size, dropout=(0.05, 0.2),
                               randaug_magnitude=(0, 10), round_to=4, source="benchmark")
    print(schedule.table())
    out = args.out or tempfile.mkdtemp(prefix="bench-progressive-")
    config = TrainConfig(model="demo_v2_tiny", dataset="synthetic", preset="simple", batch_size=64, workers=0,
                         synthetic={"num_samples": args.samples}, quiet=True, out_dir=out)
    rows = compare_variants(config, schedule, variants=("fixed", "progressive"), seeds=args.seeds)
    print(f"\n{'variant':<12} {'seed':>4} {'final top-1':>11} {'train s':>8} {'total s':>8} {'img/s':>7}")
    for r in rows:
        print(f"{r['variant']:<12} {r['seed']:>4} {r['final_top1']:>11.2f} {r['train_seconds']:>8.1f} "
              f"{r['total_seconds']:>8.1f} {r['images_per_sec']:>7.0f}")
    by = {(r["variant"], r["seed"]): r for r in rows}
    train_ratio = [by["progressive", s]["train_seconds"] / by["fixed", s]["train_seconds"] for s in args.seeds]
    total_ratio = [by["progressive", s]["total_seconds"] / by["fixed", s]["total_seconds"] for s in args.seeds]
    diff = [by["progressive", s]["final_top1"] - by["fixed", s]["final_top1"] for s in args.seeds]
    spread = statistics.stdev(diff) if len(diff) > 1 else float("nan")
    print(f"\nwall-clock ratio progressive/fixed: training {statistics.mean(train_ratio):.3f} "
          f"(per seed {', '.join(f'{x:.3f}' for x in train_ratio)}), total {statistics.mean(total_ratio):.3f} "
          f"(per seed {', '.join(f'{x:.3f}' for x in total_ratio)})")
    print(f"final top-1 progressive - fixed: mean {statistics.mean(diff):+.2f} points, std {spread:.2f} "
          f"(per seed {', '.join(f'{x:+.2f}' for x in diff)})")


if __name__ == "__main__":
    main()
