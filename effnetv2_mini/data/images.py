"""Image decoding primitives shared by every input path: a PIL loader that names the file it cannot
read, conversion of any image mode to 8-bit RGB, and a collate function
that drops unreadable images."""

from __future__ import annotations

import os
import stat

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["CorruptImageError", "SafeImageLoader", "to_rgb", "collate_skipping"]


class CorruptImageError(RuntimeError):
    """An image file that cannot be decoded; the message names the file."""


class SafeImageLoader:
    """PIL loader that names the file it cannot read; with ``skip=True``
    returns None instead of raising.

    ``draft_size``: the smallest short side needed. JPEGs are then decoded in libjpeg's draft mode
    at the smallest DCT scale (1/2, 1/4, 1/8) that still gives a short side >= ``draft_size``, which
    costs a fraction of a full decode when the training size is small. Every image comes out as
    8-bit RGB (:func:`to_rgb`)."""

    def __init__(self, skip: bool = False, draft_size: int | None = None):
        self.skip, self.draft_size = skip, draft_size

    def __call__(self, path: str):
        try:
            _check_regular_file(path)
            with open(path, "rb") as handle:
                image = Image.open(handle)
                if self.draft_size:
                    # a no-op for formats other than JPEG
                    image.draft("RGB", (self.draft_size, self.draft_size))
                return to_rgb(image)
        except Image.DecompressionBombError as error:
            if self.skip:
                return None
            raise CorruptImageError(
                f"cannot read image {path}: {error} Shrink the file, delete it, pass "
                "skip_corrupt=True (CLI: --skip-corrupt) to drop it, or, if you trust it, raise "
                "PIL.Image.MAX_IMAGE_PIXELS.") from error
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            if self.skip:
                return None
            raise CorruptImageError(
                f"cannot read image {path}: {error}. Delete or replace the file, or pass "
                "skip_corrupt=True (CLI: --skip-corrupt) to drop unreadable images and count them "
                "in the metrics."
            ) from error


def _check_regular_file(path: str) -> None:
    """Refuse what is not a regular file before opening it: a FIFO named ``x.jpg`` would block
    ``open`` forever, a dangling link would fail with a bare ENOENT."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as error:
        raise FileNotFoundError("no such file (a dangling link?)") from error
    if not stat.S_ISREG(mode):
        raise OSError("not a regular file (a FIFO, socket or device named like an image)")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode. 16-bit images (``I;16*``, and ``I`` holding values above 255)
    are scaled from 0..65535 to 0..255; PIL's own ``convert("RGB")`` would clip them to near white.
    Grayscale, CMYK, palette and alpha modes go through ``convert("RGB")`` (alpha dropped, as
    torchvision's loader does)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image)
        if image.mode != "I" or pixels.max(initial=0) > 255:
            pixels = pixels / 257.0
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "L")
    return image.convert("RGB")


def collate_skipping(batch):
    """Default collation after dropping unreadable samples; returns
    ``(images, labels, skipped)``."""
    kept = [item for item in batch if item is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    images, labels = torch.utils.data.default_collate(kept)
    return images, labels, skipped
