"""Data sets by name: the built-in ones, Imagenette, ImageNet, class-per-folder trees and the
transfer sets.

``get_dataset(name, split, root)`` is the one entry point; ``dataset_or_fallback`` falls back to the
built-in set, loudly, when a data set is missing and cannot be downloaded. What is applied to the
images lives elsewhere: the transforms in :mod:`effnetv2_mini.data.transforms`, the training and
evaluation loaders in :mod:`effnetv2_mini.data.loaders`, the decoded-image cache in
:mod:`effnetv2_mini.data.cache`, decoding itself in :mod:`effnetv2_mini.data.images` (on a GPU,
:mod:`effnetv2_mini.data.devicedecode`). Names:

=============== ====================================================================================
``synthetic``   the built-in data set (:mod:`effnetv2_mini.data.synthetic`): no download, for smoke
                runs and tests
``synthetic_b`` the second built-in task, for transfer: 4 classes (stripes, checker, diamond) that
                ``synthetic`` with ``num_classes=6`` never shows
``imagenette``  ``torchvision.datasets.Imagenette`` (``size`` 160px / 320px / full), downloads when
                online
``imagenet``    ImageNet-1k: ``root/train/<wnid>/*.JPEG``, ``root/val/<wnid>/*.JPEG``
                (every training image: the official code's 25,021-image minival is not held out,
                docs/paper.md)
``imagenet21k`` ImageNet-21k in the same class-per-folder layout
``imagefolder`` any class-per-folder tree: ``root/<split>/<class>/<image>``
``cifar10``, ``cifar100``, ``flowers102``, ``stanford_cars``   torchvision's transfer sets;
                Flowers102 trains on its train and val splits together (2,040 images, as the
                paper and the official code)
=============== ====================================================================================

A missing data set raises :class:`DatasetNotFoundError` naming the data set, the path looked at and
how to get it. A corrupt image in a folder data set raises :class:`CorruptImageError` naming the
file, or, with ``skip_corrupt=True``, is dropped from its batch and counted (the training loop logs
the count).
"""

from __future__ import annotations

import os
import tarfile
import urllib.error
from pathlib import Path

import torch
from torch.utils.data import Dataset

from .images import SafeImageLoader
from .synthetic import TRANSFER_CLASSES, SyntheticShapes

__all__ = [
    "DATASETS",
    "DatasetNotFoundError",
    "get_dataset",
    "dataset_or_fallback",
    "check_data",
    "loud_notice",
    "is_built_in",
    "imagenette_url",
    "MultiLabelImageFolder",
    "CACHEABLE",
    "TRAIN_IMAGES",
]

# Training images of the named data sets as this module reads them (the plans' batch and step
# arithmetic, docs/paper.md): torchvision's splits (Flowers102: train + val), every ImageNet
# training image (the official code holds out a 25,021-image minival), Imagenette's train split.
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "flowers102": 2_040, "stanford_cars": 8_144,
                "imagenet": 1_281_167, "imagenette": 9_469}

IMAGENETTE_SIZES = ("160px", "320px", "full")


class DatasetNotFoundError(FileNotFoundError):
    """A data set that is not on disk and could not be downloaded. The message says how to get
    it."""

    def __str__(self) -> str:
        return str(self.args[0])


def _how_to_get(name: str, path: Path) -> str:
    folder_layout = (
        f"Arrange it as {path}/train/<class>/<image> and {path}/val/<class>/<image> (one folder "
        "per class)."
    )
    return {
        "imagenette": (
            "Run with download=True (CLI: --download) on a machine that is online, or download "
            "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz (or -160 / the full "
            f"imagenette2.tgz) and put the .tgz (or its unpacked folder) into {path}."
        ),
        "imagenet": "Download ImageNet-1k from https://image-net.org/ (registration needed). "
                    f"{folder_layout} {path}/imagenet/train and {path}/imagenet/val are accepted "
                    "too.",
        "imagenet21k": "Download ImageNet-21k (winter 2021 release) from https://image-net.org/. "
                       f"{folder_layout} {path}/imagenet21k/train and .../val are accepted too.",
        "imagefolder": folder_layout,
    }.get(name,
          "Run with download=True (CLI: --download) on a machine that is online; files go to "
          f"{path}.")


