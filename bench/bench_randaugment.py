"""Benchmark: what the official RandAugment costs against torchvision's, per image, on real photos.

    python bench/bench_randaugment.py --data-root DATA          # DATA/train/<class>/<image>, e.g. Imagenette
    python bench/bench_randaugment.py --data-root DATA --sizes 64 128 --magnitudes 5 10 15 --images 300

The training transform of each preprocessing style (``effnetv2_mini.data.transforms.train_transform``: crop, flip,
RandAugment with 2 ops, normalization) applied to the same decoded images, one at a time as a DataLoader worker
does, under the training loop's per-sample seeding. ``official`` is this project's port of the official
RandAugment (16 ops, magnitude / 10 of each op's range); ``torchvision`` is ``v2.RandAugment`` (magnitude / 30,
what the project used before). Rounds alternate the two so that drift of the machine hits both alike; each figure
is the median images/s over rounds, and the ratio is official / torchvision. Decoding is not timed (the images are
decoded once, into memory, at the size the loader's cache would hold).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from effnetv2_mini.argtypes import data, image_size, non_negative_float, positive_int
from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.data.transforms import train_transform

STYLES = ("official", "torchvision")


def images_per_second(transform, images: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    for index, image in enumerate(images):
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(index)
            transform(image)
    return len(images) / (time.perf_counter() - start)


def measure(images: list[torch.Tensor], size: int, magnitude: float, rounds: int) -> dict[str, float]:
    transforms = {style: train_transform(size, magnitude, style) for style in STYLES}
    timings = {style: [] for style in STYLES}
    for _ in range(rounds):
        for style in STYLES:
            timings[style].append(images_per_second(transforms[style], images))
    return {style: statistics.median(values) for style, values in timings.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True, help="a class-per-folder tree with a train/ split")
    parser.add_argument("--dataset", default="imagefolder", choices=("imagefolder", "imagenette", "imagenet"))
    parser.add_argument("--sizes", type=image_size, nargs="+", default=[64, 96, 128])
    parser.add_argument("--magnitudes", type=non_negative_float, nargs="+",
                        default=[5.0, 10.0, 15.0])
    parser.add_argument("--images", type=positive_int, default=300,
                        help="decoded images each figure transforms")
    parser.add_argument("--rounds", type=positive_int, default=5)
    args = parser.parse_args(argv)
    data(parser, args.dataset, args.data_root)
    torch.set_num_threads(1)  # as in a DataLoader worker
    print(f"torch {torch.__version__}, 1 thread, {args.images} images, median of {args.rounds} alternating rounds\n")
    print("| size | magnitude | official img/s | torchvision img/s | official / torchvision |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        source = get_dataset(args.dataset, "train", root=args.data_root, decode_size=size)
        picks = torch.randperm(len(source), generator=torch.Generator().manual_seed(0))[:args.images].tolist()
        images = [source[i][0] for i in picks]  # PIL images, decoded once (draft mode for the size)
        for magnitude in args.magnitudes:
            rates = measure(images, size, magnitude, args.rounds)
            print(f"| {size} | {magnitude:g} | {rates['official']:.0f} | {rates['torchvision']:.0f} | "
                  f"{rates['official'] / rates['torchvision']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
