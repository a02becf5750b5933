"""Where a model runs: picking the device, mixed precision, memory, and the errors that mean "out of
memory".

One place for what training, measurement and the experiments all need: the device is picked once,
``cuda`` then ``mps`` then ``cpu``, and can be forced; on CUDA, AMP in bfloat16 where supported.
"""

from __future__ import annotations

import platform
import resource
import sys
from contextlib import nullcontext

import torch

__all__ = ["pick_device", "synchronize", "amp_dtype", "autocast", "speed_defaults", "OUT_OF_MEMORY",
           "peak_memory_mb", "device_name"]

# What an allocation that does not fit raises: CUDA's error, or the CPU allocator's.
OUT_OF_MEMORY = (torch.OutOfMemoryError, MemoryError)


def pick_device(requested: str | None = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; any other value is used as given (and checked)."""
    if requested in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or "
                         "mps") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} was requested but CUDA is not available; use "
                           "--device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None)
                                     and torch.backends.mps.is_available()):
        raise RuntimeError(f"device {requested!r} was requested but MPS is not available; use "
                           "--device cpu")
    return device


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's (for the conditions a number was measured under)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (timings are meaningless without it on GPUs)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def amp_dtype(device: torch.device) -> torch.dtype:
    """bfloat16, except on CUDA GPUs without it (pre-Ampere), which get float16 (and need a
    GradScaler)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def speed_defaults(device: torch.device) -> dict:
    """What a run uses when its config leaves ``amp`` and ``channels_last`` to the device (None).
    CUDA: both (bf16 autocast, or fp16 with a GradScaler before Ampere). CPU: channels_last only.
    Measured on a 2-core CPU (``bench/bench_vs_torchvision.py --candidates``, docs/benchmarks.md):
    channels_last trains 1.12x faster (V2-S, 128 px) and 1.39x (EfficientNet-B0, 64 px) than
    contiguous fp32; bf16 autocast gains at 128 px (1.36x) but loses at 64 px (0.83x), so it stays a
    choice (``--amp``) there."""
    cuda = device.type == "cuda"
    return {"amp": cuda, "channels_last": cuda or device.type == "cpu"}


def autocast(device: torch.device, enabled: bool):
    """``torch.autocast`` in :func:`amp_dtype` when ``enabled``, else a context that does
    nothing."""
    if not enabled:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype(device))


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: ``max_memory_allocated``; otherwise the process's peak resident set size
    (``ru_maxrss``)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
