"""DataLoaders for training: reproducible per-sample augmentation, rebuilt per progressive-learning
stage.

Each training image's augmentation is seeded by (seed, epoch, index): the sampler hands
``(sample_seed, index)`` pairs to the data set wrapper, which runs the transforms under that seed.
So a run interrupted in the middle of an epoch and resumed (skipping the batches already trained)
sees exactly the images an uninterrupted run sees, with any number of workers.

When a stage changes the image size or the augmentation strength (paper section 4, Algorithm 1), the
train loader is rebuilt, and the previous one's worker processes are shut down first so that nothing
leaks.
"""

from __future__ import annotations

import signal
from itertools import islice

import torch
import torch.distributed as dist
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
)

from .datasets import CACHEABLE, get_dataset, is_built_in
from .devicedecode import DevicePipeline, SeededEncoded, collate_encoded, encoded_images
from .holdout import SubsetView, holdout_sets, set_resolution
from .images import collate_skipping
from .transforms import BatchedTrainTransform, eval_transform, train_transform

__all__ = ["SeededSampler", "SeededDataset", "SeededBatches", "ClassSubset", "make_loader",
           "Loaders", "SYNTHETIC_CROP_SCALE", "batches_augmented"]

# The training crop's area range (fraction of the image) on the built-in synthetic sets, unless
# crop_scale is given; photo data sets keep their preprocessing's own
# (effnetv2_mini.data.transforms).
SYNTHETIC_CROP_SCALE = (0.35, 1.0)


