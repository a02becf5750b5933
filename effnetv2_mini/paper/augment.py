"""The official EfficientNetV2 training and evaluation preprocessing, on uint8 image tensors
(C, H, W).

EfficientNetV2 (Tan & Le 2021), section 4: progressive learning grows the image size during training
and, with it, the strength of three regularizers: dropout, mixup and the RandAugment magnitude.
Table 5 shows why (small images train best with weak augmentation, large ones with strong) and Table
6 gives the magnitude ranges (5 to 15 for V2-S, to 20 for V2-M, to 25 for V2-L); the magnitude is a
float, linearly interpolated between stages.

This module follows the official TensorFlow code (google/automl, ``efficientnetv2/``):

- ``autoaugment.py``, ``distort_image_with_randaugment``: ``num_layers`` times, one of the 16 ops of
  :data:`OPS` is drawn uniformly and always applied (the ``prob`` drawn for each op is never used by
  RandAugment); the op's argument comes from ``level_to_arg`` with ``level = magnitude /
  _MAX_LEVEL`` (``_MAX_LEVEL = 10``), see :func:`op_arguments`; Rotate, ShearX/Y and TranslateX/Y
  get a random sign; empty pixels are filled with 128.
- ``preprocessing.py``: the training crop (``tf.image.sample_distorted_bounding_box``, then a
  bilinear resize), the evaluation crop (:func:`official_eval_crop`) and the ``(x - 128) / 128``
  normalization (:data:`OFFICIAL_MEAN`, :data:`OFFICIAL_STD`).

We reproduce what the TensorFlow code computed, including three surprises (the first two come from
uint8 arithmetic: at the magnitudes EfficientNetV2 uses, some arguments leave the uint8 range):

1. Solarize compares ``image < threshold`` in uint8, so the threshold ``int(level * 256)`` wraps
   modulo 256: at magnitude 10 it is 256 -> 0 and every pixel is inverted; at magnitude 15 it is
   384 -> 128.
2. Posterize shifts by the uint8 ``8 - bits`` and TF's shift kernels clamp shifts above 7 to 7: from
   1 to 8 bits it keeps that many high bits (6 at magnitude 15, 8 = unchanged at 20), but 0 bits or
   more than 8 (magnitude 22.5 and up) keep only the top bit.
3. Contrast blends with a gray level meant to be the mean but computed as ``sum(histogram) / 256``,
   i.e. the number of pixels / 256, clipped to 255 (196 for 224 x 224 images, 255 from 256 x 256
   up).

Where results can still differ from TensorFlow: the geometric ops use torchvision's
nearest-neighbour ``rotate`` / ``affine`` (the official ``tfa.image`` ops are nearest-neighbour too,
same centre and origin conventions), which round a coordinate lying exactly half-way between two
pixels half-to-even, not away from zero, and carry float32 error in their sampling grid; float32
sums in Color, Sharpness and the resizes may round the odd pixel to the other integer.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = ["OPS", "MAX_LEVEL", "FILL", "OFFICIAL_MEAN", "OFFICIAL_STD", "op_arguments",
           "draw_argument", "apply_op", "RandAugment",
           "autocontrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add",
           "color", "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x",
           "translate_y", "cutout", "crop_box", "official_train_crop", "RandomResizedCropRelative",
           "eval_crop_box", "official_eval_crop", "OfficialEvalResize"]

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
       "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout",
       "SolarizeAdd")
# official _randomly_negate_tensor
SIGNED_OPS = frozenset({"Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"})
MAX_LEVEL = 10.0  # official _MAX_LEVEL: the magnitude is divided by it
FILL = 128  # official replace_value [128, 128, 128], for the geometric ops and Cutout
TRANSLATE_CONST = 100  # pixels, official RandAugment translate_const (whatever the image size)
CUTOUT_CONST = 40  # pixels, official RandAugment cutout_const

# The official network input is (x - 128) / 128 (preprocessing.py). After v2.ToDtype(torch.float32,
# scale=True) a pixel is x / 255, and v2.Normalize(OFFICIAL_MEAN, OFFICIAL_STD) gives (x/255 -
# 128/255) / (128/255) = (x - 128) / 128.
OFFICIAL_MEAN = (128 / 255, 128 / 255, 128 / 255)
OFFICIAL_STD = (128 / 255, 128 / 255, 128 / 255)

_NEAREST = InterpolationMode.NEAREST
_FILL = [float(FILL)]
# TF's projective transforms put the origin on the centre of the top-left pixel; torchvision's
# ``center`` argument counts pixel edges (pixel i spans [i, i + 1]), so that centre is (0.5, 0.5).
_TOP_LEFT_PIXEL = [0.5, 0.5]


# --------------------------------------------------------------------------------------------------
# The op table (official level_to_arg)
# --------------------------------------------------------------------------------------------------

def _enhance_factor(level: float) -> float:
    return level * 1.8 + 0.1


_LEVEL_TO_ARG: dict[str, Callable[[float], float | int | None]] = {
    "AutoContrast": lambda level: None,
    "Equalize": lambda level: None,
    "Invert": lambda level: None,
    "Rotate": lambda level: level * 30.0,  # degrees
    "Posterize": lambda level: int(level * 4),  # bits kept
    "Solarize": lambda level: int(level * 256),  # threshold
    "SolarizeAdd": lambda level: int(level * 110),  # added to pixels below 128
    "Color": _enhance_factor,
    "Contrast": _enhance_factor,
    "Brightness": _enhance_factor,
    "Sharpness": _enhance_factor,
    "ShearX": lambda level: level * 0.3,
    "ShearY": lambda level: level * 0.3,
    "TranslateX": lambda level: level * float(TRANSLATE_CONST),  # pixels
    "TranslateY": lambda level: level * float(TRANSLATE_CONST),
    "Cutout": lambda level: int(level * CUTOUT_CONST),  # half the side of the square, pixels
}


def op_arguments(op_name: str, magnitude: float) -> float | int | None:
    """The official ``level_to_arg(params)[op_name](magnitude)`` argument, before the random sign
    (None: no argument).

    E.g. ``op_arguments("Rotate", 15) == 45.0`` degrees, ``op_arguments("TranslateX", 15) == 150.0``
    pixels.
    """
    if op_name not in _LEVEL_TO_ARG:
        raise ValueError(f"unknown op {op_name!r}; the ops are {', '.join(OPS)}")
    return _LEVEL_TO_ARG[op_name](magnitude / MAX_LEVEL)


# --------------------------------------------------------------------------------------------------
# Colour ops (official autoaugment.py), each on a uint8 tensor (C, H, W)
# --------------------------------------------------------------------------------------------------

def _blend(image1: torch.Tensor, image2: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``blend``: ``image1 + factor * (image2 - image1)`` in float32, clipped to [0, 255],
    truncated to uint8.

    Factor 0 gives image1, 1 gives image2, above 1 extrapolates away from image1.
    """
    start = image1.float()
    return (start + factor * (image2.float() - start)).clamp_(0, 255).to(torch.uint8)


