"""Benchmark: does the loader keep up with training on real photos? Full decode, draft mode, decoded cache.

    python bench/bench_loader.py --data-root DATA --dataset imagefolder      # DATA/train/<class>/<image>
    python bench/bench_loader.py --data-root DATA --sizes 64 --workers 0 --batches 10 --model efficientnetv2_b0

Loader paths, each with the training transform (random-resized crop, flip, RandAugment, normalisation), the
training loop's per-sample seeding and DataLoader (`loaders.make_loader`: shuffle, collation):
  full    PIL decodes every JPEG in full (the default `get_dataset`)
  draft   JPEG draft mode for the size (`get_dataset(..., decode_size=S)`)
  cache   the decoded-image cache (`get_dataset(..., cache=...)`, effnetv2_mini.data.cache)
  ram     the same images already in RAM as uint8 tensors: no I/O, no decoding (like the built-in synthetic set)
  (and `collated`: no loader at all, see below)
For each size, side by side: (a) loader images/s alone (no model); (b) training images/s on pre-collated batches
reused (`collated`: the model's forward, loss, backward and SGD step with no loader and no augmentation at all);
(c) end-to-end training images/s per path; and the ratios end-to-end / ram (**the in-memory figure**: the same
images already decoded in RAM, through the same augmentation, which is what the built-in data set does) and
end-to-end / collated (what augmenting on the same cores costs at all). Every path reads the same random subset of
(batches + 2) x batch-size images. Each figure is the median of ``--rounds`` rounds, the paths interleaved round by
round so that drift of the machine hits them alike. Cache build times are reported apart (a second run reuses the
caches). Timings taken on a busy machine are not results.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time

import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler, Subset

from effnetv2_mini import build_model
from effnetv2_mini.argtypes import (
    data,
    image_size,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from effnetv2_mini.data.cache import cache_info
from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.data.loaders import make_loader
from effnetv2_mini.data.transforms import train_transform

PATHS = ("full", "draft", "cache", "ram")


class Seeded(Dataset):
    """Runs the transforms under a per-sample seed, as the training loop does (fork_rng + manual_seed)."""

    def __init__(self, base: Dataset, seed: int = 0):
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed * 1_000_003 + index)
            return self.base[index]


class InRam(Dataset):
    """The cached images of ``indices`` held in RAM as uint8 tensors; ``transform`` applied per item."""

    def __init__(self, cached: Dataset, indices, transform):
        self.items = [item for item in (cached[i] for i in indices) if item is not None]  # (uint8 tensor, label)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        image, label = self.items[index]
        return self.transform(image), label


def machine() -> str:
    """CPU model, cores, torch version and threads."""
    cpu = platform.processor() or "unknown CPU"
    if os.path.exists("/proc/cpuinfo"):
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"


def open_paths(args, size: int, indices: list[int]) -> tuple[dict[str, Dataset], dict]:
    """The four loader paths for ``size`` over the same images, and the cache's info (build time included)."""
    common = dict(root=args.data_root, skip_corrupt=True)
    transform = train_transform(size, args.randaug_magnitude)
    cached = get_dataset(args.dataset, "train", cache=args.cache_dir or True, decode_size=size, **common)
    info = cache_info(cached.base.cache_folder(size))
    paths = {"full": get_dataset(args.dataset, "train", transform=transform, **common),
             "draft": get_dataset(args.dataset, "train", transform=transform, decode_size=size, **common),
             "ram": InRam(cached, indices, transform)}
    cached.transform = transform
    paths["cache"] = cached
    return {name: Seeded(paths[name] if name == "ram" else Subset(paths[name], indices)) for name in PATHS}, info


def train_loader(dataset: Dataset, batch_size: int, workers: int):
    """The training loop's DataLoader (shuffled, full batches, unreadable images dropped and counted)."""
    sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(0))
    return make_loader(dataset, None, workers, torch.device("cpu"), batch_sampler=BatchSampler(sampler, batch_size, True))


def loader_rate(dataset: Dataset, workers: int, batch_size: int, batches: int) -> float:
    """Images/s of iterating the training DataLoader alone (the first batch, worker start-up, is not timed)."""
    iterator = iter(train_loader(dataset, batch_size, workers))
    next(iterator)
    start = time.perf_counter()
    seen = sum(next(iterator)[0].shape[0] for _ in range(batches))
    return seen / (time.perf_counter() - start)


