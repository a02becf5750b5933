"""Image transforms for training and evaluation (``torchvision.transforms.v2``), in three labelled
styles.

=============== ====================================================================================
``official``    the official code's ``preprocessing.py`` (the default of every recipe): a random
                crop of 5%-100% of the area, aspect 3/4-4/3, drawn in relative coordinates and
                resized bilinearly; flip; the official RandAugment
                (:mod:`effnetv2_mini.paper.augment`); evaluation crops the centre square of side
                short x size / (size + 32) below 320 px and resizes the whole image from 320 px;
                pixels map to (x - 128) / 128
``torchvision`` what torchvision users know, kept as a labelled option: ``RandomResizedCrop``
                (8%-100%), ``v2.RandAugment`` (magnitude / 30 of each op's range, integer
                magnitudes), resize to size / 0.875 and centre crop, ImageNet mean and standard
                deviation
``finetune``    the official fine-tuning preprocessing (``preprocess_for_finetune``): the whole
                image resized to the training size (as ``tf.image.resize``: bilinear on floats, no
                antialiasing), flip, and a noise-filled square of half the side (cutout); pixels
                map to (x - 0.5) / 0.5 of [0, 1]; evaluation resizes the whole image the same way
=============== ====================================================================================

The ``official`` training transform also comes batched (:class:`BatchedTrainTransform`): the same
draws and pixels, a batch at a time, for images held as uint8 tensors on a CPU.

The built-in synthetic set is rendered at the requested size, so its evaluation never crops and its
training crop keeps at least 35% of the area (the shapes must stay in view).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..paper.augment import (
    OFFICIAL_MEAN,
    OFFICIAL_STD,
    OfficialEvalResize,
    RandAugment,
    RandomResizedCropRelative,
)
from ..paper.augment_batch import crop_resize_batch, draw_official, flip_batch, randaugment_batch

__all__ = ["PREPROCESSING", "NORMALIZATIONS", "IMAGENET_MEAN", "IMAGENET_STD", "train_transform",
           "eval_transform", "NoiseCutout", "normalization_of", "BatchedTrainTransform"]

PREPROCESSING = ("official", "torchvision", "finetune")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NORMALIZATIONS = {"official": (OFFICIAL_MEAN, OFFICIAL_STD),
                  "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                  "finetune": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
_OWN_NORMALIZATION = {"official": "official", "torchvision": "imagenet", "finetune": "finetune"}


class NoiseCutout(torch.nn.Module):
    """The official fine-tuning cutout: a square of side ``2 * pad_size`` centred on a uniformly
    drawn pixel (clipped to the image), filled with uniform noise in [0, 1) (on the normalized
    image, as the official code)."""

    def __init__(self, pad_size: int):
        super().__init__()
        self.pad_size = pad_size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        cy, cx = int(torch.randint(0, height, (1,))), int(torch.randint(0, width, (1,)))
        top, bottom = max(0, cy - self.pad_size), min(height, cy + self.pad_size)
        left, right = max(0, cx - self.pad_size), min(width, cx + self.pad_size)
        image = image.clone()
        image[..., top:bottom, left:right] = torch.rand(image[..., top:bottom, left:right].shape)
        return image


def _check(preprocessing: str) -> None:
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; "
                         f"choose {', '.join(PREPROCESSING)}")


def normalization_of(preprocessing: str | None, normalize: str | None = None) -> str:
    """The normalization a run uses: ``normalize`` if given, else its preprocessing's own."""
    return normalize or _OWN_NORMALIZATION[preprocessing or "official"]


def _normalize(preprocessing: str, normalize: str | None) -> list:
    mean, std = NORMALIZATIONS[normalization_of(preprocessing, normalize)]
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def _finetune_resize(size: int) -> list:
    """The official fine-tuning resize (preprocessing.py:83-85): the image to floats first, then
    ``tf.image.resize`` to size x size, bilinear with no antialiasing (TensorFlow's default)."""
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Resize((size, size), antialias=False)]


