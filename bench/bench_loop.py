"""Benchmark: does the training loop keep up with the model? The real loop against the model's own
steps, per model and image size.

    python bench/bench_loop.py --data-root DATA --json loop.json   # DATA/train/<class>/<image>
    python bench/bench_loop.py --data-root DATA --augment auto per-image   # the engine's, the old
    python bench/bench_loop.py --data-root DATA --augment batched --workers 0 1   # overlap?
    python bench/bench_loop.py --dataset synthetic --sizes 56 --steps 2 --rounds 1   # no photos

For each model (default EfficientNetV2-B0 and EfficientNet-B0) and image size (default 56, 80, 104,
128 px: the sizes of notebook 07's laptop plan, Algorithm 1 from 56 to 128 px), one run is built as
the engine builds it (``engine.build.resolve`` and ``build_objects``: the recipe's optimizer,
schedule and EMA, the engine's CPU defaults such as channels_last, batch 64), and, in interleaved
rounds (loop, model, loop, model, ...):

- **loop**: the real loop: the training loader of ``data.loaders.Loaders`` (the laptop plan's
  setting: the decoded-image cache ``--cache``, workers 0; the recipe's crop, flip and RandAugment
  at the stage's magnitude, the training loop's per-sample seeding, collation) and the engine's
  training step (``engine.loop._train_step``: forward, loss, backward, optimizer, learning-rate
  step, EMA), ``--steps`` steps after ``--warmup``;
- **model**: the same training step on batches already in memory (taken from that loader before
  timing), timed with ``effnetv2_mini.measure``'s step timer: the speed the model alone allows.

``loop_to_model_ratio`` is loop images/s / model images/s, per round and its median (the issue's
target: 0.9 or more). Then the **time split** of one loop step, measured part by part over
``--steps`` steps: reading the images (the cache's memory-mapped pixels, or rendering for the
built-in set), the crop and resize, the flip, RandAugment, the normalization and collation, the
optimizer step (forward, backward, update) and the EMA update; the largest part that is not the
model's is named ``bottleneck``. With several ``--augment`` choices (``per-image``: the transform
image by image, ``batched``: ``data.transforms.BatchedTrainTransform``; ``auto``: what the engine
picks on this machine) or ``--workers`` counts (loader processes, one torch thread each, preparing
the next batches while the model steps), each combination is a loop of its own in the same rounds
(the first fills the top-level keys; the split is measured in this process whatever the workers).

The magnitude of RandAugment at each size is the laptop plan's (notebook 07: 0 at 56 px to 10 at 128
px, linear in the size) unless ``--magnitude`` fixes one. ``--amp`` trains under bf16 autocast (loop
and model alike). Timings on a machine shared with other work are not results.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from itertools import islice

import torch
import torchvision

from effnetv2_mini.argtypes import (
    data,
    image_size,
    model_name,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from effnetv2_mini.data.images import collate_skipping
from effnetv2_mini.data.loaders import Loaders
from effnetv2_mini.engine.build import build_objects, resolve
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.distributed import DistInfo
from effnetv2_mini.engine.loop import _train_step
from effnetv2_mini.engine.rundir import RunState
from effnetv2_mini.measure import _time_steps
from effnetv2_mini.paper.progressive import EpochPlan, apply_stage
from effnetv2_mini.study.profiles import PROFILES

MODELS = ("efficientnetv2_b0", "efficientnet_b0")
SIZES = (56, 80, 104, 128)
AUGMENT = {"auto": None, "per-image": False, "batched": True}
# Parts of the per-image transform (train_transform's steps) in the split
_PART_OF_STEP = {
    "ToImage": "crop_resize",
    "RandomResizedCropRelative": "crop_resize",
    "RandomHorizontalFlip": "flip",
    "RandAugment": "randaugment",
    "ToDtype": "normalize",
    "Normalize": "normalize",
}
_MODEL_PARTS = ("step", "ema")


def machine() -> dict:
    """CPU model, cores, threads and library versions."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        names = [
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }


