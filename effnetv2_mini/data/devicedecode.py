"""Decoding and augmenting on the training device: the workers only read JPEG bytes, the GPU does
the rest.

**Why.** Progressive learning (paper section 4, Algorithm 1) makes a training step's cost follow the
stage's image size: the early stages at 128 px are cheap for the model. The CPU path (PIL decode,
crop, RandAugment in DataLoader workers, :mod:`effnetv2_mini.data.loaders`) does not get cheaper
with the size: a JPEG costs the same to decode whatever size it is cropped to, so on a GPU the CPU
cores cap EfficientNetV2-S's images/s long before the GPU does. Here the workers only read the
files' bytes (cheap), and the training device decodes all JPEGs of a batch in one batched
``torchvision.io.decode_jpeg(..., device=...)`` call (nvjpeg on CUDA) and augments them as tensor
ops on the device.

**The pieces.**

- :class:`EncodedImages`: a folder data set's ``samples`` as ``(bytes, label)`` for JPEGs the device
  decodes; other files (PNG, 16-bit, CMYK JPEG, 12-bit or arithmetic-coded JPEG, a JPEG without its
  end marker) are decoded on the CPU with the project's loader
  (:class:`~effnetv2_mini.data.images.SafeImageLoader`, :func:`~effnetv2_mini.data.images.to_rgb`)
  and come as a uint8 (3, H, W) tensor; unreadable files raise
  :class:`~effnetv2_mini.data.images.CorruptImageError` naming the file, or give None with
  ``skip_corrupt``.
- :class:`SeededEncoded`: takes the training loop's ``(sample_seed, index)`` keys
  (:class:`loaders.SeededSampler`) and returns ``((item, seed, path), label)``: the seed travels
  with the bytes instead of seeding a CPU transform.
- :func:`collate_encoded`: ``(EncodedBatch(items, seeds, paths), labels, skipped)``.
- :class:`DevicePipeline`: ``pipeline(batch) -> (N, 3, size, size)`` float32 on the device.

**Reproducibility.** Each sample is augmented under its own seed on torch's CPU generator (inside
``torch.random.fork_rng(devices=[])``, as :class:`loaders.SeededDataset` does), drawing the same
numbers in the same order as :func:`effnetv2_mini.data.transforms.train_transform`: the crop box
(:func:`augment.crop_box`), the flip (``torch.rand(1) < 0.5``, as ``v2.RandomHorizontalFlip``), then
RandAugment's op, sign and cutout draws (:func:`augment.apply_op`). Only the pixels are computed on
the device. A fixed seed therefore gives the same crop, flip and ops on either path, a resumed run
sees exactly the images of an uninterrupted one, and on the CPU the device path gives the CPU path's
pixels (``torchvision.io.decode_jpeg`` and PIL both use libjpeg-turbo; measured identical,
tests/test_devicepipe.py). On CUDA, nvjpeg and the CUDA resize kernels may differ from the CPU by a
level here and there (the CUDA test compares).

Only the seed is set, not ``torch.manual_seed``: that would also reseed the CUDA generators that
dropout and stochastic depth draw from during training. The CPU draws are the same
(``torch.manual_seed`` seeds the CPU generator with the same call).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from ..paper.augment import OPS, RandAugment, RandomResizedCropRelative, _resize, apply_op, crop_box
from .images import CorruptImageError, SafeImageLoader
from .transforms import NORMALIZATIONS, PREPROCESSING, NoiseCutout, normalization_of

__all__ = ["EncodedImages", "SeededEncoded", "EncodedBatch", "collate_encoded", "DevicePipeline",
           "Draws", "device_decodable", "folder_samples", "encoded_images"]

# Frame types that both libjpeg-turbo and nvjpeg decode: baseline, extended and progressive
# Huffman-coded JPEG.
_DEVICE_FRAMES = (0xC0, 0xC1, 0xC2)
# DHT, JPG (reserved), DAC: markers in the SOFn range that are no frame header
_NOT_FRAMES = (0xC4, 0xC8, 0xCC)


# --------------------------------------------------------------------------------------------------
# Workers: file bytes (JPEG) or CPU-decoded pixels (everything else)
# --------------------------------------------------------------------------------------------------

def _frame_header(data: bytes) -> tuple[int, int, int] | None:
    """(SOF marker, sample precision, components) of a JPEG's frame header, or None if ``data`` is
    no JPEG or none is found before the first scan."""
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
        elif marker in (0xD9, 0xDA):  # end of image or a scan before any frame header
            return None
        elif 0xC0 <= marker <= 0xCF and marker not in _NOT_FRAMES:
            return (marker, data[at + 4], data[at + 9]) if at + 10 <= len(data) else None
        else:
            at += 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return None


def device_decodable(data: bytes) -> bool:
    """True for a JPEG the device decodes as the CPU path would: 8-bit baseline/extended/progressive
    Huffman, gray or YCbCr (1 or 3 components: 4 is CMYK/YCCK, which nvjpeg does not convert as PIL
    does), ending with its end-of-image marker (a truncated file goes to PIL, which names it as
    corrupt). Anything else is decoded on the CPU."""
    header = _frame_header(data)
    if header is None:
        return False
    marker, precision, components = header
    return (marker in _DEVICE_FRAMES and precision == 8 and components in (1, 3)
            and b"\xff\xd9" in data[-32:])


class EncodedImages(Dataset):
    """A folder data set's ``samples`` [(path, label)] as ``(item, label)``: ``item`` is the file's
    bytes (1-D uint8) for a :func:`device_decodable` JPEG, else the image decoded on the CPU as the
    project's loader does (uint8 (3, H, W), 8-bit RGB). An unreadable file raises
    :class:`CorruptImageError` naming it, or gives None with ``skip_corrupt`` (counted by
    :func:`collate_encoded`)."""

    def __init__(self, samples, skip_corrupt: bool = False):
        self.samples = [(str(path), label) for path, label in samples]
        self.loader = SafeImageLoader(skip=skip_corrupt)

    def __len__(self) -> int:
        return len(self.samples)

    def path(self, index: int) -> str:
        return self.samples[index][0]

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        item = self.read(path)
        return None if item is None else (item, label)

    def read(self, path: str) -> torch.Tensor | None:
        """The bytes of a device-decodable JPEG, else the CPU-decoded image (None: unreadable,
        skipped)."""
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError:
            data = b""  # the loader below raises (or skips) with the project's message
        if device_decodable(data):
            return torch.frombuffer(bytearray(data), dtype=torch.uint8)
        image = self.loader(path)
        return None if image is None else F.pil_to_tensor(image)


def folder_samples(dataset) -> list[tuple[str, int]]:
    """(path, label) of every sample of a folder data set as the training loop indexes it: through
    ``_SkipAware`` (``.base``), the decoded-image cache and ``ClassSubset`` (its ``indices`` and
    ``relabel``)."""
    if hasattr(dataset, "indices") and hasattr(dataset, "relabel"):  # loaders.ClassSubset
        base = folder_samples(dataset.base)
        return [(base[i][0], dataset.relabel[base[i][1]]) for i in dataset.indices]
    for candidate in (dataset, getattr(dataset, "base", None)):
        # ImageFolder and CachedImageDataset / torchvision's Imagenette
        for name in ("samples", "_samples"):
            samples = getattr(candidate, name, None) if candidate is not None else None
            if samples is not None:
                return [(str(path), int(label)) for path, label in samples]
    raise ValueError(f"{type(dataset).__name__} has no (path, label) samples: decode_on_device "
                     "needs a folder data set")


def encoded_images(dataset, skip_corrupt: bool = False) -> EncodedImages:
    """:class:`EncodedImages` over the same samples, in the same order, with the same labels as
    ``dataset``."""
    return EncodedImages(folder_samples(dataset), skip_corrupt)


class SeededEncoded(Dataset):
    """Takes ``(sample_seed, index)`` keys from :class:`~effnetv2_mini.data.loaders.SeededSampler`
    and returns ``((item, seed, path), label)`` (None for a skipped file): the seed goes to the
    device with the bytes."""

    def __init__(self, base: EncodedImages):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        seed, index = key
        item = self.base[index]
        return None if item is None else ((item[0], int(seed), self.base.path(index)), item[1])


@dataclass
class EncodedBatch:
    """A batch on its way to the device: ``items`` (JPEG bytes, 1-D, or CPU-decoded uint8 (3, H,
    W)), each sample's augmentation seed and file path (for error messages)."""

    items: list[torch.Tensor]
    seeds: list[int]
    paths: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def pin_memory(self) -> EncodedBatch:
        """Called by the DataLoader's pin-memory thread (CUDA): page-locked items copy to the GPU
        asynchronously."""
        return EncodedBatch([item.pin_memory() for item in self.items], self.seeds, self.paths)