def _not_found(name: str, path: Path, reason: str = "") -> DatasetNotFoundError:
    detail = f" ({reason})" if reason else ""
    return DatasetNotFoundError(f"data set {name!r} not found at {path}{detail}. "
                                f"{_how_to_get(name, path)}")


class _SkipAware(Dataset):
    """Applies the transform only to images that loaded; unreadable ones come out as None.

    :meth:`set_resolution` follows the stage's image size: a cached data set (``base``, see
    :mod:`effnetv2_mini.data.cache`) switches to that size's cache; a ``draft_loader`` decodes JPEGs
    for it."""

    def __init__(self, base: Dataset, transform, draft_loader: SafeImageLoader | None = None):
        self.base, self.transform, self.draft_loader = base, transform, draft_loader
        self.classes = getattr(base, "classes", None)
        self._resolution = None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index):
        item = self.base[index]
        if item is None:
            return None
        image, label = item
        if image is None:
            return None
        return (self.transform(image) if self.transform is not None else image), label

    @property
    def resolution(self) -> int | None:
        """The image size the data set was last set to (None: never set, images decoded in full)."""
        return getattr(self.base, "resolution", self._resolution)

    def set_resolution(self, size: int) -> None:
        """Decode for training or evaluation at ``size`` px (nothing to do for a plain, full-decode
        data set)."""
        if hasattr(self.base, "set_resolution"):
            self.base.set_resolution(size)
        elif self.draft_loader is not None:
            from .cache import cache_side

            self.draft_loader.draft_size = cache_side(size)
            self._resolution = size


def imagenette_url(size: str = "320px") -> str:
    """Where torchvision downloads Imagenette of this ``size`` from."""
    from torchvision.datasets import Imagenette

    if size not in IMAGENETTE_SIZES:
        raise ValueError(f"imagenette size must be one of {', '.join(IMAGENETTE_SIZES)}, got "
                         f"{size!r}")
    return Imagenette._ARCHIVES[size][0]


def _imagenette(root: Path, split: str, size: str, download: bool, loader):
    from torchvision.datasets import Imagenette

    url = imagenette_url(size)
    folder = root / Path(url).stem
    archive = root / Path(url).name
    # fetched by hand: unpack it (no checksum: it may be a mirror)
    if not folder.exists() and archive.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
    try:
        return Imagenette(str(root), split=split, size=size,
                          download=download and not folder.exists(), loader=loader)
    except (urllib.error.URLError, OSError) as error:
        raise _not_found("imagenette", root, f"download failed: {error}") from error
    except RuntimeError as error:
        raise _not_found("imagenette", root, str(error).split(".")[0]) from error


class MultiLabelImageFolder(Dataset):
    """An ImageNet-21k-style tree in which one image may be filed under several classes (the same
    file name in several class folders). Its label is the normalized multi-hot vector: each of its k
    classes gets 1/k (paper section 5.2; the official code normalizes 21k labels the same way)."""

    EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

    def __init__(self, folder: str | Path, loader, num_classes: int | None = None):
        folder = Path(folder)
        self.classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
        self.num_classes = num_classes or len(self.classes)
        if self.num_classes < len(self.classes):
            raise ValueError(f"{folder} has {len(self.classes)} class folders but num_classes is "
                             f"{self.num_classes}")
        by_name: dict[str, list] = {}
        for index, name in enumerate(self.classes):
            for file in sorted((folder / name).iterdir()):
                if file.suffix.lower() in self.EXTENSIONS:
                    by_name.setdefault(file.name, [str(file), []])[1].append(index)
        self.samples = [(path, labels) for path, labels in by_name.values()]
        self.loader = loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, labels = self.samples[index]
        target = torch.zeros(self.num_classes)
        target[labels] = 1.0 / len(labels)
        return self.loader(path), target


