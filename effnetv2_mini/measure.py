"""Measurement: parameters, FLOPs (as multiply-adds, like the paper) and throughput (images/s).

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
multiply-add of convolutions and matrix products; the paper (and the official code's profiler) reports
multiply-adds, so :func:`count_macs` halves the count. Element-wise work (BN, SiLU, SE scaling, pooling)
is not counted, as in the paper. Counting runs on the ``meta`` device when the model lives there, so
even V2-XL at 512 px is counted in well under a second without allocating memory.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs", "benchmark_throughput", "pick_device", "synchronize"]


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def count_macs(model: nn.Module, image_size: int, batch_size: int = 1) -> int:
    """Multiply-adds of one forward pass at ``image_size`` (per batch of ``batch_size``)."""
    device = _model_device(model)
    x = torch.zeros(batch_size, 3, image_size, image_size, device=device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() // 2


def pick_device(requested: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; any other value is used as given."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was requested but CUDA is not available; use --device cpu")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return nullcontext()
    dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def benchmark_throughput(
    model: nn.Module,
    image_size: int,
    batch_size: int,
    mode: str = "train",
    warmup: int = 3,
    repeats: int = 10,
    amp: bool = False,
    channels_last: bool = False,
    num_classes: int | None = None,
) -> dict:
    """Images per second of a training step (forward, loss, backward, SGD step) or of inference.

    Runs ``warmup`` untimed iterations, then ``repeats`` timed ones on the model's device, and reports the
    median (and all timings, so that callers can judge the spread). The model's weights change during a
    ``train`` benchmark: pass a copy if that matters.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    device = _model_device(model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).to(memory_format=memory_format)
    if num_classes is None:
        num_classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    target = torch.randint(0, num_classes, (batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4) if mode == "train" else None
    scaler_needed = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if scaler_needed else None

    def step():
        if mode == "train":
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, amp):
                loss = nn.functional.cross_entropy(model(x), target)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        else:
            with torch.no_grad(), _autocast(device, amp):
                model(x)

    model.train(mode == "train")
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "mode": mode,
        "image_size": image_size,
        "batch_size": batch_size,
        "device": str(device),
        "amp": amp,
        "channels_last": channels_last,
        "seconds_per_step": median,
        "images_per_sec": batch_size / median,
        "times": times,
    }
