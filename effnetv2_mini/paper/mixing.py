"""Batch-level mixing as the official code does it (``datasets.py``:
``mixup``, ``cutmix``, ``mixing``).

Mixup (one of the regularizers progressive learning schedules, paper section 4): each example gets
its own weight ``lam ~ Beta(alpha, alpha)``, replaced by ``max(lam, 1 - lam)`` so that the example
keeps the larger share, and is blended with the example at the mirrored position of the batch
(``batch[::-1]``); labels are blended alike.

CutMix (used by the official code, scheduled like mixup; the paper does not list it): each example
gets a box whose area fraction is ``1 - Beta(alpha, alpha)``-sized (side ``sqrt(1 - a)`` of the
image, centred on a uniformly drawn pixel, clipped) filled with the mirrored example's pixels; the
label weight is **one** number for the whole batch half: the mean box area.

With both alphas, the first half of the batch is mixed up and the second half cut-mixed (the
official split). Targets become soft (probabilities); the loss takes them as they are.
"""

from __future__ import annotations

import torch

__all__ = ["Mixer", "make_mixer"]


def _beta(alpha: float, count: int) -> torch.Tensor:
    """``count`` draws of Beta(alpha, alpha) from torch's global random
    numbers (saved in checkpoints)."""
    return torch.distributions.Beta(float(alpha), float(alpha)).sample((count,))


def mixup(images: torch.Tensor, targets: torch.Tensor,
          alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Official mixup: per-example ``max(lam, 1 - lam)``, paired with the mirrored batch."""
    lam = _beta(alpha, images.shape[0]).to(images.device)
    lam = torch.maximum(lam, 1 - lam)
    mixed = images * lam.view(-1, 1, 1, 1) + images.flip(0) * (1 - lam.view(-1, 1, 1, 1))
    return mixed, targets * lam.view(-1, 1) + targets.flip(0) * (1 - lam.view(-1, 1))


def cutmix_masks(count: int, height: int, width: int, alpha: float) -> torch.Tensor:
    """One box mask per example (1 inside the box): side ``sqrt(1 - area)`` of the image,
    ``area ~ Beta``, centred on a uniformly drawn pixel and clipped to the image
    (official ``cutmix_mask``)."""
    masks = torch.zeros(count, 1, height, width)
    areas = _beta(alpha, count)
    for i in range(count):
        cy, cx = int(torch.randint(0, height, (1,))), int(torch.randint(0, width, (1,)))
        ratio = float(torch.sqrt(1 - areas[i]))
        half_h, half_w = int(ratio * height) // 2, int(ratio * width) // 2
        masks[i, :, max(0, cy - half_h):min(height, cy + half_h),
              max(0, cx - half_w):min(width, cx + half_w)] = 1.0
    return masks


def cutmix(images: torch.Tensor, targets: torch.Tensor,
           alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Official CutMix: per-example boxes from the mirrored batch; one label
    weight, the boxes' mean area."""
    masks = (cutmix_masks(images.shape[0], images.shape[-2], images.shape[-1], alpha)
             .to(images.device, images.dtype))
    mixed = (1 - masks) * images + masks * images.flip(0)
    area = masks.mean()
    return mixed, (1 - area) * targets + area * targets.flip(0)


class Mixer:
    """``mixer(images, labels)`` -> mixed images and soft targets, for one epoch's alphas."""

    def __init__(self, num_classes: int, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        self.num_classes, self.mixup_alpha, self.cutmix_alpha = (num_classes, mixup_alpha,
                                                                 cutmix_alpha)

    def __call__(self, images: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = (labels if labels.ndim == 2
                   else torch.nn.functional.one_hot(labels, self.num_classes).to(images.dtype))
        if self.mixup_alpha and self.cutmix_alpha:
            half = images.shape[0] // 2
            first = mixup(images[:half], targets[:half], self.mixup_alpha)
            second = cutmix(images[half:], targets[half:], self.cutmix_alpha)
            return torch.cat([first[0], second[0]]), torch.cat([first[1], second[1]])
        if self.mixup_alpha:
            return mixup(images, targets, self.mixup_alpha)
        return cutmix(images, targets, self.cutmix_alpha)

    def __repr__(self) -> str:
        return f"Mixer(mixup_alpha={self.mixup_alpha:g}, cutmix_alpha={self.cutmix_alpha:g})"


def make_mixer(num_classes: int, mixup_alpha: float = 0.0,
               cutmix_alpha: float = 0.0) -> Mixer | None:
    """A :class:`Mixer`, or None when both alphas are 0 (the batch is used as it is)."""
    if mixup_alpha < 0 or cutmix_alpha < 0:
        raise ValueError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
    if not mixup_alpha and not cutmix_alpha:
        return None
    return Mixer(num_classes, mixup_alpha, cutmix_alpha)
