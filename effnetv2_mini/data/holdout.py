"""Photos held out of the training split, to choose settings on without reading the validation
photos.

The paper (section 4) and the official code choose their regularization on a split held out of
ImageNet's training set ("minival"), never on the validation set the results are reported on:
notebook 07 chooses its fixed-size baselines' regularization this way
(:mod:`effnetv2_mini.study.experiments.faster`).
"""

from __future__ import annotations

import torch

__all__ = ["hold_out", "HeldOut", "SubsetView", "set_resolution", "holdout_sets",
           "HOLDOUT_SEED"]

# one held-out set for every run and seed: the grid's points compare on the same photos
HOLDOUT_SEED = 1234


def hold_out(labels: list[int], per_class: int,
             seed: int = HOLDOUT_SEED) -> tuple[list[int], list[int]]:
    """``(kept, held)``: indices of ``labels`` split so that ``held`` has ``per_class`` of each
    class (a seeded shuffle; a class with fewer keeps at least one for training) and ``kept`` the
    rest; both sorted, disjoint."""
    if per_class < 1:
        raise ValueError(f"holdout_per_class must be a whole number >= 1, got {per_class}")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    totals: dict[int, int] = {}
    for label in labels:
        totals[label] = totals.get(label, 0) + 1
    counts = dict.fromkeys(totals, 0)
    held = []
    for index in order:
        label = labels[index]
        if counts[label] < min(per_class, totals[label] - 1):
            counts[label] += 1
            held.append(index)
    chosen = set(held)
    return [i for i in range(len(labels)) if i not in chosen], sorted(held)


def set_resolution(dataset, size: int) -> None:
    """Data sets that render or cache per size (the built-in set) switch to the stage's size."""
    if hasattr(dataset, "set_resolution") and getattr(dataset, "resolution", None) != size:
        dataset.set_resolution(size)


class SubsetView(torch.utils.data.Dataset):
    """Some samples of a data set ``base`` by index (``self.indices``), through which
    ``transform``, ``resolution`` and ``set_resolution`` reach ``base``, so that the loaders treat
    the view as the data set itself."""

    base: torch.utils.data.Dataset
    indices: list[int]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.base[self.indices[index]]

    @property
    def transform(self):
        return self.base.transform

    @transform.setter
    def transform(self, value) -> None:
        self.base.transform = value

    @property
    def resolution(self):
        return getattr(self.base, "resolution", None)

    def set_resolution(self, size: int) -> None:
        set_resolution(self.base, size)


class HeldOut(SubsetView):
    """Some samples of a data set by index, with their ``targets`` and the set's ``classes``."""

    def __init__(self, base, indices: list[int], labels: list[int]):
        self.base, self.indices = base, list(indices)
        self.targets = [labels[i] for i in self.indices]
        self.classes = base.classes


def holdout_sets(train_set, second_copy, per_class: int,
                 labels: list[int]) -> tuple[HeldOut, HeldOut]:
    """``(train, held)``: the training split without its held-out photos, and those photos from
    ``second_copy`` (the same split opened again, so that it gets the evaluation transform)."""
    kept, held = hold_out(labels, per_class)
    return HeldOut(train_set, kept, labels), HeldOut(second_copy, held, labels)