def _image_folder(name: str, root: Path, split: str, loader, num_classes: int | None = None):
    from torchvision.datasets import ImageFolder

    folder = root / split
    if not folder.is_dir():
        raise _not_found(name, root, f"no folder {folder}")
    if name == "imagenet21k":
        return MultiLabelImageFolder(folder, loader, num_classes)
    if split == "val":
        _warn_if_val_is_train(root)
    try:
        dataset = ImageFolder(str(folder), loader=loader)
    except FileNotFoundError as error:
        raise _not_found(name, root, str(error)) from error
    _drop_repeats_through_links(dataset, folder)
    return dataset


def _drop_repeats_through_links(dataset, folder: Path) -> None:
    """ImageFolder follows links into subfolders: a link to a parent folder (a loop) lists each
    image again at every depth up to the system's limit. Files reached again through nested folders
    are counted once, loudly; the images directly in a class folder (the usual layout) keep their
    class."""
    real_class_dirs: dict[str, str] = {}

    def real(path: str) -> tuple[str, bool]:
        parts = Path(path).relative_to(folder).parts
        if len(parts) > 2:
            return os.path.realpath(path), True
        if parts[0] not in real_class_dirs:
            real_class_dirs[parts[0]] = os.path.realpath(folder / parts[0])
        return os.path.join(real_class_dirs[parts[0]], parts[1]), False

    located = [(*real(path), path, label) for path, label in dataset.samples]
    seen = {place for place, nested, _, _ in located if not nested}
    kept = [(path, label) for place, nested, path, label in located if not nested]
    for place, nested, path, label in located:
        if nested and place not in seen:
            seen.add(place)
            kept.append((path, label))
    if len(kept) < len(dataset.samples):
        print(loud_notice(f"{folder}: {len(dataset.samples) - len(kept):,} image paths lead to "
                          "files already listed (a symbolic link to a parent folder?); each file "
                          "is used once. Remove the link to silence this."))
        order = {path: i for i, (path, _) in enumerate(dataset.samples)}
        kept.sort(key=lambda sample: order[sample[0]])
        dataset.samples = dataset.imgs = kept
        dataset.targets = [label for _, label in kept]


def _warn_if_val_is_train(root: Path) -> None:
    """A validation split that is the training split (a link, a copy of the folder's link) makes
    validation accuracy training accuracy: say so loudly."""
    train, val = root / "train", root / "val"
    if not train.is_dir():
        return
    same = os.path.samefile(train, val) or any(
        (train / c.name).is_dir() and os.path.samefile(train / c.name, c)
        for c in val.iterdir() if c.is_dir())
    if same:
        print(loud_notice(f"{val} is (or holds folders that are) {train}: validation images are "
                          "training images, so the validation accuracy measures memorisation, not "
                          "generalisation. Point val/ at held-out images."))


class _TrainAndVal(torch.utils.data.ConcatDataset):
    """Two splits of a torchvision data set as one (Flowers102's train and val: the paper's and the
    official code's training set, ``tfds_split='train+validation'``), with ``classes`` and
    ``targets``."""

    def __init__(self, train, val):
        super().__init__([train, val])
        self.classes = train.classes
        self.targets = [*train._labels, *val._labels]


def _flowers102(tvd, root: Path, split: str, download: bool):
    """Flowers102: training on its train + val splits (2,040 images), evaluation on its test split
    (6,149), as the official datasets.py FlowersInput (train ``tfds_split='train+validation'``, eval
    ``'test'``)."""
    if split == "val":
        return tvd.Flowers102(str(root), split="test", download=download)
    splits = (tvd.Flowers102(str(root), split=s, download=download) for s in ("train", "val"))
    return _TrainAndVal(*splits)


def _torchvision_transfer(name: str, root: Path, split: str, download: bool):
    import torchvision.datasets as tvd

    constructors = {
        "cifar10": lambda: tvd.CIFAR10(str(root), train=split == "train", download=download),
        "cifar100": lambda: tvd.CIFAR100(str(root), train=split == "train", download=download),
        "flowers102": lambda: _flowers102(tvd, root, split, download),
        "stanford_cars": lambda: tvd.StanfordCars(str(root),
                                                  split="train" if split == "train" else "test",
                                                  download=download),
    }
    try:
        return constructors[name]()
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise _not_found(name, root,
                         str(error).splitlines()[0] if str(error)
                         else type(error).__name__) from error