def plan_magnitude(size: int) -> float:
    """RandAugment's magnitude at ``size`` in notebook 07's laptop plan (linear between its first
    and last stage)."""
    plan = PROFILES["laptop"]["07_faster_training"]
    low, high = plan["randaug_range"]
    fraction = (size - plan["min_size"]) / (plan["max_size"] - plan["min_size"])
    return low + (high - low) * min(1.0, max(0.0, fraction))


def variants(args) -> dict[str, tuple[str, int]]:
    """The loops to time: every ``--augment`` choice with every ``--workers`` count, by name."""
    several = len(args.workers) > 1
    return {
        (f"{augment}, workers {workers}" if several else augment): (augment, workers)
        for augment in args.augment
        for workers in args.workers
    }


def make_config(
    args, model: str, size: int, magnitude: float, variant: tuple[str, int], out_dir: str
) -> TrainConfig:
    """The run's settings: the plan's data path (cache, workers 0 unless asked), the engine's CPU
    defaults, this size."""
    augment, workers = variant
    folder = args.dataset != "synthetic"
    synthetic = {} if folder else {"num_samples": (args.warmup + args.steps + 2) * args.batch}
    config = TrainConfig(
        model=model,
        dataset=args.dataset,
        data_root=args.data_root,
        out_dir=out_dir,
        recipe=args.recipe,
        batch_size=args.batch,
        image_size=size,
        eval_size=size,
        randaug_magnitude=magnitude,
        mixup_alpha=0.0,
        device="cpu",
        workers=workers,
        cache=True if folder else None,
        synthetic=synthetic,
        quiet=True,
        amp=True if args.amp else None,
        batch_augment=AUGMENT[augment],
        seed=0,
    )
    return resolve(config)[0]