def train_transform(size: int, randaug_magnitude: float | None = None,
                    preprocessing: str = "official", crop_scale: tuple[float, float] | None = None,
                    randaug_reference: int | None = None, normalize: str | None = None):
    """Crop and resize to ``size``, flip, RandAugment (2 ops at ``randaug_magnitude``; 0 or None:
    off), normalize.

    RandAugment's magnitude is one of the regularizers progressive learning schedules (paper section
    4); ``randaug_reference`` scales the official RandAugment's pixel translations to the image (see
    :func:`effnetv2_mini.paper.augment.apply_op`; None: the official absolute pixels)."""
    _check(preprocessing)
    if preprocessing == "finetune":
        steps = [*_finetune_resize(size), v2.RandomHorizontalFlip()]
        return v2.Compose(steps + _normalize(preprocessing, normalize) + [NoiseCutout(size // 4)])
    if preprocessing == "official":
        steps = [v2.ToImage(), RandomResizedCropRelative(size, scale=crop_scale or (0.05, 1.0)),
                 v2.RandomHorizontalFlip()]
        if randaug_magnitude:
            steps.append(RandAugment(num_ops=2, magnitude=randaug_magnitude,
                                     reference_size=randaug_reference))
    else:
        steps = [v2.ToImage(),
                 v2.RandomResizedCrop(size, scale=crop_scale or (0.08, 1.0), antialias=True),
                 v2.RandomHorizontalFlip()]
        if randaug_magnitude:
            steps.append(v2.RandAugment(num_ops=2, magnitude=int(round(randaug_magnitude))))
    return v2.Compose(steps + _normalize(preprocessing, normalize))


def eval_transform(size: int, preprocessing: str = "official", crop: bool = True,
                   normalize: str | None = None):
    """Resize (and crop) to ``size`` for evaluation; ``crop=False`` resizes the whole image (data
    rendered at the size already, the built-in set)."""
    _check(preprocessing)
    if preprocessing == "finetune":
        resize = _finetune_resize(size)
    elif preprocessing == "torchvision" and crop:
        resize = [v2.Resize(int(round(size / 0.875)), antialias=True), v2.CenterCrop(size)]
    elif preprocessing == "official" and crop:
        resize = [OfficialEvalResize(size)]
    else:
        resize = [v2.Resize((size, size), antialias=True)]
    return v2.Compose([v2.ToImage(), *resize, *_normalize(preprocessing, normalize)])


class BatchedTrainTransform:
    """:func:`train_transform` of the ``official`` style on a whole batch: ``transform(images,
    seeds)`` takes the batch's uint8 images (C, H, W) (any sizes, e.g. from the decoded-image cache)
    and each image's seed, and returns float32 (N, C, size, size), normalized.

    Image i is what ``train_transform(size, randaug_magnitude, ...)`` returns for it when run under
    ``torch.random.default_generator.manual_seed(seeds[i])`` (the training loop's per-sample
    seeding, :class:`~effnetv2_mini.data.loaders.SeededDataset`): the same draws (crop, flip,
    RandAugment's ops, signs and cutout centres:
    :func:`effnetv2_mini.paper.augment_batch.draw_official`) and the same pixels, computed a batch
    at a time (crop and resize into one uint8 batch, one flip, RandAugment by groups of images that
    drew the same op). ``timings``, a dict, gets the seconds of each part added (``draw``,
    ``crop_resize``, ``flip``, ``randaugment``, ``normalize``): the loop benchmark's time split
    (bench/bench_loop.py)."""

    def __init__(self, size: int, randaug_magnitude: float | None = None,
                 crop_scale: tuple[float, float] | None = None,
                 randaug_reference: int | None = None, normalize: str | None = None):
        self.crop = RandomResizedCropRelative(size, scale=crop_scale or (0.05, 1.0))  # checks scale
        # RandAugment checks the arguments and holds them
        self.randaugment = RandAugment(2, randaug_magnitude, randaug_reference)
        self.size = int(size)
        self.mean, self.std = NORMALIZATIONS[normalization_of("official", normalize)]

    def __repr__(self) -> str:
        return f"BatchedTrainTransform(size={self.size}, crop={self.crop}, {self.randaugment})"

    def __call__(self, images: Sequence[torch.Tensor], seeds: Sequence[int],
                 timings: dict | None = None) -> torch.Tensor:
        clock = _Clock(timings)
        augment = self.randaugment
        with torch.random.fork_rng(devices=[]):
            draws = []
            for image, seed in zip(images, seeds):
                torch.random.default_generator.manual_seed(seed)
                draws.append(draw_official(*image.shape[-2:], self.size, augment.magnitude,
                                           augment.num_ops, augment.reference_size,
                                           self.crop.scale, self.crop.ratio))
        clock.lap("draw")
        batch = crop_resize_batch(images, [d.box for d in draws], self.size)
        clock.lap("crop_resize")
        batch = flip_batch(batch, [d.flipped for d in draws])
        clock.lap("flip")
        if any(d.ops for d in draws):
            batch = randaugment_batch(batch, [d.ops for d in draws])
        clock.lap("randaugment")
        batch = F.to_dtype(batch, torch.float32, scale=True)
        batch = F.normalize(batch, list(self.mean), list(self.std))
        clock.lap("normalize")
        return batch


class _Clock:
    """Adds the seconds since the last lap to ``timings[name]`` (nothing when ``timings`` is
    None)."""

    def __init__(self, timings: dict | None):
        self.timings, self.last = timings, time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
            self.last = now