def _grayscale(image: torch.Tensor) -> torch.Tensor:
    """``tf.image.rgb_to_grayscale`` of a uint8 image: weights (0.2989, 0.5870, 0.1140) on x / 255,
    and back to uint8 by truncating ``gray * 255.5`` (TF's ``convert_image_dtype``). Returns
    (1, H, W)."""
    if image.shape[0] == 1:
        return image
    red, green, blue = image.float() * (1.0 / 255)
    return ((red * 0.2989 + green * 0.5870 + blue * 0.1140) * 255.5).to(torch.uint8).unsqueeze(0)


def autocontrast(image: torch.Tensor) -> torch.Tensor:
    """Official ``autocontrast``: each channel stretched linearly so that its min becomes 0 and its
    max 255."""
    channels = []
    for channel in image:
        low, high = channel.min().float(), channel.max().float()
        if high > low:
            scale = 255.0 / (high - low)
            channel = (channel.float() * scale - low * scale).clamp_(0, 255).to(torch.uint8)
        channels.append(channel)
    return torch.stack(channels)


def _equalize_channel(channel: torch.Tensor) -> torch.Tensor:
    histogram = torch.bincount(channel.flatten().long(), minlength=256)
    nonzero = histogram[histogram > 0]
    step = int(nonzero.sum() - nonzero[-1]) // 255
    if step == 0:  # (nearly) a single value, or too few pixels: unchanged
        return channel
    lut = (torch.cumsum(histogram, 0) + step // 2) // step
    lut = torch.cat([lut.new_zeros(1), lut[:-1]]).clamp_(0, 255)
    return lut[channel.long()].to(torch.uint8)


def equalize(image: torch.Tensor) -> torch.Tensor:
    """Official ``equalize`` (PIL's algorithm): per channel, a lookup table from the cumulative
    histogram."""
    return torch.stack([_equalize_channel(channel) for channel in image])


def invert(image: torch.Tensor) -> torch.Tensor:
    """Official ``invert``: 255 - x."""
    return 255 - image


def posterize(image: torch.Tensor, bits: int) -> torch.Tensor:
    """Official ``posterize``: shift right then left by ``8 - bits``, keeping the ``bits`` high
    bits.

    As TF ran it, the shift is a uint8 (so 8 - bits wraps modulo 256) and the shift kernels clamp
    shifts above 7 to 7: 0 bits, or more than 8 bits (magnitude >= 22.5), keep only the top bit.
    """
    shift = min((8 - bits) % 256, 7)
    return (image >> shift) << shift


def solarize(image: torch.Tensor, threshold: int) -> torch.Tensor:
    """Official ``solarize``: pixels >= threshold are inverted. TF compares in uint8, so the
    threshold wraps modulo 256: 256 (magnitude 10) becomes 0 and inverts every pixel, 384 (magnitude
    15) acts as 128."""
    return torch.where(image < threshold % 256, image, 255 - image)


def solarize_add(image: torch.Tensor, addition: int, threshold: int = 128) -> torch.Tensor:
    """Official ``solarize_add``: pixels below 128 get ``addition`` added (clipped to 255), the
    others are kept."""
    added = (image.int() + addition).clamp_(0, 255).to(torch.uint8)
    return torch.where(image < threshold, added, image)


def color(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``color`` (PIL Color): blend from the grayscale image (factor 0) to the image
    (factor 1) and beyond."""
    return _blend(_grayscale(image).expand_as(image), image, factor)


def contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``contrast``: blend from a constant gray image. The official gray level is
    ``sum(histogram) / 256``, which is the number of pixels / 256 (not the mean gray level), clipped
    to 255; reproduced as is."""
    height, width = image.shape[-2:]
    gray_level = int(min(height * width / 256.0, 255.0))
    return _blend(torch.full_like(image, gray_level), image, factor)


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``brightness``: blend from black (factor 0) to the image (factor 1) and beyond."""
    return _blend(torch.zeros_like(image), image, factor)


def sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Official ``sharpness``: blend from the image smoothed by PIL's SMOOTH kernel
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 (truncated to uint8) to the image. The one-pixel border
    of the smoothed image keeps the original pixels."""
    channels, height, width = image.shape
    degenerate = image.clone()
    if min(height, width) >= 3:
        # on the image's device (CUDA: decode_on_device)
        kernel = torch.ones(channels, 1, 3, 3, device=image.device)
        kernel[:, :, 1, 1] = 5.0
        sums = torch.nn.functional.conv2d(image.float().unsqueeze(0), kernel, groups=channels)[0]
        degenerate[:, 1:-1, 1:-1] = (sums / 13.0).clamp_(0, 255).to(torch.uint8)
    return _blend(degenerate, image, factor)


# --------------------------------------------------------------------------------------------------
# Geometric ops: nearest neighbour, empty pixels filled with 128 (the official wrap/unwrap does
# exactly that)
# --------------------------------------------------------------------------------------------------

def rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Official ``rotate`` (``tfa.image.rotate``): counterclockwise about the image centre for
    positive degrees (the official docstring says clockwise; the sign is random anyway)."""
    return F.rotate(image, float(degrees), interpolation=_NEAREST, fill=_FILL)


def _affine(image: torch.Tensor, translate=(0.0, 0.0), shear=(0.0, 0.0)) -> torch.Tensor:
    return F.affine(image, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear),
                    interpolation=_NEAREST, fill=_FILL, center=_TOP_LEFT_PIXEL)


def shear_x(image: torch.Tensor, level: float) -> torch.Tensor:
    """Official ``shear_x``: output pixel (x, y) reads input (x + level * y, y), so row y moves left
    by level * y."""
    return _affine(image, shear=(math.degrees(math.atan(level)), 0.0))


def shear_y(image: torch.Tensor, level: float) -> torch.Tensor:
    """Official ``shear_y``: output pixel (x, y) reads input (x, y + level * x), so column x moves
    up by level * x."""
    return _affine(image, shear=(0.0, math.degrees(math.atan(level))))


def translate_x(image: torch.Tensor, pixels: float) -> torch.Tensor:
    """Official ``translate_x``: output pixel x reads input x + pixels, so the content moves LEFT by
    ``pixels``."""
    return _affine(image, translate=(-float(pixels), 0.0))


def translate_y(image: torch.Tensor, pixels: float) -> torch.Tensor:
    """Official ``translate_y``: output pixel y reads input y + pixels, so the content moves UP by
    ``pixels``."""
    return _affine(image, translate=(0.0, -float(pixels)))


def cutout(image: torch.Tensor, pad_size: int, replace: int = FILL,
           center: tuple[int, int] | None = None) -> torch.Tensor:
    """Official ``cutout``: the square of side ``2 * pad_size`` (rows ``cy - pad_size`` to ``cy +
    pad_size - 1``) around ``center = (cy, cx)``, clipped to the image, set to ``replace``. The
    centre is drawn uniformly over the pixels (torch's global RNG) when not given."""
    height, width = image.shape[-2:]
    if center is None:
        center = (int(torch.randint(height, ())), int(torch.randint(width, ())))
    cy, cx = center
    out = image.clone()
    rows = slice(max(0, cy - pad_size), min(height, cy + pad_size))
    out[:, rows, max(0, cx - pad_size):min(width, cx + pad_size)] = replace
    return out


_OP_FUNCTIONS: dict[str, Callable[[torch.Tensor, float | int | None], torch.Tensor]] = {
    "AutoContrast": lambda image, _: autocontrast(image),
    "Equalize": lambda image, _: equalize(image),
    "Invert": lambda image, _: invert(image),
    "Rotate": rotate,
    "Posterize": posterize,
    "Solarize": solarize,
    "SolarizeAdd": solarize_add,
    "Color": color,
    "Contrast": contrast,
    "Brightness": brightness,
    "Sharpness": sharpness,
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Cutout": cutout,
}


PIXEL_OPS = frozenset({"TranslateX", "TranslateY", "Cutout"})  # arguments in absolute pixels


def draw_argument(op_name: str, magnitude: float, height: int, width: int,
                  reference_size: int | None = None):
    """The argument :func:`apply_op` gives op ``op_name`` on a ``height`` x ``width`` image, with
    its random draws (torch's global RNG, in this order): the sign of Rotate, ShearX/Y and
    TranslateX/Y (negated with probability 1/2, official ``_randomly_negate_tensor``), then for
    Cutout the centre row and column (uniform over the pixels), returned as ``(pad_size, row,
    column)``. The batched RandAugment (:mod:`effnetv2_mini.paper.augment_batch`) draws through this
    function too, so both paths draw alike."""
    argument = op_arguments(op_name, magnitude)
    if reference_size and op_name in PIXEL_OPS:
        scaled = argument * min(height, width) / reference_size
        argument = scaled if op_name != "Cutout" else int(scaled)
    if op_name in SIGNED_OPS and float(torch.rand(())) < 0.5:
        argument = -argument
    if op_name == "Cutout":
        argument = (argument, int(torch.randint(height, ())), int(torch.randint(width, ())))
    return argument


def apply_op(image: torch.Tensor, op_name: str, magnitude: float,
             reference_size: int | None = None) -> torch.Tensor:
    """Apply one op at ``magnitude`` as the official RandAugment does: argument from
    :func:`op_arguments`, negated with probability 1/2 for Rotate, ShearX/Y and TranslateX/Y
    (torch's global RNG, as is Cutout's centre; see :func:`draw_argument`).

    ``reference_size`` (ours, not the official code's): scale the pixel arguments of TranslateX/Y
    and Cutout by ``short side / reference_size``, so that a small image is shifted by the same
    fraction as an image of ``reference_size`` pixels would be (the official constants, 100 and 40
    px per 10 levels, assume ImageNet-sized images: at 64 px, a translation of 100 px leaves nothing
    of the image)."""
    argument = draw_argument(op_name, magnitude, *image.shape[-2:], reference_size)
    if op_name == "Cutout":
        pad_size, row, column = argument
        return cutout(image, pad_size, center=(row, column))
    return _OP_FUNCTIONS[op_name](image, argument)


# --------------------------------------------------------------------------------------------------
# The transform
# --------------------------------------------------------------------------------------------------

def _pixels(image: torch.Tensor) -> torch.Tensor:
    """The plain uint8 (C, H, W) tensor of a tensor or tv_tensors.Image; a clear error for anything
    else."""
    if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
        got = getattr(image, "dtype", type(image).__name__)
        raise TypeError(f"expected a uint8 image tensor (C, H, W), got {got}")
    if image.ndim != 3:
        raise ValueError(f"expected one image of shape (C, H, W), got shape {tuple(image.shape)}")
    return image.as_subclass(torch.Tensor)


def _like(pixels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return tv_tensors.wrap(pixels, like=image) if isinstance(image, tv_tensors.Image) else pixels


def _checked_magnitude(magnitude: float | None) -> float | None:
    if magnitude is None:
        return None
    if isinstance(magnitude, bool) or not isinstance(magnitude, (int, float)) \
            or not 0 <= magnitude < math.inf:
        raise ValueError("magnitude must be None or a finite number >= 0 (the paper uses 5 to 25), "
                         f"got {magnitude!r}")
    return float(magnitude)


class RandAugment(torch.nn.Module):
    """The official RandAugment (``distort_image_with_randaugment``) on uint8 images (C, H, W) or
    tv_tensors.Image.

    ``num_ops`` times (official ``num_layers``, 2 in EfficientNetV2), one of the 16 :data:`OPS` is
    drawn uniformly and applied at ``magnitude`` (a float: progressive learning interpolates it,
    paper section 4 and Table 6; the official default is 15). All draws use torch's global RNG, so
    seeding torch makes the output reproducible. ``magnitude`` 0 or None turns the transform off
    (returns the input; the official op table at level 0 would still invert, equalize, ...).
    ``reference_size``: see :func:`apply_op` (None, the default, is the official behaviour).
    """

    def __init__(self, num_ops: int = 2, magnitude: float | None = 15.0,
                 reference_size: int | None = None):
        super().__init__()
        if isinstance(num_ops, bool) or not isinstance(num_ops, int) or num_ops < 0:
            raise ValueError("num_ops must be an integer >= 0 (the official code uses 2), "
                             f"got {num_ops!r}")
        if reference_size is not None and reference_size < 1:
            raise ValueError("reference_size must be None (official absolute pixels) or >= 1, "
                             f"got {reference_size!r}")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.reference_size = reference_size

    @property
    def magnitude(self) -> float | None:
        return self._magnitude

    @magnitude.setter
    def magnitude(self, value: float | None) -> None:
        self._magnitude = _checked_magnitude(value)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        pixels = _pixels(image)
        if not self.magnitude:
            return image
        for _ in range(self.num_ops):
            op_name = OPS[int(torch.randint(len(OPS), ()))]
            pixels = apply_op(pixels, op_name, self.magnitude, self.reference_size)
        return _like(pixels, image)

    def extra_repr(self) -> str:
        scale = "official absolute pixels" if self.reference_size is None else \
            f"pixels scaled to {self.reference_size} px"
        return f"num_ops={self.num_ops}, magnitude={self.magnitude}, translate/cutout: {scale}"


# --------------------------------------------------------------------------------------------------
# Training crop (official preprocess_for_train) and evaluation crop (official preprocess_for_eval)
# --------------------------------------------------------------------------------------------------

def _resize(image: torch.Tensor, size: int, truncate: bool) -> torch.Tensor:
    """``tf.image.resize(image, [size, size])``: bilinear, half-pixel centres, no antialiasing,
    float output; back to uint8 by truncation (as the official training code casts before
    RandAugment) or rounding."""
    resized = F.resize(image.float(), [size, size], interpolation=InterpolationMode.BILINEAR,
                       antialias=False)
    resized = resized.clamp_(0, 255)
    return (resized if truncate else resized.round_()).to(torch.uint8)


def _relative_box(image_aspect: float, draws: list[float], scale,
                  ratio) -> tuple[float, float, float, float] | None:
    """One attempt of ``sample_distorted_bounding_box``, in fractions of the image: (top, left,
    height, width), or None when no box of the drawn aspect ratio fits the area range. As in TF, the
    aspect ratio (width / height) is uniform in ``ratio`` and the box height is uniform between its
    smallest and largest allowed values."""
    u_ratio, u_height, u_top, u_left = draws
    aspect = ratio[0] + u_ratio * (ratio[1] - ratio[0])
    relative_aspect = aspect / image_aspect  # box width fraction = height fraction * this
    lowest = math.sqrt(scale[0] / relative_aspect)
    highest = min(math.sqrt(scale[1] / relative_aspect), 1.0 / relative_aspect, 1.0)
    if lowest > highest:
        return None
    height = lowest + u_height * (highest - lowest)
    width = height * relative_aspect
    return u_top * (1.0 - height), u_left * (1.0 - width), height, width


def _to_pixels(start: float, length: float, size: int) -> tuple[int, int]:
    """Round both edges of a relative interval to pixels (each within half a pixel of its exact
    place)."""
    first, last = round(start * size), round((start + length) * size)
    last = min(max(last, first + 1), size)
    return min(first, last - 1), max(last - first, 1)


def crop_box(height: int, width: int, generator: torch.Generator | None = None, scale=(0.05, 1.0),
             ratio=(0.75, 1.33), max_attempts: int = 100) -> tuple[int, int, int, int]:
    """The official training crop box (top, left, box_height, box_width) of a ``height`` x ``width``
    image.

    ``tf.image.sample_distorted_bounding_box(area_range=(0.05, 1.0), min_object_covered=0)`` with
    its defaults: aspect ratios (0.75, 1.33), 100 attempts, and the whole image when no attempt fits
    (what TF returns then; it only happens for images more elongated than about 1:13). Every draw is
    a fraction (4 uniform numbers per attempt from ``generator``, or torch's global RNG), so a fixed
    seed picks the same relative region of an image at any pixel size (edges within half a pixel),
    as long as its aspect ratio is kept.
    """
    for _ in range(max_attempts):
        draws = torch.rand(4, generator=generator).tolist()
        box = _relative_box(width / height, draws, scale, ratio)
        if box is not None:
            top, box_height = _to_pixels(box[0], box[2], height)
            left, box_width = _to_pixels(box[1], box[3], width)
            return top, left, box_height, box_width
    return 0, 0, height, width


def official_train_crop(image: torch.Tensor, size: int, generator: torch.Generator | None = None,
                        scale=(0.05, 1.0), ratio=(0.75, 1.33)) -> torch.Tensor:
    """Official ``preprocess_for_train`` crop: :func:`crop_box`, then a bilinear resize to ``size``
    x ``size``."""
    pixels = _pixels(image)
    top, left, box_height, box_width = crop_box(*pixels.shape[-2:], generator=generator,
                                                scale=scale, ratio=ratio)
    cropped = pixels[:, top:top + box_height, left:left + box_width]
    return _like(_resize(cropped, size, truncate=True), image)


class RandomResizedCropRelative(torch.nn.Module):
    """The official training crop as a transform: :func:`official_train_crop` with torch's global
    RNG.

    Unlike torchvision's RandomResizedCrop it draws the aspect ratio uniformly (not log-uniformly)
    and the box height uniformly (not the area), as ``sample_distorted_bounding_box`` does, and
    every draw is relative to the image size.
    """

    def __init__(self, size: int, scale=(0.05, 1.0), ratio=(0.75, 1.33)):
        super().__init__()
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < scale[0] <= scale[1] <= 1, got {scale}")
        if not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < ratio[0] <= ratio[1], got {ratio}")
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return official_train_crop(image, self.size, scale=self.scale, ratio=self.ratio)

    def extra_repr(self) -> str:
        return f"size={self.size}, scale={self.scale}, ratio={self.ratio}"


def eval_crop_box(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """The official evaluation crop (top, left, box_height, box_width): below 320, the centre square
    of side ``int(size / (size + 32) * short_side)`` (float32 product, as TF); from 320 on, the
    whole image. An image one pixel thin gets a 1-pixel square (the official product would be an
    empty crop)."""
    if size >= 320:
        return 0, 0, height, width
    side = max(1, int(torch.tensor(size / (size + 32), dtype=torch.float32) * min(height, width)))
    return (height - side) // 2, (width - side) // 2, side, side


def official_eval_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Official ``preprocess_for_eval``: :func:`eval_crop_box`, then a bilinear resize to ``size`` x
    ``size`` (the aspect ratio is not kept when the whole image is used). TF keeps floats; we round
    to uint8."""
    pixels = _pixels(image)
    top, left, box_height, box_width = eval_crop_box(*pixels.shape[-2:], size)
    cropped = pixels[:, top:top + box_height, left:left + box_width]
    return _like(_resize(cropped, size, truncate=False), image)


class OfficialEvalResize(torch.nn.Module):
    """:func:`official_eval_crop` as a transform."""

    def __init__(self, size: int):
        super().__init__()
        self.size = int(size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return official_eval_crop(image, self.size)

    def extra_repr(self) -> str:
        return f"size={self.size}"