class Bench:
    """One model at one size: its run objects and one training loader per variant
    (:func:`variants`)."""

    def __init__(self, args, model: str, size: int, out_dir: str):
        self.args, self.size = args, size
        self.magnitude = plan_magnitude(size) if args.magnitude is None else args.magnitude
        self.device, self.info = torch.device("cpu"), DistInfo()
        self.loaders = {}
        for name, variant in variants(args).items():
            config = make_config(args, model, size, self.magnitude, variant, out_dir)
            self.loaders[name] = Loaders(config, self.info, self.device)
        first = next(iter(self.loaders))
        config = self.loaders[first].config
        steps = self.loaders[first].steps_per_epoch()
        if steps < args.warmup + args.steps:
            raise SystemExit(
                f"the training set gives {steps} batches of {args.batch}: fewer than --warmup + "
                f"--steps ({args.warmup + args.steps})"
            )
        torch.manual_seed(0)
        objects = build_objects(config, self.info, self.device, steps, fresh=True)
        fields = {f.name: getattr(objects, f.name) for f in dataclasses.fields(objects)}
        self.run = argparse.Namespace(
            config=config,
            device=self.device,
            state=RunState(),
            steps_per_epoch=steps,
            data=self.loaders[first],
            **fields,
        )
        self.plan = EpochPlan(
            image_size=size, dropout=None, randaug_magnitude=self.magnitude, mixup_alpha=0.0
        )
        self.epoch = 0
        self.in_memory = list(islice(self._loader(first)[0], 2))  # for the model's steps

    def close(self) -> None:
        for loaders in self.loaders.values():
            loaders.close()

    def _loader(self, augment: str):
        self.epoch += 1  # a new epoch each time: other images, other draws
        self.run.data = self.loaders[augment]
        return apply_stage(self.plan, self.run.model, self.loaders[augment], self.epoch)

    def loop_rate(self, augment: str) -> float:
        """Images/s of the real loop: loading, augmenting and collating each batch, then the
        step."""
        loader, mixer = self._loader(augment)
        batches = iter(loader)
        for _ in range(self.args.warmup):
            images, labels, _ = next(batches)
            _train_step(self.run, images, labels, mixer, self.epoch)
        seen, start = 0, time.perf_counter()
        for _ in range(self.args.steps):
            images, labels, _ = next(batches)
            _train_step(self.run, images, labels, mixer, self.epoch)
            seen += len(labels)
        return seen / (time.perf_counter() - start)

    def model_rate(self) -> float:
        """Images/s of the same step on batches already in memory (no loading, no augmentation)."""
        batches = iter(self.in_memory * (self.args.warmup + self.args.steps))

        def step():
            images, labels, _ = next(batches)
            _train_step(self.run, images, labels, None, self.epoch)

        times = _time_steps(step, self.device, self.args.warmup, self.args.steps)
        return self.args.batch * len(times) / sum(times)

    def split(self, augment: str) -> dict[str, float]:
        """Seconds per part of one loop step, averaged over ``--steps`` steps of the loader's own
        keys."""
        loaders = self.loaders[augment]
        loader, mixer = self._loader(augment)
        parts: dict[str, float] = {}
        for keys in islice(iter(loader.batch_sampler), self.args.steps):
            if loaders.batch_augment:
                images, labels = self._batched_parts(loaders, keys, parts)
            else:
                images, labels = self._per_image_parts(loaders, keys, parts)
            self._step_parts(images, labels, mixer, parts)
        return {name: seconds / self.args.steps for name, seconds in parts.items()}

    @staticmethod
    def _add(parts: dict, name: str, start: float) -> float:
        now = time.perf_counter()
        parts[name] = parts.get(name, 0.0) + now - start
        return now

    def _read(self, dataset, index: int, parts: dict):
        """An image as the data set holds it (cache read or rendering), without the transform."""
        transform, dataset.transform = dataset.transform, None
        try:
            start = time.perf_counter()
            item = dataset[index]
            self._add(parts, "read", start)
        finally:
            dataset.transform = transform
        return item

    def _per_image_parts(self, loaders, keys, parts: dict):
        transforms = loaders.train_set.transform.transforms
        samples = []
        for seed, index in keys:
            image, label = self._read(loaders.train_set, index, parts)
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(seed)
                start = time.perf_counter()
                for transform in transforms:
                    image = transform(image)
                    start = self._add(
                        parts, _PART_OF_STEP.get(type(transform).__name__, "other"), start
                    )
            samples.append((image, label))
        start = time.perf_counter()
        images, labels, _ = collate_skipping(samples)
        self._add(parts, "collate", start)
        return images, labels

    def _batched_parts(self, loaders, keys, parts: dict):
        items = [self._read(loaders.train_set, index, parts) for _, index in keys]
        timings: dict[str, float] = {}
        images = loaders.batched_transform(
            [item[0] for item in items], [seed for seed, _ in keys], timings
        )
        for name, seconds in timings.items():
            parts[name] = parts.get(name, 0.0) + seconds
        start = time.perf_counter()
        labels = torch.utils.data.default_collate([item[1] for item in items])
        self._add(parts, "collate", start)
        return images, labels

    def _step_parts(self, images, labels, mixer, parts: dict) -> None:
        ema, self.run.ema = self.run.ema, None
        try:
            start = time.perf_counter()
            _train_step(self.run, images, labels, mixer, self.epoch)
            start = self._add(parts, "step", start)
        finally:
            self.run.ema = ema
        if ema is not None:
            ema.update_parameters(self.run.model)
            self._add(parts, "ema", start)


def measure(args, model: str, size: int) -> dict:
    """Interleaved rounds of every loop and the model, then the split of each loop's step."""
    with tempfile.TemporaryDirectory() as out_dir:
        bench = Bench(args, model, size, out_dir)
        try:
            loops = {name: [] for name in bench.loaders}
            models = []
            for _ in range(args.rounds):
                for name in bench.loaders:
                    loops[name].append(bench.loop_rate(name))
                models.append(bench.model_rate())
            splits = {name: bench.split(name) for name in bench.loaders}
        finally:
            bench.close()
    rows = {}
    for name, rates in loops.items():
        ratios = [loop / alone for loop, alone in zip(rates, models)]
        split = splits[name]
        loading = {part: seconds for part, seconds in split.items() if part not in _MODEL_PARTS}
        rows[name] = {
            "batched_augmentation": bench.loaders[name].batch_augment,
            "workers": bench.loaders[name].config.workers,
            "loop_images_per_s": statistics.median(rates),
            "loop_images_per_s_rounds": rates,
            "loop_to_model_ratio": statistics.median(ratios),
            "loop_to_model_ratio_rounds": ratios,
            "split": split,
            "bottleneck": max(loading, key=loading.get) if loading else None,
        }
    first = next(iter(rows))
    return {
        "model": model,
        "image_size": size,
        "randaug_magnitude": bench.magnitude,
        "variant": first,
        "model_images_per_s": statistics.median(models),
        "model_images_per_s_rounds": models,
        **rows[first],
        "variants": rows,
    }


