"""Benchmark: paper Table 3's throughput column on this device (EfficientNet-B4, Fused-MBConv in stages 1..N).

    python bench/bench_table3.py                          # CPU: 128 px, batch 8, 5 interleaved rounds
    python bench/bench_table3.py --device cuda --amp --channels-last --image-size 380 --batch-size 32

Each round times the four variants one after another (the order rotates), so machine drift hits all alike.
Prints training images/s (median over rounds) beside the paper's TPUv3 and V100 figures.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from effnetv2_mini import build_model
from effnetv2_mini.argtypes import image_size, positive_int
from effnetv2_mini.engine.devices import pick_device
from effnetv2_mini.measure import benchmark_throughput
from effnetv2_mini.study.reference import paper_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=image_size, default=128)
    parser.add_argument("--batch-size", type=positive_int, default=8)
    parser.add_argument("--rounds", type=positive_int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    args = parser.parse_args(argv)
    device = pick_device(args.device)
    variants = (0, 3, 5, 7)
    models = {n: build_model("efficientnet_b4", fused_stages=n).to(device) for n in variants}
    speeds = {n: [] for n in variants}
    for round_index in range(args.rounds):
        order = variants[round_index % 4:] + variants[:round_index % 4]
        for n in order:
            speeds[n].append(benchmark_throughput(models[n], args.image_size, args.batch_size, mode="train", amp=args.amp,
                                                  channels_last=args.channels_last, warmup=2, repeats=3)["images_per_sec"])
    paper = {row["fused_stages"]: row for row in paper_table("table3")["rows"]}
    print(f"EfficientNet-B4 training, {args.image_size}px, batch {args.batch_size}, {device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {args.rounds} rounds")
    print(f"{'fused stages':>12} {'ours img/s':>10} {'min..max':>14} {'paper TPU':>9} {'paper V100':>10}")
    for n in variants:
        label = "none" if n == 0 else f"1-{n}"
        print(f"{label:>12} {statistics.median(speeds[n]):>10.1f} {min(speeds[n]):>6.1f}..{max(speeds[n]):<6.1f} "
              f"{paper[n]['tpu']:>9} {paper[n]['v100']:>10}")


if __name__ == "__main__":
    main()