class SeededSampler(Sampler):
    """Yields ``(sample_seed, index)`` from a base sampler, skipping the first ``skip`` indices
    (resume).

    Samplers run in the main process, so :meth:`set_epoch` takes effect even with persistent
    workers."""

    def __init__(self, base: Sampler, seed: int):
        self.base, self.seed, self.epoch, self.skip = base, seed, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(epoch)

    def __iter__(self):
        epoch_seed = (self.seed * 1_000_003 + self.epoch * 7_919) % (2**31)
        for index in islice(iter(self.base), self.skip, None):
            yield (epoch_seed + index) % (2**63 - 1), index

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class SeededDataset(torch.utils.data.Dataset):
    """Runs the wrapped data set's random transforms under a per-sample seed.

    Only the CPU generator is seeded (the transforms draw from it): ``torch.manual_seed`` would also
    reseed the GPU generators that dropout draws from, and on a machine without CUDA it records a
    stack trace on every call (torch queues the CUDA seeding for later), which cost about half a
    millisecond per image."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        seed, index = key
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            return self.base[index]


class SeededBatches(torch.utils.data.Dataset):
    """The whole batch at once: takes the batch's ``(sample_seed, index)`` keys (the DataLoader
    hands a batch sampler's keys to ``__getitems__``), reads the images without a transform (uint8
    tensors: the decoded-image cache, the built-in set) and augments them together with
    ``transform`` (a :class:`~effnetv2_mini.data.transforms.BatchedTrainTransform`), each under its
    own seed: the images :class:`SeededDataset` with the per-image transform gives, a batch at a
    time. Items are ``(images, labels, skipped)``, passed through by :func:`collate_batch`."""

    def __init__(self, base, transform: BatchedTrainTransform):
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        return self.__getitems__([key])

    def __getitems__(self, keys):
        seeds, images, labels = [], [], []
        for seed, index in keys:
            item = self.base[index]
            if item is not None:
                seeds.append(seed)
                images.append(item[0].as_subclass(torch.Tensor))
                labels.append(item[1])
        skipped = len(keys) - len(images)
        if not images:
            return None, None, skipped
        return self.transform(images, seeds), torch.utils.data.default_collate(labels), skipped


def collate_batch(batch):
    """:class:`SeededBatches` returns the collated batch already: passed through as it is."""
    return batch


def batches_augmented(config, device: torch.device) -> bool:
    """Whether a run augments its training batches a batch at a time (:class:`SeededBatches`) rather
    than image by image: ``config.batch_augment`` if set, else on a CPU for the ``official``
    preprocessing of images held as uint8 tensors (the decoded-image cache, ``--cache``; the
    built-in sets), where the per-image calls between the steps are what the model waits for
    (bench/bench_loop.py, docs/benchmarks.md). Same draws, same pixels either way."""
    in_memory = is_built_in(config.dataset) or bool(config.cache)  # uint8 tensors, not PIL images
    supported = ((config.preprocessing or "official") == "official"
                 and not config.decode_on_device and in_memory)
    if config.batch_augment is None:
        return supported and device.type == "cpu"
    if config.batch_augment and not supported:
        raise ValueError("batch_augment needs the official preprocessing on the decoded-image "
                         "cache (--cache) or a built-in data set, without decode_on_device; got "
                         f"preprocessing {config.preprocessing!r}, dataset {config.dataset!r}, "
                         f"cache {config.cache!r}")
    return bool(config.batch_augment)


def make_loader(dataset, batch_size: int | None, workers: int, device: torch.device, sampler=None,
                batch_sampler=None, seed: int = 0, collate_fn=collate_skipping) -> DataLoader:
    """The one DataLoader builder: worker processes (persistent), pinned memory on CUDA, unreadable
    images dropped and counted (:func:`~effnetv2_mini.data.images.collate_skipping`). Pass a
    ``batch_sampler`` or a ``sampler`` with ``batch_size`` (then the last, smaller batch is kept:
    evaluation)."""
    batching = {"batch_sampler": batch_sampler} if batch_sampler is not None else {
        "batch_size": batch_size, "sampler": sampler or SequentialSampler(dataset),
        "drop_last": False}
    return DataLoader(dataset, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, collate_fn=collate_fn,
                      generator=torch.Generator().manual_seed(seed),
                      worker_init_fn=_ignore_stop_signals if workers > 0 else None, **batching)


def _ignore_stop_signals(worker_id: int) -> None:
    """Workers leave Ctrl-C and SIGTERM to the main process, which stops at a batch boundary and
    then shuts them down (a worker that died on Ctrl-C would make the main process fail mid-fetch
    instead)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def shutdown(loader: DataLoader | None) -> None:
    """Stop a loader's persistent worker processes now rather than whenever it is
    garbage-collected."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def _shown(names: list, shown: int = 6) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(map(str, names[:shown])) + more


class Loaders:
    """Train and val data sets and loaders of one run: ``config`` is its TrainConfig, ``info`` its
    place among the processes (``rank``, ``world``, ``main``: the engine's DistInfo), ``device``
    where it trains."""

    def __init__(self, config, info, device: torch.device):
        self.config, self.info, self.device = config, info, device
        common = dict(root=config.data_root, skip_corrupt=config.skip_corrupt,
                      **_dataset_options(config))
        if config.cache and not is_built_in(config.dataset):
            common["cache"] = config.cache
        if config.download and info.main:  # rank 0 downloads; the others wait, then open the files
            for split in ("train", "val"):
                get_dataset(config.dataset, split, download=True, **common)
        if info.world > 1:
            dist.barrier()
        self.train_set = get_dataset(config.dataset, "train", **common)
        self.val_set = get_dataset(config.dataset, "val", **common)
        _check_same_classes(config, self.train_set.classes, self.val_set.classes)
        if getattr(config, "holdout_per_class", None):  # evaluate on training photos held out
            second = get_dataset(config.dataset, "train", **common)
            self.train_set, self.val_set = holdout_sets(self.train_set, second,
                                                        config.holdout_per_class,
                                                        _labels(self.train_set))
        if config.classes is not None or config.images_per_class is not None:
            self.train_set = ClassSubset(self.train_set, config.classes, config.images_per_class,
                                         config.seed)
            self.val_set = ClassSubset(self.val_set, config.classes)
        self.num_classes = config.num_classes or len(self.train_set.classes)
        self.class_names = [c if isinstance(c, str) else c[0] for c in self.train_set.classes]
        if self.num_classes < len(self.class_names):  # labels >= num_classes: fail deep in the loss
            raise ValueError(f"num_classes {self.num_classes} is smaller than the "
                             f"{len(self.class_names)} classes of {config.dataset} "
                             f"({_shown(self.class_names)}): drop --num-classes, or train on some "
                             "classes only (TrainConfig.classes, or a folder with fewer class "
                             "folders)")
        if len(self.class_names) < 2:  # every label the same: top-1 100% whatever the model learns
            shown = _shown(self.class_names)
            raise ValueError(f"{config.dataset} has one class ({shown}) to train on: "
                             "a classifier needs two or more (on one it scores 100% whatever it "
                             "learns); add the other classes")
        self._train_key = self._val_key = None
        self._train_loader = self._val_loader = None
        self.batch_augment = batches_augmented(config, device)
        self.batched_transform: BatchedTrainTransform | None = None
        # decode_on_device (folder data sets): workers read JPEG bytes, the training device decodes
        # and augments them (effnetv2_mini.data.devicedecode); self.pipeline is the current stage's.
        # Built here to fail early (preprocessing).
        self.decodes_on_device = bool(config.decode_on_device) and config.dataset in CACHEABLE
        self.pipeline = self._encoded = None
        if self.decodes_on_device:
            self.pipeline = self.device_pipeline(config.image_size, config.randaug_magnitude)
            self._encoded = encoded_images(self.train_set, config.skip_corrupt)
        if config.decode_on_device and not self.decodes_on_device and info.main \
                and not config.quiet:
            print(f"decode_on_device applies to {', '.join(CACHEABLE)}: {config.dataset} is "
                  "prepared by the CPU workers")

    def steps_per_epoch(self) -> int:
        world_batch = self.config.batch_size * self.info.world
        steps = len(self.train_set) // world_batch
        if self.config.max_steps_per_epoch:
            steps = min(steps, self.config.max_steps_per_epoch)
        if steps < 1:
            raise ValueError(f"the training set ({len(self.train_set)} images) is smaller than one "
                             f"batch of {world_batch} (batch size x processes): lower --batch-size")
        return steps

    def train(self, image_size: int, randaug_magnitude: float, epoch: int,
              skip_batches: int) -> DataLoader:
        """The loader for ``epoch`` at this stage's size and augmentation, skipping ``skip_batches``
        (resume)."""
        key = (image_size, randaug_magnitude)
        if key != self._train_key:  # a new stage: re-render / new transform, new workers
            shutdown(self._train_loader)
            if self.decodes_on_device:  # the workers read bytes: no CPU decoding size nor cache
                self.pipeline = self.device_pipeline(image_size, randaug_magnitude)
            else:
                set_resolution(self.train_set, image_size)
            config = self.config
            built_in = is_built_in(config.dataset)
            scale = config.crop_scale or (SYNTHETIC_CROP_SCALE if built_in else None)
            scale = tuple(scale) if scale else None
            if self.batch_augment:  # the data set gives uint8 images; SeededBatches augments them
                self.train_set.transform = None
                self.batched_transform = BatchedTrainTransform(
                    image_size, randaug_magnitude, scale, config.randaug_reference,
                    config.normalize)
            else:
                self.train_set.transform = train_transform(
                    image_size, randaug_magnitude, config.preprocessing, scale,
                    config.randaug_reference, config.normalize)
            self._train_loader = self._new_train_loader()
            self._train_key = key
        self._shuffle.manual_seed(self.config.seed * 10_007 + epoch)
        self._sampler.set_epoch(epoch, skip=skip_batches * self.config.batch_size)
        return self._train_loader

    def _new_train_loader(self) -> DataLoader:
        self._shuffle = torch.Generator()
        if self.info.world > 1:
            base = DistributedSampler(self.train_set, num_replicas=self.info.world,
                                      rank=self.info.rank, shuffle=True, seed=self.config.seed,
                                      drop_last=True)
        else:
            base = RandomSampler(self.train_set, generator=self._shuffle)
        self._sampler = SeededSampler(base, self.config.seed)
        batches = torch.utils.data.BatchSampler(self._sampler, self.config.batch_size,
                                                drop_last=True)
        if self.decodes_on_device:
            dataset, collate = SeededEncoded(self._encoded), collate_encoded
        elif self.batch_augment:
            dataset, collate = SeededBatches(self.train_set, self.batched_transform), collate_batch
        else:
            dataset, collate = SeededDataset(self.train_set), collate_skipping
        return make_loader(dataset, None, self.config.workers, self.device, batch_sampler=batches,
                           seed=self.config.seed, collate_fn=collate)

    def device_pipeline(self, image_size: int, randaug_magnitude: float) -> DevicePipeline:
        """The device-side decoding and augmentation of a stage (``decode_on_device``): the stage's
        image size and RandAugment magnitude (progressive learning, paper section 4), the run's
        preprocessing, the training device."""
        config = self.config
        return DevicePipeline(image_size, randaug_magnitude, config.preprocessing,
                              tuple(config.crop_scale) if config.crop_scale else None,
                              config.randaug_reference, config.normalize, device=self.device)

    def val(self, eval_size: int) -> DataLoader:
        """The validation loader at ``eval_size`` (each process evaluates its own shard under
        DDP)."""
        if self._val_key != eval_size:
            shutdown(self._val_loader)
            set_resolution(self.val_set, eval_size)
            self.val_set.transform = eval_transform(eval_size, self.config.preprocessing,
                                                    crop=not is_built_in(self.config.dataset),
                                                    normalize=self.config.normalize)
            shard = self.val_set if self.info.world == 1 else Subset(
                self.val_set, range(self.info.rank, len(self.val_set), self.info.world))
            self._val_loader = make_loader(shard, self.config.batch_size, self.config.workers,
                                           self.device)
            self._val_key = eval_size
        return self._val_loader

    def close(self) -> None:
        shutdown(self._train_loader)
        shutdown(self._val_loader)


class ClassSubset(SubsetView):
    """Some classes of a data set (relabelled 0..k-1 in the order given), optionally only the first
    ``per_class`` images of each class after a seeded shuffle: transfer experiments pretrain on some
    classes and fine-tune on the others with few images per class. ``transform`` and
    ``set_resolution`` reach the data set."""

    def __init__(self, base, classes: list[int] | None = None, per_class: int | None = None,
                 seed: int = 0):
        labels = _labels(base)
        classes = list(range(len(base.classes))) if classes is None else list(classes)
        unknown = [c for c in classes if not 0 <= c < len(base.classes)]
        if unknown or len(set(classes)) != len(classes):
            raise ValueError(f"classes {classes} must be distinct indices of the data set's "
                             f"{len(base.classes)} classes")
        shuffle = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(labels), generator=shuffle).tolist() if per_class else \
            range(len(labels))
        relabel = {c: i for i, c in enumerate(classes)}
        counts, self.indices = dict.fromkeys(classes, 0), []
        for index in order:
            label = labels[index]
            if label in relabel and (per_class is None or counts[label] < per_class):
                counts[label] += 1
                self.indices.append(index)
        self.indices.sort()
        self.base, self.relabel = base, relabel
        self.classes = [base.classes[c] for c in classes]

    def __getitem__(self, index: int):
        item = self.base[self.indices[index]]
        return None if item is None else (item[0], self.relabel[item[1]])


def _labels(dataset) -> list[int]:
    """Every sample's label, without loading any image."""
    for candidate in (dataset, getattr(dataset, "base", None)):
        if candidate is not None and getattr(candidate, "targets", None) is not None:
            return list(candidate.targets)
        for name in ("samples", "_samples"):  # (path, label): ImageFolder, torchvision's Imagenette
            if candidate is not None and getattr(candidate, name, None) is not None:
                return [label for _, label in getattr(candidate, name)]
    raise ValueError(f"cannot read the labels of {type(dataset).__name__} without loading its "
                     "images")


def _check_same_classes(config, train_classes, val_classes) -> None:
    """Class-per-folder data sets number the classes of each split from its own folders: a class
    missing from one split would shift every label after it, silently."""
    if list(train_classes) != list(val_classes):
        only_train = sorted(set(map(str, train_classes)) - set(map(str, val_classes)))
        only_val = sorted(set(map(str, val_classes)) - set(map(str, train_classes)))
        raise ValueError(f"the train and val splits of {config.dataset!r} under {config.data_root} "
                         f"have different classes (only in train: {only_train[:5] or 'none'}; "
                         f"only in val: {only_val[:5] or 'none'}): their labels would not match. "
                         "Give both splits the same class folders.")


def _dataset_options(config) -> dict:
    if is_built_in(config.dataset):
        options = dict(config.synthetic)
        if config.num_classes is not None:
            options.setdefault("num_classes", config.num_classes)
        return options
    if config.dataset == "imagenette":
        return {"size": config.imagenette_size}
    if config.dataset == "imagenet21k" and config.num_classes is not None:
        return {"num_classes": config.num_classes}
    return {}