def training_rate(model, batches, count: int) -> float:
    """Images/s of ``count`` training steps (forward, loss, backward, SGD step) on ``batches`` after one warm-up."""
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    model.train()

    def step(images, labels):
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
        return images.shape[0]

    step(*next(batches)[:2])
    start = time.perf_counter()
    seen = sum(step(*next(batches)[:2]) for _ in range(count))
    return seen / (time.perf_counter() - start)


def measure_size(args, size: int, models: dict, total: int) -> tuple[list[tuple], dict]:
    """Rows ``(model, workers, path, loader img/s, train img/s, / ram, / collated)`` for one size, medians of
    ``args.rounds`` interleaved rounds."""
    count = (args.batches + 2) * args.batch_size
    indices = torch.randperm(total, generator=torch.Generator().manual_seed(0))[:count].tolist()
    paths, info = open_paths(args, size, indices)
    collated_batches = list(itertools.islice(iter(train_loader(paths["cache"], args.batch_size, 0)), args.batches))
    rows = []
    for name, model in models.items():
        for workers in args.workers:
            rounds = {path: [] for path in ("collated", *PATHS)}
            for _ in range(args.rounds):
                rounds["collated"].append((None, training_rate(model, itertools.cycle(collated_batches), args.batches)))
                for path in PATHS:
                    loader = loader_rate(paths[path], workers, args.batch_size, args.batches)
                    batches = iter(train_loader(paths[path], args.batch_size, workers))
                    rounds[path].append((loader, training_rate(model, batches, args.batches)))
            results = {path: _medians(values) for path, values in rounds.items()}
            ram, collated = results["ram"][1], results["collated"][1]
            for path, (loader, train) in results.items():
                rows.append((name, workers, path, loader, train, train / ram, train / collated))
            print(f"  {size} px, {name}, {workers} workers: "
                  + ", ".join(f"{p} {t:.0f} img/s" for p, (_, t) in results.items()), flush=True)
    return rows, info


def _medians(rounds: list[tuple]) -> tuple:
    loaders = [loader for loader, _ in rounds if loader is not None]
    return (statistics.median(loaders) if loaders else None, statistics.median(train for _, train in rounds))


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(args, table: dict, caches: dict) -> str:
    """The tables for docs/benchmarks.md: throughput per size, model, workers and path; the caches built."""
    lines = [f"Machine: {machine()}. Data: `{args.dataset}` train split, batch {args.batch_size}, "
             f"RandAugment {args.randaug_magnitude}, {args.batches} timed batches per figure, median of {args.rounds} "
             "interleaved rounds.", "",
             "| size | model | workers | path | loader img/s | training img/s | / ram (in memory) | / collated |",
             "|---:|---|---:|---|---:|---:|---:|---:|"]
    for size, rows in table.items():
        for model, workers, path, loader, train, vs_ram, vs_collated in rows:
            lines.append(f"| {size} | {model} | {workers} | {path} | {_number(loader, '.0f')} | {train:.0f} | "
                         f"{vs_ram:.2f} | {vs_collated:.2f} |")
    lines += ["", "| size | cached short side | images | MiB | build s (once) |", "|---:|---:|---:|---:|---:|"]
    for size, info in caches.items():
        lines.append(f"| {size} | {info['side']} | {info['images']:,} | {info['bytes'] / 2**20:,.0f} | "
                     f"{info['build_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="data root holding the data set (see get_dataset)")
    parser.add_argument("--dataset", choices=("imagefolder", "imagenette", "imagenet"), default="imagefolder")
    parser.add_argument("--model", nargs="+", type=model_name, default=["demo_v2_tiny"],
                        help="one or more model names")
    parser.add_argument("--sizes", type=image_size, nargs="+", default=[64, 96, 128])
    parser.add_argument("--workers", type=non_negative_int, nargs="+", default=[0, 1, 2],
                        help="DataLoader worker counts")
    parser.add_argument("--batches", type=positive_int, default=10, help="timed batches per figure")
    parser.add_argument("--rounds", type=positive_int, default=3,
                        help="interleaved rounds; each figure is their median")
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument("--randaug-magnitude", type=non_negative_float, default=10.0)
    parser.add_argument("--cache-dir", default=None, help="cache root (default $EFFNETV2_CACHE or ~/.cache/...)")
    args = parser.parse_args(argv)
    data(parser, args.dataset, args.data_root)
    source = get_dataset(args.dataset, "train", root=args.data_root)
    models = {name: build_model(name, num_classes=len(source.classes)) for name in args.model}
    print(machine(), flush=True)
    table, caches = {}, {}
    for size in args.sizes:
        table[size], caches[size] = measure_size(args, size, models, len(source))
    print("\n" + markdown(args, table, caches))


if __name__ == "__main__":
    main()
