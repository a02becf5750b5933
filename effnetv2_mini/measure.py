"""Measurement: parameters, FLOPs (as multiply-adds, like the paper) and throughput (images/s).

FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts 2 FLOPs per
multiply-add of convolutions and matrix products; the paper (and the official code's profiler)
reports multiply-adds, so :func:`count_macs` halves the count. Element-wise work (BN, SiLU, SE
scaling, pooling) is not counted, as in the paper. Counting runs on the ``meta`` device when the
model lives there, so even V2-XL at 512 px is counted in well under a second
without allocating memory.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .engine.devices import OUT_OF_MEMORY, autocast, pick_device, synchronize
from .paper.configs import ModelConfig, get_config
from .paper.model import build_model

__all__ = ["count_params", "count_macs", "benchmark_throughput", "peak_step_memory",
           "max_batch_size", "block_throughput", "describe"]


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


def _time_steps(step, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``step`` after ``warmup`` untimed
    ones (device synchronized)."""
    for _ in range(warmup):
        step()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def benchmark_throughput(model: nn.Module, image_size: int, batch_size: int, mode: str = "train",
                         warmup: int = 3, repeats: int = 10, amp: bool = False,
                         channels_last: bool = False, num_classes: int | None = None) -> dict:
    """Images per second of a training step (forward, loss, backward, SGD step) or of inference.

    Runs ``warmup`` untimed iterations, then ``repeats`` timed ones on the model's device, and
    reports the median (and all timings, so that callers can judge the spread). The model's weights
    change during a ``train`` benchmark: pass a copy if that matters.
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
    device = _model_device(model)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    x = (torch.randn(batch_size, 3, image_size, image_size, device=device)
         .to(memory_format=memory_format))
    if num_classes is None:
        num_classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    target = torch.randint(0, num_classes, (batch_size,), device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4) if mode == "train" else None
    scaler_needed = amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    scaler = torch.amp.GradScaler("cuda") if scaler_needed else None

    def step():
        if mode == "train":
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):
                loss = nn.functional.cross_entropy(model(x), target)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
        else:
            with torch.no_grad(), autocast(device, amp):
                model(x)

    model.train(mode == "train")
    times = _time_steps(step, device, warmup, repeats)
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


# --------------------------------------------------------------------------------------------------
# Memory: peak per training step, and the largest batch that fits a budget (paper Table 2)
# --------------------------------------------------------------------------------------------------

def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


_MALLOC_PINNED = False


def _pin_malloc_threshold() -> None:
    """glibc keeps freed memory of large blocks once its dynamic mmap threshold has grown, so the
    resident set stops following live tensors. Pinning the threshold at 128 KiB
    (``mallopt(M_MMAP_THRESHOLD)``, once per process) makes every tensor above that size mmapped and
    returned on free, so peak RSS measures the step."""
    global _MALLOC_PINNED
    if _MALLOC_PINNED:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: the measure is then an upper-bound-ish estimate, noisier
    _MALLOC_PINNED = True


def _reset_cpu_peak() -> bool:
    """Reset the process's peak resident set size (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _training_step(model: nn.Module, batch_size: int, image_size: int, device: torch.device,
                   amp: bool, channels_last: bool) -> None:
    x = torch.randn(batch_size, 3, image_size, image_size, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    classes = [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features
    target = torch.randint(0, classes, (batch_size,), device=device)
    model.train()
    with autocast(device, amp):
        loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    model.zero_grad(set_to_none=True)


def peak_step_memory(model: nn.Module, batch_size: int, image_size: int, amp: bool = False,
                     channels_last: bool = False) -> int:
    """Peak memory (bytes) of one training step (forward, loss, backward)
    of ``model`` on its device.

    CUDA: ``torch.cuda.max_memory_allocated`` (weights, activations, gradients). CPU (Linux): the
    growth of the process's peak resident set size over the step, after resetting the peak through
    ``/proc/self/clear_refs``; it counts activations and gradients beyond what the process already
    held. To make the resident set follow live tensors, the first call pins glibc's mmap threshold
    at 128 KiB for the process (see ``_pin_malloc_threshold``). A model's first step also counts
    one-time allocations. Measure CPU figures in a fresh process (a notebook kernel, a script): in a
    process that already grew and freed much memory we have seen it under-count. Raises an
    out-of-memory error (see ``OUT_OF_MEMORY``) if the step does not fit.
    """
    device = _model_device(model)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        _training_step(model, batch_size, image_size, device, amp, channels_last)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    _pin_malloc_threshold()
    if not _reset_cpu_peak():
        raise RuntimeError("peak memory on CPU needs Linux's /proc/self/clear_refs; not "
                           "available on this system")
    before = _proc_status("VmRSS")
    _training_step(model, batch_size, image_size, device, amp, channels_last)
    return max(0, _proc_status("VmHWM") - before)


def max_batch_size(fits, limit: int = 4096) -> tuple[int, int | None]:
    """The largest batch size for which ``fits(batch)`` is true, by doubling then bisection.

    ``fits`` returns True/False or raises an out-of-memory error (counted as False; CUDA's cache is
    emptied). Returns ``(largest that fits, smallest that does not)``; the second is
    None if ``limit`` still fits.
    """

    def ok(batch: int) -> bool:
        try:
            return bool(fits(batch))
        except OUT_OF_MEMORY:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return False

    if not ok(1):
        return 0, 1
    low, high = 1, 2
    while high <= limit and ok(high):
        low, high = high, high * 2
    if high > limit:
        return (limit, None) if ok(limit) else _bisect(ok, low, limit)
    return _bisect(ok, low, high)


def _bisect(ok, low: int, high: int) -> tuple[int, int]:
    """``ok(low)`` is true and ``ok(high)`` false: narrow down to neighbours."""
    while high - low > 1:
        middle = (low + high) // 2
        if ok(middle):
            low = middle
        else:
            high = middle
    return low, high


def block_throughput(stage, resolution: int, batch_size: int, fused: bool, mode: str = "train",
                     amp: bool = False, channels_last: bool = False,
                     device: str | torch.device = "cpu", warmup: int = 2,
                     repeats: int = 5) -> float:
    """Images/s of one stage's first block built as MBConv or as Fused-MBConv (the per-stage view of
    paper section 3.2: depthwise convolutions are slow in early stages on accelerators).

    ``stage`` is a :class:`~effnetv2_mini.paper.configs.StageArgs`; the block gets ``resolution`` x
    ``resolution`` inputs with the stage's input channels.
    """
    from .paper.blocks import FusedMBConv, MBConv

    block_cls = FusedMBConv if fused else MBConv
    block = block_cls(stage.in_channels, stage.out_channels, stage.kernel, stage.stride,
                      stage.expand_ratio, None if fused else stage.se_ratio).to(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    block.to(memory_format=memory_format)
    x = (torch.randn(batch_size, stage.in_channels, resolution, resolution, device=device)
         .to(memory_format=memory_format))
    device = torch.device(device)

    def step():
        if mode == "train":
            block.train()
            with autocast(device, amp):
                out = block(x)
            out.float().mean().backward()
        else:
            block.eval()
            with torch.no_grad(), autocast(device, amp):
                block(x)

    return batch_size / statistics.median(_time_steps(step, device, warmup, repeats))


def describe(model: str | ModelConfig, image_size: int | None = None, throughput: bool = False,
             batch_size: int = 8, device: str = "auto", num_classes: int = 1000) -> dict:
    """Parameters and FLOPs (multiply-adds) at ``image_size`` (default: eval size), and with
    ``throughput`` training and inference images/s on ``device``."""
    config = model if isinstance(model, ModelConfig) else get_config(model)
    size = image_size or config.eval_size
    with torch.device("meta"):
        skeleton = build_model(config, num_classes=num_classes)
    result = {"model": config.name, "width": config.width_mult, "depth": config.depth_mult,
              "image_size": size, "params": count_params(skeleton),
              "macs": count_macs(skeleton, size), "stem": config.stem_channels,
              "head": config.head_width}
    if throughput:
        run_device = pick_device(device)
        net = build_model(config, num_classes=num_classes).to(run_device)
        cuda = run_device.type == "cuda"
        for mode in ("train", "eval"):
            r = benchmark_throughput(net, size, batch_size, mode=mode, amp=cuda, channels_last=cuda,
                                     warmup=2, repeats=5)
            result[f"{mode}_images_per_sec"] = r["images_per_sec"]
        result["device"] = str(run_device)
    return result