BUILT_IN = ("synthetic", "synthetic_b")  # generated in code: no files, no download


def is_built_in(name: str) -> bool:
    """True for the data sets generated in code (:mod:`effnetv2_mini.data.synthetic`)."""
    return name in BUILT_IN


DATASETS = ("synthetic", "synthetic_b", "imagenette", "imagenet", "imagenet21k", "imagefolder",
            "cifar10", "cifar100", "flowers102", "stanford_cars")


def _folder_root(name: str, root: Path) -> Path:
    """ImageNet trees may sit in ``root`` itself or in ``root/imagenet`` (``root/imagenet21k``)."""
    if (name in ("imagenet", "imagenet21k") and not (root / "train").is_dir()
            and (root / name).is_dir()):
        return root / name
    return root


CACHEABLE = ("imagenette", "imagenet", "imagefolder")  # folder data sets that ``cache=`` applies to


def _data_root(name: str, root: str | Path | None) -> Path:
    """``root`` as a path; None and the empty name are refused (``Path("")`` is the current
    folder)."""
    if root is None:
        raise ValueError(f"data set {name!r} needs a data root (CLI: --data-root DIR)")
    if not str(root).strip():
        raise ValueError(f"the data root of {name!r} is empty (--data-root ''): name the folder "
                         "holding the data set (an empty name would read the current folder)")
    return Path(root).expanduser()


def check_data(name: str, root: str | Path | None, **options) -> None:
    """Raise what training on ``name`` under ``root`` would raise, without downloading anything and
    without listing every image of a large tree: an unknown name, a missing, empty or file data
    root, missing splits, class folders without images, a tree of one class (a classifier of one
    class scores 100% whatever it learns). ``options``: as :func:`get_dataset` (``size`` of
    Imagenette)."""
    _check_name_and_split(name, "train")
    if is_built_in(name):
        return
    path = _data_root(name, root)
    if not path.exists():
        raise _not_found(name, path, "no such folder")
    if not path.is_dir():
        raise _not_found(name, path, "it is a file, not a folder")
    if name not in ("imagenet", "imagenet21k", "imagefolder"):
        for split in ("train", "val"):
            get_dataset(name, split, root=path, download=False, **options)
        return
    path = _folder_root(name, path)
    for split in ("train", "val"):
        folder = path / split
        if not folder.is_dir():
            raise _not_found(name, path, f"no folder {folder}")
        classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        empty = [c for c in classes if not _holds_an_image(folder / c)]
        if not classes or empty:
            what = "no class folders"
            if empty:
                what = f"class folders without images: {', '.join(empty[:5])}"
            raise _not_found(name, path, f"{folder} holds {what}")
        if split == "train" and len(classes) < 2:
            raise ValueError(f"{folder} holds one class folder ({classes[0]}): a classifier "
                             "needs two classes or more (trained on one, it scores 100% whatever "
                             "it learns); add the other classes' folders")


