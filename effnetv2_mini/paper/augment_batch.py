"""The official training preprocessing on a batch of uint8 images at once, each image with its own
draws.

:mod:`effnetv2_mini.paper.augment` is the reference: the official ``preprocess_for_train`` (crop,
flip) and RandAugment (``distort_image_with_randaugment``) on one image (C, H, W) at a time, and it
stays the source of the op table and magnitudes. Run one image at a time between the training steps
of a CPU, those small tensor calls cost more than their arithmetic (paper section 4 trains the early
epochs on small images, where the model is cheap and this overhead is what the step waits for). Here
the same work is done on a batch:

1. **Draws, per image, as the per-image path draws them.** :func:`draw_official` draws, on torch's
   global RNG and in the per-image order, the crop box (:func:`augment.crop_box`), the flip
   (``torch.rand(1) < 0.5``, as ``v2.RandomHorizontalFlip``) and RandAugment's ops: ``num_ops``
   times the op (uniform over :data:`augment.OPS`) then its argument (:func:`augment.draw_argument`:
   sign, Cutout's centre). Under the same seed an image therefore draws the very numbers the
   per-image transform draws, so the distribution of ops, magnitudes, crops and flips is the
   per-image path's, and every image has its own draw (nothing is drawn once per batch).
2. **Crop and resize** (:func:`crop_resize_batch`): each crop goes through the per-image path's
   bilinear kernel (``interpolate`` on floats, truncated to uint8, as
   :func:`augment.official_train_crop`), into one uint8 batch. The crops differ in size, and a
   batched gather (one indexing op for the whole batch, index tensors of every output pixel) was
   slower than that kernel in a first measurement on a 2-core CPU, so this part stays one kernel
   call per image (same pixels, no tolerance).
3. **Flip** (:func:`flip_batch`): one indexed op over the images that drew it.
4. **RandAugment** (:func:`randaugment_batch`): for each of the ``num_ops`` layers, the images are
   grouped by the op and argument they drew (16 ops, 2 signs, at one magnitude: at most 21 groups),
   and each group is transformed in one call. Every op gives each image the pixels the per-image op
   gives it (integer arithmetic, or the same float32 expressions elementwise; the geometric ops
   sample the same grid for every image of a group), tested in tests/test_augment_batch.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as nnf

from . import augment
from .augment import FILL, OPS, crop_box, draw_argument

__all__ = [
    "Draws",
    "draw_official",
    "draw_ops",
    "crop_resize_batch",
    "flip_batch",
    "randaugment_batch",
    "apply_op_batch",
    "autocontrast_batch",
    "equalize_batch",
    "color_batch",
    "sharpness_batch",
    "cutout_batch",
]


@dataclass(frozen=True)
class Draws:
    """What one image drew: its crop box (top, left, height, width), its flip, and its RandAugment
    ops as ``(op name, argument)`` pairs in the order they apply (argument as
    :func:`augment.draw_argument` gives it)."""

    box: tuple[int, int, int, int]
    flipped: bool
    ops: tuple[tuple[str, object], ...] = ()


def draw_ops(
    num_ops: int,
    magnitude: float | None,
    height: int,
    width: int,
    reference_size: int | None = None,
) -> tuple[tuple[str, object], ...]:
    """RandAugment's draws for one ``height`` x ``width`` image, in :class:`augment.RandAugment`'s
    order (for each layer: the op, uniform over the 16 :data:`OPS`, then its argument); none when
    ``magnitude`` is 0 or None (the per-image transform returns the image without drawing then)."""
    if not magnitude:
        return ()
    ops = []
    for _ in range(num_ops):
        op_name = OPS[int(torch.randint(len(OPS), ()))]
        ops.append((op_name, draw_argument(op_name, magnitude, height, width, reference_size)))
    return tuple(ops)


def draw_official(
    height: int,
    width: int,
    size: int,
    magnitude: float | None,
    num_ops: int = 2,
    reference_size: int | None = None,
    scale=(0.05, 1.0),
    ratio=(0.75, 1.33),
) -> Draws:
    """One image's draws for the official training preprocessing at ``size`` (crop, flip,
    RandAugment), from torch's global RNG in the order of ``data.transforms.train_transform(size,
    magnitude)``: seeded alike, the per-image transform and the batched one pick the same crop, flip
    and ops."""
    box = crop_box(height, width, scale=scale, ratio=ratio)
    flipped = bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip keeps the image when rand >= p
    return Draws(box, flipped, draw_ops(num_ops, magnitude, size, size, reference_size))


def crop_resize_batch(
    images: Sequence[torch.Tensor], boxes: Sequence[tuple[int, int, int, int]], size: int
) -> torch.Tensor:
    """Each uint8 image (C, H, W) cropped to its box and resized to ``size`` x ``size`` as
    :func:`augment.official_train_crop` does (bilinear, half-pixel centres, no antialiasing,
    truncated to uint8), stacked into uint8 (N, C, size, size)."""
    out = torch.empty(len(images), images[0].shape[0], size, size, dtype=torch.uint8)
    for k, (image, (top, left, height, width)) in enumerate(zip(images, boxes)):
        crop = image[None, :, top : top + height, left : left + width].float()
        resized = nnf.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)
        out[k] = resized[0].clamp_(0, 255)  # the copy into uint8 truncates, as .to(torch.uint8)
    return out


def flip_batch(images: torch.Tensor, flipped: Sequence[bool]) -> torch.Tensor:
    """The images (N, C, H, W) whose ``flipped`` is True mirrored left-right, in place, in one
    indexed op."""
    chosen = torch.tensor(flipped, dtype=torch.bool)
    if chosen.any():
        images[chosen] = images[chosen].flip(-1)
    return images


# --------------------------------------------------------------------------------------------------
# The ops on (N, C, H, W): the same arithmetic as augment.py's per-image ops, image by image
# --------------------------------------------------------------------------------------------------


def autocontrast_batch(images: torch.Tensor) -> torch.Tensor:
    """:func:`augment.autocontrast` of each image: each channel stretched from [min, max] to [0,
    255]."""
    low = images.amin(dim=(-2, -1), keepdim=True).float()
    high = images.amax(dim=(-2, -1), keepdim=True).float()
    scale = 255.0 / (high - low)  # inf where high == low: those channels are kept below
    stretched = (images.float() * scale - low * scale).clamp_(0, 255).to(torch.uint8)
    return torch.where(high > low, stretched, images)


def equalize_batch(images: torch.Tensor) -> torch.Tensor:
    """:func:`augment.equalize` of each image: per channel, PIL's lookup table from the cumulative
    histogram."""
    batch, channels, height, width = images.shape
    flat = images.reshape(batch * channels, height * width).long()
    rows = torch.arange(batch * channels).unsqueeze(1)
    histogram = torch.bincount((flat + rows * 256).flatten(), minlength=256 * batch * channels)
    histogram = histogram.view(batch * channels, 256)
    last = histogram.gather(
        1, flat.amax(dim=1, keepdim=True)
    )  # the count of the highest value present
    step = (height * width - last) // 255
    lut = (torch.cumsum(histogram, 1) + step // 2) // step.clamp(min=1)
    lut = torch.cat([lut.new_zeros(batch * channels, 1), lut[:, :-1]], dim=1).clamp_(0, 255)
    equalized = torch.where(step > 0, lut.gather(1, flat), flat)  # step 0: the channel is kept
    return equalized.to(torch.uint8).view(batch, channels, height, width)


def _grayscale_batch(images: torch.Tensor) -> torch.Tensor:
    """``augment._grayscale`` of each image: (N, 1, H, W)."""
    if images.shape[1] == 1:
        return images
    red, green, blue = (images.float() * (1.0 / 255)).unbind(1)
    return ((red * 0.2989 + green * 0.5870 + blue * 0.1140) * 255.5).to(torch.uint8).unsqueeze(1)


def color_batch(images: torch.Tensor, factor: float) -> torch.Tensor:
    """:func:`augment.color` of each image."""
    return augment._blend(_grayscale_batch(images).expand_as(images), images, factor)


def sharpness_batch(images: torch.Tensor, factor: float) -> torch.Tensor:
    """:func:`augment.sharpness` of each image. The smoothing sums are integers below 2^24, exact in
    float32 in any order of summation, so the batched convolution gives each image the per-image
    sums."""
    _, channels, height, width = images.shape
    degenerate = images.clone()
    if min(height, width) >= 3:
        kernel = torch.ones(channels, 1, 3, 3, device=images.device)
        kernel[:, :, 1, 1] = 5.0
        sums = nnf.conv2d(images.float(), kernel, groups=channels)
        degenerate[:, :, 1:-1, 1:-1] = (sums / 13.0).clamp_(0, 255).to(torch.uint8)
    return augment._blend(degenerate, images, factor)


def cutout_batch(
    images: torch.Tensor, centres: Sequence[tuple[int, int, int]], replace: int = FILL
) -> torch.Tensor:
    """:func:`augment.cutout` of each image with its own ``(pad_size, row, column)``: the square of
    side ``2 * pad_size`` around (row, column), clipped to the image, set to ``replace``."""
    height, width = images.shape[-2:]
    pad, row, column = (torch.tensor(values).view(-1, 1) for values in zip(*centres))
    rows = torch.arange(height).view(1, -1)
    columns = torch.arange(width).view(1, -1)
    inside_rows = (rows >= row - pad) & (rows < row + pad)  # (N, H)
    inside_columns = (columns >= column - pad) & (columns < column + pad)  # (N, W)
    mask = (inside_rows[:, :, None] & inside_columns[:, None, :]).unsqueeze(1)
    return images.masked_fill(mask, replace)


_BATCHED = {
    "AutoContrast": lambda images, _: autocontrast_batch(images),
    "Equalize": lambda images, _: equalize_batch(images),
    "Color": color_batch,
    "Sharpness": sharpness_batch,
}


def apply_op_batch(images: torch.Tensor, op_name: str, argument) -> torch.Tensor:
    """Op ``op_name`` with one drawn ``argument`` (as :func:`augment.draw_argument` gives it) on
    every image of ``images`` (N, C, H, W). The ops whose per-image function already works on a
    batch (elementwise ops, blends with a constant, torchvision's rotate and affine: one sampling
    grid for all) call it."""
    if op_name in _BATCHED:
        return _BATCHED[op_name](images, argument)
    return augment._OP_FUNCTIONS[op_name](images, argument)


def randaugment_batch(
    images: torch.Tensor, ops: Sequence[Sequence[tuple[str, object]]]
) -> torch.Tensor:
    """Each image's RandAugment ops (``ops[i]``: image i's ``(op, argument)`` pairs from
    :func:`draw_ops`) applied in order: at each layer the images that drew the same op and argument
    are transformed together. Cutout, whose argument holds the image's own centre, is one group with
    per-image centres. Returns a new tensor."""
    images = images.clone()
    for layer in range(max((len(drawn) for drawn in ops), default=0)):
        groups: dict[tuple, list[int]] = {}
        for index, drawn in enumerate(ops):
            if layer < len(drawn):
                op_name, argument = drawn[layer]
                groups.setdefault((op_name, None if op_name == "Cutout" else argument), []).append(
                    index
                )
        for (op_name, argument), members in groups.items():
            chosen = torch.tensor(members)
            if op_name == "Cutout":
                centres = [ops[i][layer][1] for i in members]
                images[chosen] = cutout_batch(images[chosen], centres)
            else:
                images[chosen] = apply_op_batch(images[chosen], op_name, argument)
    return images
