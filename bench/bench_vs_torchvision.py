"""Benchmark: our EfficientNetV2-S against torchvision's, same machine, same run, interleaved rounds.

    python bench/bench_vs_torchvision.py                      # CPU, 128 px, batch 16 (the issue's setting)
    python bench/bench_vs_torchvision.py --device cuda --amp --channels-last --batch-size 64

Each round times both models back to back (the order alternates), so slow drift of the machine affects
both alike; the script prints the median images/s over rounds and the ratio ours / torchvision.
Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

import torch
import torchvision

from effnetv2_mini import build_model
from effnetv2_mini.engine.devices import pick_device
from effnetv2_mini.measure import benchmark_throughput


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnetv2_s", help="ours; torchvision's twin is looked up")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast (bf16 where supported)")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)

    from effnetv2_mini.compat import TORCHVISION_NAMES

    device = pick_device(args.device)
    torch.manual_seed(0)
    models = {
        "ours": build_model(args.model).to(device),
        "torchvision": torchvision.models.get_model(TORCHVISION_NAMES[args.model]).to(device),
    }
    results = {}
    for mode in ("train", "eval"):
        speeds = {name: [] for name in models}
        for round_index in range(args.rounds):
            order = list(models) if round_index % 2 == 0 else list(reversed(models))
            for name in order:
                r = benchmark_throughput(
                    models[name], args.image_size, args.batch_size, mode=mode, warmup=args.warmup,
                    repeats=args.repeats, amp=args.amp, channels_last=args.channels_last,
                )
                speeds[name].append(r["images_per_sec"])
        ratios = [o / t for o, t in zip(speeds["ours"], speeds["torchvision"])]
        results[mode] = {
            "ours_images_per_sec": statistics.median(speeds["ours"]),
            "torchvision_images_per_sec": statistics.median(speeds["torchvision"]),
            "ratio_of_medians": statistics.median(speeds["ours"]) / statistics.median(speeds["torchvision"]),
            "per_round_ratio_min": min(ratios),
            "per_round_ratio_max": max(ratios),
        }
    setting = (
        f"{args.model}, {args.image_size}px, batch {args.batch_size}, {device}"
        f"{', AMP' if args.amp else ''}{', channels_last' if args.channels_last else ''}; "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads; {args.rounds} rounds x {args.repeats} steps"
    )
    print(setting)
    print(f"{'mode':<6} {'ours img/s':>11} {'tv img/s':>9} {'ratio':>6}  per-round ratio range")
    for mode, r in results.items():
        print(
            f"{mode:<6} {r['ours_images_per_sec']:>11.1f} {r['torchvision_images_per_sec']:>9.1f} "
            f"{r['ratio_of_medians']:>6.3f}  {r['per_round_ratio_min']:.3f}..{r['per_round_ratio_max']:.3f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"setting": setting, "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