def _holds_an_image(folder: Path) -> bool:
    """True once one file with an image extension is found under ``folder`` (what ImageFolder
    reads)."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    for _, _, files in os.walk(folder, followlinks=True):
        if any(f.lower().endswith(IMG_EXTENSIONS) for f in files):
            return True
    return False


def _check_name_and_split(name: str, split: str) -> None:
    if name not in DATASETS:
        import difflib

        close = difflib.get_close_matches(name, DATASETS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown data set {name!r}.{hint} Known: {', '.join(DATASETS)}")
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")


def get_dataset(
    name: str,
    split: str = "train",
    root: str | Path | None = None,
    transform=None,
    download: bool = False,
    skip_corrupt: bool = False,
    cache: str | Path | bool | None = None,
    decode_size: int | None = None,
    **options,
) -> Dataset:
    """The data set ``name`` (see the module table) under the data root ``root``: torchvision's sets
    in their own layout there (``root/imagenette2-320``, ``root/cifar-10-batches-py`` ...), ImageNet
    trees in ``root`` or ``root/imagenet`` (``root/imagenet21k``), an ``imagefolder`` tree in
    ``root``.

    ``options``: ``synthetic`` takes ``num_samples, resolution, difficulty, seed, num_classes``;
    ``imagenette`` takes ``size``. Items are ``(image, label)``; with ``skip_corrupt`` an unreadable
    image gives ``None`` (use :func:`collate_skipping`).

    Decoding cost that follows the image size (folder data sets; see
    :mod:`effnetv2_mini.data.cache`):

    - ``cache``: None/False decodes every JPEG in full at every epoch (the default); True keeps
      decoded images, pre-resized to a short side of ``size + 32``, in the default cache folder
      (``$EFFNETV2_CACHE`` or ``~/.cache/effnetv2-mini/decoded``), a string or path in that folder.
      Applies to ``imagenette``, ``imagenet`` and ``imagefolder`` (labels exactly as without it);
      ``imagenet21k`` and torchvision's transfer sets read as today, the built-in sets render in
      memory (``cache`` is their in-memory flag).
    - ``decode_size``: the image size to decode for at first; without a cache, JPEGs are decoded in
      draft mode for it. ``dataset.set_resolution(size)`` moves either to a new size (the training
      loop calls it per stage).
    """
    _check_name_and_split(name, split)
    if is_built_in(name) and cache is not None:
        options.setdefault("cache", bool(cache))  # the built-in sets' in-memory rendering flag
    if name == "synthetic":
        return SyntheticShapes(split=split, transform=transform, **options)
    if name == "synthetic_b":
        options.pop("num_classes", None)
        return SyntheticShapes(split=split, transform=transform, classes=TRANSFER_CLASSES,
                               **options)
    root = _folder_root(name, _data_root(name, root))
    unknown = set(options) - ({"size", "num_classes"} if name == "imagenet21k" else {"size"})
    if unknown:
        raise ValueError(f"options {', '.join(sorted(unknown))} do not apply to data set {name!r}")
    loader = SafeImageLoader(skip=skip_corrupt)
    if name == "imagenette":
        base = _imagenette(root, split, options.get("size", "320px"), download, loader)
    elif name in ("imagenet", "imagenet21k", "imagefolder"):
        base = _image_folder(name, root, split, loader, options.get("num_classes"))
    else:
        base = _torchvision_transfer(name, root, split, download)
    if cache and name in CACHEABLE:
        return _SkipAware(_cached(base, cache, skip_corrupt, decode_size), transform)
    dataset = _SkipAware(base, transform, draft_loader=loader if decode_size else None)
    if decode_size:
        dataset.set_resolution(decode_size)
    return dataset


def _cached(base: Dataset, cache: str | Path | bool, skip_corrupt: bool,
            decode_size: int | None) -> Dataset:
    """A :class:`~effnetv2_mini.data.cache.CachedImageDataset` over ``base``'s samples, classes and
    labels."""
    from .cache import CachedImageDataset

    # ImageFolder / torchvision's Imagenette
    samples = base.samples if hasattr(base, "samples") else base._samples
    return CachedImageDataset(samples, base.classes, class_to_idx=base.class_to_idx,
                              skip_corrupt=skip_corrupt, cache_dir=None if cache is True else cache,
                              resolution=decode_size)


def loud_notice(message: str) -> str:
    """``NOTICE: message`` between two rows of ``!``: what a batch must not let scroll by unseen."""
    return f"{'!' * 100}\nNOTICE: {message}\n{'!' * 100}"


def dataset_or_fallback(name: str, root: str | Path | None, download: bool = False,
                        **options) -> tuple[str, str]:
    """``(name to use, notice)``: ``name`` if its training split can be opened (or downloaded), else
    ``"synthetic"`` with a loud notice saying why, so that a batch without data still runs end to
    end. The notice is empty when no fallback happened. A name that is no data set is an error (a
    typo must not train on the built-in set)."""
    if is_built_in(name):
        return name, ""
    _check_name_and_split(name, "train")  # a misspelt name is an error, never a silent fallback
    try:
        get_dataset(name, "train", root=root, download=download, **options)
        return name, ""
    except (DatasetNotFoundError, ValueError) as error:
        notice = loud_notice(f"{error}\nFalling back to the built-in synthetic data set: these "
                             f"numbers are NOT {name} numbers.")
        return "synthetic", notice