def collate_encoded(batch):
    """``(EncodedBatch, labels, skipped)`` from :class:`SeededEncoded` items, unreadable (None) ones
    dropped and counted, as :func:`~effnetv2_mini.data.images.collate_skipping` does; ``(None, None,
    skipped)`` if none is left."""
    kept = [sample for sample in batch if sample is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, skipped
    items, seeds, paths = (list(column) for column in zip(*(sample[0] for sample in kept)))
    labels = torch.utils.data.default_collate([sample[1] for sample in kept])
    return EncodedBatch(items, seeds, paths), labels, skipped


# --------------------------------------------------------------------------------------------------
# The device: one batched decode, then each sample's augmentation under its seed
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Draws:
    """What a sample's seed chose: the crop box (top, left, height, width; None for ``finetune``),
    the flip and the RandAugment ops, in order."""

    box: tuple[int, int, int, int] | None
    flipped: bool
    ops: tuple[str, ...] = ()


def _decode_quietly(data, device: torch.device):
    """``torchvision.io.decode_jpeg`` in RGB (gray JPEGs replicated, as PIL's ``convert("RGB")``),
    without the deprecation warning torchvision 0.29 gives on every call (it points to
    TorchCodec)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(data, mode=ImageReadMode.RGB, device=device)


class DevicePipeline:
    """Decode and augment an :class:`EncodedBatch` on ``device``: float32 (N, 3, size, size),
    normalized.

    ``preprocessing`` ``official``: the official crop (:func:`augment.crop_box`, bilinear resize),
    flip, RandAugment (2 ops at ``randaug_magnitude``; 0/None off), normalization; ``finetune``:
    resize the whole image, flip, normalize, :class:`~effnetv2_mini.data.transforms.NoiseCutout`.
    The arguments mean what they mean for :func:`~effnetv2_mini.data.transforms.train_transform`,
    which this reproduces draw for draw; progressive learning (paper section 4) builds one per stage
    (size and magnitude). ``torchvision`` preprocessing is not ported.
    """

    def __init__(self, size: int, randaug_magnitude: float | None = None,
                 preprocessing: str = "official", crop_scale: tuple[float, float] | None = None,
                 randaug_reference: int | None = None, normalize: str | None = None,
                 device: str | torch.device = "cpu"):
        if preprocessing == "torchvision":
            raise NotImplementedError("decode_on_device supports preprocessing 'official' and "
                                      "'finetune'; the 'torchvision' style (v2.RandomResizedCrop, "
                                      "v2.RandAugment) runs in the CPU workers: set "
                                      "decode_on_device=False")
        if preprocessing not in PREPROCESSING:
            raise ValueError(f"unknown preprocessing {preprocessing!r}; choose "
                             f"{', '.join(PREPROCESSING)}")
        self.size, self.preprocessing, self.device = int(size), preprocessing, torch.device(device)
        # validates scale; holds ratio
        self.crop = RandomResizedCropRelative(size, scale=crop_scale or (0.05, 1.0))
        self.randaugment = RandAugment(2, randaug_magnitude, randaug_reference) \
            if randaug_magnitude and preprocessing == "official" else None
        self.mean, self.std = NORMALIZATIONS[normalization_of(preprocessing, normalize)]
        self.cutout = NoiseCutout(self.size // 4) if preprocessing == "finetune" else None

    def __repr__(self) -> str:
        return (f"DevicePipeline(size={self.size}, preprocessing={self.preprocessing!r}, "
                f"randaugment={self.randaugment}, device={self.device})")

    def __call__(self, batch: EncodedBatch) -> torch.Tensor:
        """The batch decoded, augmented (each sample under its seed) and normalized: (N, 3, size,
        size) float32."""
        images = [self.augment(image, seed)[0]
                  for image, seed in zip(self.decode(batch), batch.seeds)]
        # normalized per sample: the cutout noise goes on the normalized image
        if self.preprocessing == "finetune":
            return torch.stack(images)
        return self._normalize(torch.stack(images))

    def decode(self, batch: EncodedBatch) -> list[torch.Tensor]:
        """Every item as uint8 (3, H, W) on the device: all JPEGs in one batched ``decode_jpeg``
        call."""
        images = [item.to(self.device, non_blocking=True) if item.ndim == 3 else item
                  for item in batch.items]
        jpegs = [i for i, item in enumerate(batch.items) if item.ndim == 1]
        if jpegs:
            paths = batch.paths or [f"<item {i} of the batch>" for i in range(len(batch))]
            decoded = self._decode_jpegs([batch.items[i] for i in jpegs], [paths[i] for i in jpegs])
            for i, image in zip(jpegs, decoded):
                images[i] = image
        return images

    def _decode_jpegs(self, data: list[torch.Tensor], paths: list[str]) -> list[torch.Tensor]:
        """One batched call; if it fails, one by one (on the device, then with libjpeg on the CPU)
        to name the file."""
        try:
            return _decode_quietly(data, self.device)
        except RuntimeError:
            return [self._decode_one(item, path) for item, path in zip(data, paths)]

    def _decode_one(self, data: torch.Tensor, path: str) -> torch.Tensor:
        try:
            return _decode_quietly([data], self.device)[0]
        except RuntimeError:
            pass
        try:
            return _decode_quietly([data], torch.device("cpu"))[0].to(self.device)
        except RuntimeError as error:
            raise CorruptImageError(f"cannot decode JPEG {path} (its markers looked whole, so the "
                                    f"workers did not catch it): {error}. Delete or replace the "
                                    "file.") from error

    def augment(self, image: torch.Tensor, seed: int) -> tuple[torch.Tensor, Draws]:
        """One decoded image (uint8 (3, H, W) on the device) augmented under ``seed`` (torch's CPU
        generator, forked): uint8 (3, size, size) for ``official`` (normalized later, as a batch),
        normalized float for ``finetune``."""
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            if self.preprocessing == "finetune":
                return self._finetune(image)
            return self._official(image)

    def _official(self, image: torch.Tensor) -> tuple[torch.Tensor, Draws]:
        """RandomResizedCropRelative -> RandomHorizontalFlip -> RandAugment of ``train_transform``,
        draw for draw."""
        box = crop_box(*image.shape[-2:], scale=self.crop.scale, ratio=self.crop.ratio)
        top, left, height, width = box
        image = _resize(image[:, top:top + height, left:left + width], self.size, truncate=True)
        image, flipped = self._flip(image)
        ops = []
        if self.randaugment is not None:
            # RandAugment.forward's draws, the op names kept
            for _ in range(self.randaugment.num_ops):
                ops.append(OPS[int(torch.randint(len(OPS), ()))])
                image = apply_op(image, ops[-1], self.randaugment.magnitude,
                                 self.randaugment.reference_size)
        return image, Draws(box, flipped, tuple(ops))

    def _finetune(self, image: torch.Tensor) -> tuple[torch.Tensor, Draws]:
        """ToDtype -> Resize((size, size), no antialiasing) -> flip -> Normalize -> NoiseCutout, as
        ``train_transform`` (the official ``tf.image.resize`` on floats)."""
        image = F.to_dtype(image, torch.float32, scale=True)
        image = F.resize(image, [self.size, self.size], interpolation=InterpolationMode.BILINEAR,
                         antialias=False)
        image, flipped = self._flip(image)
        return self.cutout(self._normalize(image)), Draws(None, flipped)

    @staticmethod
    def _flip(image: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``v2.RandomHorizontalFlip(p=0.5)``: it keeps the image when ``torch.rand(1) >= p``, one
        draw either way."""
        flipped = bool(torch.rand(1) < 0.5)
        return (image.flip(-1) if flipped else image), flipped

    def _normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``v2.ToDtype(torch.float32, scale=True)`` then ``v2.Normalize``
        (:data:`transforms.NORMALIZATIONS`)."""
        return F.normalize(F.to_dtype(images, torch.float32, scale=True), list(self.mean),
                           list(self.std))
