"""The optimizer side of the recipe (paper section 5.1; the official ``utils.py`` and ``main.py``).

- :class:`RMSpropTF`: RMSProp as TensorFlow 1 computes it, the official code's optimizer.
- :func:`lr_factor`: linear warm-up, then staircase exponential decay (x0.97 every 2.4
  epochs), cosine or constant.
- :func:`param_groups`: weight decay on convolution and linear weights only
  (not BatchNorm, not biases).
- :func:`make_ema`: the exponential moving average of the weights, with the
  official warm-up of its decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["RMSpropTF", "lr_factor", "param_groups", "build_optimizer", "make_ema", "ema_decay_at"]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1 computes it (``tf.compat.v1.train.RMSPropOptimizer``, the
    official code's optimizer):

        ms  = alpha * ms + (1 - alpha) * g^2        ms starts at ONES (TF1's initializer), not zeros
        mom = momentum * mom + lr * g / sqrt(ms + eps)  eps inside the square root
        w   = w - mom

    PyTorch's RMSprop starts ``ms`` at zero and adds eps outside the root: with zeros, the first
    steps divide the gradient by sqrt(0.1 g^2) and are about 3x the gradient's size times lr, 20-30x
    larger than TF's, which divides by about 1. ``initial_accumulator=0.0`` gives that zero start
    (Keras' RMSprop) for comparison. Weight decay is added to the gradient (the official code adds
    an L2 term to the loss, which is the same)."""

    def __init__(self, params, lr: float, alpha: float = 0.9, eps: float = 1e-3,
                 momentum: float = 0.9, weight_decay: float = 0.0,
                 initial_accumulator: float = 1.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      weight_decay=weight_decay,
                                      initial_accumulator=initial_accumulator))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.Tensor, group: dict) -> None:
        grad = p.grad
        if group["weight_decay"]:
            grad = grad.add(p, alpha=group["weight_decay"])
        state = self.state[p]
        if not state:
            state["square_avg"] = torch.full_like(p, group["initial_accumulator"])
            state["momentum_buffer"] = torch.zeros_like(p)
        square_avg, buf = state["square_avg"], state["momentum_buffer"]
        square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        buf.mul_(group["momentum"]).addcdiv_(grad, square_avg.add(group["eps"]).sqrt_(),
                                             value=group["lr"])
        p.sub_(buf)


def lr_factor(epoch: float, config) -> float:
    """Multiplier of the peak lr at (fractional) ``epoch``, as the official
    ``WarmupLearningRateSchedule``: linear warm-up from 0, then staircase exponential decay (x
    ``decay_rate`` every ``decay_epochs``), a cosine, a flat peak then a cosine over the last
    quarter (``flat_cosine``, ours for short runs), or a constant. Both decays count from step 0,
    not from the end of the warm-up (the warm-up replaces their start)."""
    if epoch < config.warmup_epochs:
        return epoch / config.warmup_epochs
    if config.schedule == "exponential":
        return config.decay_rate ** math.floor(epoch / config.decay_epochs)
    if config.schedule == "constant":
        return 1.0
    # hold the peak, then a cosine to 0 over the last quarter (fastai's fit_flat_cos)
    if config.schedule == "flat_cosine":
        start = FLAT_FRACTION * config.epochs
        return 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, epoch - start)
                                                 / (config.epochs - start))))
    return 0.5 * (1 + math.cos(math.pi * min(1.0, epoch / config.epochs)))


# flat_cosine: the share of the run at the peak lr (fastai's fit_flat_cos, pct_start=0.75)
FLAT_FRACTION = 0.75


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on conv and linear weights only, not on BatchNorm
    parameters or biases (paper recipe)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: nn.Module, name: str, lr: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """``rmsprop`` (TensorFlow's, the paper's), ``adamw`` or ``sgd`` (Nesterov momentum 0.9)."""
    groups = param_groups(model, weight_decay)
    if name == "rmsprop":
        return RMSpropTF(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}; choose rmsprop, adamw or sgd")


def ema_decay_at(decay: float, updates: int) -> float:
    """The official warm-up of the EMA (TensorFlow's ``num_updates``):
    ``min(decay, (1 + n) / (10 + n))``."""
    return min(decay, (1 + updates) / (10 + updates))


def make_ema(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s weights and BatchNorm buffers
    (``torch.optim.swa_utils``)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor):
        d = ema_decay_at(decay, int(num_averaged))
        return averaged * d + current * (1 - d)

    return AveragedModel(model, avg_fn=update, use_buffers=True)