def _table_row(row: dict) -> str:
    cells = []
    for name, variant in row["variants"].items():
        split = variant["split"]
        step = split.get("step", 0.0) + split.get("ema", 0.0)
        loading = sum(split.values()) - step
        cells.append(
            f"{name}: loop {variant['loop_images_per_s']:.1f} img/s, ratio "
            f"{variant['loop_to_model_ratio']:.2f}, loading {loading * 1e3:.0f} ms/step "
            f"(most: {variant['bottleneck']}), step+EMA {step * 1e3:.0f} ms"
        )
    return (
        f"{row['model']:<18} {row['image_size']:>4} px  "
        f"model {row['model_images_per_s']:.1f} img/s | " + " | ".join(cells)
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=model_name, nargs="+", default=list(MODELS))
    parser.add_argument("--sizes", type=image_size, nargs="+", default=list(SIZES))
    parser.add_argument("--batch", type=positive_int, default=64)
    parser.add_argument(
        "--steps", type=positive_int, default=6, help="timed steps per round (and in the split)"
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=2, help="untimed steps before each timing"
    )
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument(
        "--data-root", help="a class-per-folder tree (train/<class>/<image>), e.g. Imagenette"
    )
    parser.add_argument(
        "--dataset",
        default="imagefolder",
        choices=("imagefolder", "imagenette", "imagenet", "synthetic"),
        help="synthetic: the built-in set (no photos; rendered in memory, no cache)",
    )
    parser.add_argument(
        "--recipe", default="short", help="the engine's recipe (notebook 07's laptop plan: short)"
    )
    parser.add_argument(
        "--magnitude",
        type=non_negative_float,
        help="RandAugment's magnitude at every size (default: the laptop plan's at each size)",
    )
    parser.add_argument(
        "--augment",
        nargs="+",
        choices=list(AUGMENT),
        default=["auto"],
        help="the loader's augmentation: auto (the engine's choice), per-image, batched; several: "
        "each a loop of its own in the same rounds (the first fills the top-level keys)",
    )
    parser.add_argument(
        "--workers",
        type=non_negative_int,
        nargs="+",
        default=[0],
        help="loader processes (0: the laptop plan's); several: each a loop of its own",
    )
    parser.add_argument(
        "--amp", action="store_true", help="bf16 autocast in the loop and the model"
    )
    parser.add_argument("--json", help="also write the results to this file")
    return parser


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset != "synthetic":
        data(parser, args.dataset, args.data_root)
    args.augment = list(dict.fromkeys(args.augment))
    args.workers = list(dict.fromkeys(args.workers))
    info = machine()
    print(
        f"{info['cpu']}, {info['cores']} cores, {info['threads']} threads, torch {info['torch']}; "
        f"batch "
        f"{args.batch}, {args.rounds} rounds x {args.steps} steps (+{args.warmup} warm-up)",
        flush=True,
    )
    started = time.perf_counter()
    rows = []
    for model in args.models:
        for size in args.sizes:
            rows.append(measure(args, model, size))
            print(_table_row(rows[-1]), flush=True)
    summary = {
        "command": " ".join(
            ["python", "bench/bench_loop.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "machine": info,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "dataset": args.dataset,
        "amp": args.amp,
        "augment": args.augment,
        "workers": args.workers,
        "seconds": time.perf_counter() - started,
        "results": rows,
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=1)
    return summary


if __name__ == "__main__":
    main()
