"""Benchmark: is the data loader fast enough to feed training? Built-in synthetic set, this machine.

    python bench/bench_loader.py                       # 64 and 128 px, demo_v2_tiny and efficientnetv2_s
    python bench/bench_loader.py --sizes 64 --workers 2

For each image size it measures, in one run:
- loader images/s: iterating the training loader exactly as `fit` builds it (random-resized crop, flip,
  RandAugment magnitude 10, normalisation, per-sample seeding, collation), with `--workers` worker processes;
- training images/s of each model on batches already in memory (forward, loss, backward, optimizer step).
The loader is not the bottleneck when loader images/s exceeds training images/s (ratio > 1). On a 2-core
machine both compete for the same cores during real training, so the ratio measured apart is an upper bound.
"""

from __future__ import annotations

import argparse
import time

import torch

from effnetv2_mini import build_model
from effnetv2_mini.measure import benchmark_throughput
from effnetv2_mini.train import StageSettings, TrainConfig, _Data, _Dist


def loader_images_per_sec(size: int, workers: int, batch_size: int, batches: int, samples: int) -> float:
    config = TrainConfig(dataset="synthetic", batch_size=batch_size, workers=workers, synthetic={"num_samples": samples})
    data = _Data(config.resolved(), _Dist(), torch.device("cpu"), None)
    loader = data.train_loader(StageSettings(size, None, 10.0, 0.0), epoch=0, skip_batches=0)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start, seen = time.perf_counter(), 0
    for _ in range(batches):
        images, _, _ = next(iterator)
        seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--models", nargs="+", default=["demo_v2_tiny", "efficientnetv2_s"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.workers} loader workers, "
          f"batch {args.batch_size}")
    print(f"{'size':>4}  {'loader img/s':>12}  {'model':<18} {'train img/s':>11}  {'loader/train':>12}")
    for size in args.sizes:
        loader_rate = loader_images_per_sec(size, args.workers, args.batch_size, args.batches,
                                            samples=args.batch_size * (args.batches + 2))
        for name in args.models:
            model = build_model(name, num_classes=10)
            train_rate = benchmark_throughput(model, size, args.batch_size, mode="train", warmup=2, repeats=5)[
                "images_per_sec"]
            print(f"{size:>4}  {loader_rate:>12.0f}  {name:<18} {train_rate:>11.1f}  {loader_rate / train_rate:>12.2f}")


if __name__ == "__main__":
    main()
