"""The training loop: one for every experiment (the recipe of paper section 5.1, progressive
learning of section 4).

    from effnetv2_mini.engine.config import TrainConfig
    from effnetv2_mini.engine.loop import fit
    summary = fit(TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=3, recipe="simple",
                              out_dir="runs/demo"))
    # progressive learning: a ProgressiveSchedule from effnetv2_mini.paper.progressive
    fit(config, schedule)

:func:`fit` opens the run (:func:`~effnetv2_mini.engine.rundir.open_run`: run directory, settings
check, resume), then for each epoch asks the schedule for the epoch's plan and runs
:func:`train_one_epoch` (which starts with :func:`~effnetv2_mini.paper.progressive.apply_stage`:
Algorithm 1's stage reaching the model and the loader) and :func:`end_epoch` (evaluation, metrics,
checkpoints). :func:`evaluate` scores a model. :class:`StopRequests` turns Ctrl-C and SIGTERM into
a stop at a batch boundary. Under torchrun: :func:`effnetv2_mini.engine.launch.launch`.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import nullcontext
from itertools import islice

import torch
from torch import nn
from tqdm import tqdm

from ..data.devicedecode import EncodedBatch
from ..paper.progressive import EpochPlan, ProgressiveSchedule, apply_stage, constant_schedule
from .config import TrainConfig
from .devices import autocast, peak_memory_mb
from .distributed import DistInfo, all_reduce, barrier
from .errors import TrainingDiverged
from .rundir import (
    Run,
    RunState,
    append_metrics,
    diverged_note,
    open_run,
    read_summary,
    reported_top1,
    save_checkpoint,
)

__all__ = ["fit", "train_one_epoch", "end_epoch", "evaluate", "StopRequests", "TrainingDiverged",
           "reported_top1"]


def fit(config: TrainConfig, schedule: ProgressiveSchedule | None = None,
        extra_config: dict | None = None, stop_after_steps: int | None = None,
        on_epoch_start=None) -> dict:
    """Train (or resume, or do nothing if finished) the run in ``config.out_dir``; return its
    summary.

    ``schedule`` (progressive learning, paper section 4) gives each epoch's image size and
    regularization; its epochs and eval size replace the config's, and it is recorded in
    ``config.json``. Without one, size and regularization are the config's throughout. Every recipe
    rule is applied by :mod:`effnetv2_mini.engine.build`, for this and every other caller.
    ``stop_after_steps`` requests a stop (as Ctrl-C does) after that many optimizer steps of this
    call, for tests. ``on_epoch_start(epoch, model, loader, mixer)`` is called before each epoch's
    first step (inspection, logging).
    """
    run = open_run(config, schedule, extra_config)
    if isinstance(run, dict):
        return run
    config = run.config
    schedule = schedule or constant_schedule(config.epochs, config.image_size, config.eval_size,
                                             config.dropout, config.randaug_magnitude,
                                             config.mixup_alpha)
    with StopRequests(run, stop_after_steps) as stop:
        try:
            for epoch in range(run.state.epoch, config.epochs):
                plan = schedule.stage_at(epoch)
                stats = train_one_epoch(run, epoch, plan, stop, on_epoch_start)
                end_epoch(run, epoch, plan, stats)
        finally:
            run.data.close()
            run.release()
    barrier(run.info)
    return read_summary(run.out)


def train_one_epoch(run: Run, epoch: int, plan: EpochPlan, stop: StopRequests,
                    on_epoch_start=None) -> dict:
    """One epoch (or the rest of an interrupted one): returns the epoch's loss sum, images seen,
    images skipped and seconds. A stop request (Ctrl-C, SIGTERM) ends it at a batch boundary with a
    checkpoint."""
    config, state = run.config, run.state
    loader, mixer = apply_stage(plan, run.model, run.data, epoch, state.batches_done,
                                config.cutmix_alpha, config.cutmix_with_mixup)
    if on_epoch_start is not None:
        on_epoch_start(epoch, run.model, loader, mixer)
    run.model.train()
    _restore_gradients(run)
    sums = dict(state.partial)
    seen_before, start = sums["seen"], time.perf_counter()
    total = run.steps_per_epoch - state.batches_done
    progress = tqdm(islice(loader, total), total=total, desc=f"epoch {epoch + 1}/{config.epochs}",
                    leave=False, disable=config.quiet or not run.info.main, file=sys.stdout,
                    mininterval=0.5 if sys.stdout.isatty() else 10.0)
    for images, labels, skipped in progress:
        sums["skipped"] += skipped
        if images is not None:
            loss = _train_step(run, images, labels, mixer, epoch)
            sums["seen"] += len(labels)  # images may be an EncodedBatch (decode_on_device)
            sums["loss_sum"] += loss * len(labels)
            rate = ((sums["seen"] - seen_before) * run.info.world
                    / max(1e-9, time.perf_counter() - start))
            progress.set_postfix(loss=f"{loss:.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}",
                                 img_s=f"{rate:.0f}", refresh=False)
        state.batches_done += 1
        if stop.requested():  # whatever the accumulation: its gradients go into the checkpoint
            progress.close()
            _save_interrupted(run, sums, time.perf_counter() - start)
    progress.close()
    seconds = time.perf_counter() - start
    return {**sums, "timed": sums["seen"] - seen_before, "seconds": seconds}


def _train_step(run: Run, images: torch.Tensor | EncodedBatch, labels: torch.Tensor, mixer,
                epoch: int) -> float:
    """One optimizer step: (decode,) mix, forward, loss, backward, update, learning-rate step, EMA
    update."""
    # decode_on_device: decode and augment on the training device
    if isinstance(images, EncodedBatch):
        images = run.data.pipeline(images)
    images = images.to(run.device, non_blocking=True)
    labels = labels.to(run.device, non_blocking=True)
    if run.channels_last:
        images = images.to(memory_format=torch.channels_last)
    if mixer is not None:
        images, labels = mixer(images, labels)
    with autocast(run.device, run.amp):
        loss = run.criterion(run.forward(images), labels)
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch + 1}, "
                               f"batch {run.state.batches_done + 1}; "
                               f"{diverged_note(run)}")
    steps = run.config.accumulate  # gradient accumulation: one optimizer step per `steps` batches
    done = run.state.batches_done + 1
    # an epoch's last group may be shorter
    update = done % steps == 0 or done == run.steps_per_epoch
    # DDP: all-reduce once per optimizer step
    skip_sync = not update and hasattr(run.forward, "no_sync")
    with run.forward.no_sync() if skip_sync else nullcontext():
        run.scaler.scale(loss / steps).backward()
    if update:
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
        # the schedule counts epochs in batches, whatever the accumulation
        for _ in range(done % steps or steps):
            run.scheduler.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
    return loss.item()


def _save_interrupted(run: Run, sums: dict, seconds: float) -> None:
    """A stop request: record the batches trained so far in ``last.pt`` (with the gradients
    accumulated since the last optimizer step, if any), then stop (KeyboardInterrupt)."""
    run.state.elapsed += seconds
    run.state.partial = {k: sums[k] for k in ("loss_sum", "seen", "skipped")}
    run.state.accumulation = _pending_gradients(run)
    if run.info.main:
        save_checkpoint(run, [run.last_path])
        if not run.config.quiet:
            pending = run.state.accumulation
            kept = (f" (with the gradients of the {pending['batches']} batch(es) accumulated "
                    "since the last optimizer step)") if pending else ""
            print(f"\ninterrupted: checkpoint written to {run.last_path}{kept}; rerun the same "
                  "command to resume")
    raise KeyboardInterrupt


def _pending_gradients(run: Run) -> dict | None:
    """The gradients of the batches trained since the last optimizer step (``--accumulate``), as the
    checkpoint keeps them: ``{"batches", "accumulate", "kept": "gradients", "gradients": {name:
    tensor}}``; None after a step. Under DDP each process's local sums are averaged first, as the
    next step's all-reduce would have done."""
    done, steps = run.state.batches_done, run.config.accumulate
    pending = 0 if done == run.steps_per_epoch else done % steps  # an epoch's last batch steps
    if not pending:
        return None
    grads = {name: p.grad.detach().clone() for name, p in run.model.named_parameters()
             if p.grad is not None}
    if run.info.world > 1:
        for grad in grads.values():
            torch.distributed.all_reduce(grad)
            grad /= run.info.world
    return {"batches": pending, "accumulate": steps, "kept": "gradients",
            "gradients": {name: grad.cpu() for name, grad in grads.items()}}


def _restore_gradients(run: Run) -> None:
    """Put the gradients a stop kept back on the parameters, so that the group of ``--accumulate``
    batches goes on where it stopped (bit for bit); kept under another ``--accumulate``
    (--resume-with-changes) they are dropped."""
    pending, run.state.accumulation = run.state.accumulation, None
    if not pending:
        return
    if pending["accumulate"] != run.config.accumulate:
        if run.info.main:
            print(f"the gradients of {pending['batches']} batch(es) accumulated at --accumulate "
                  f"{pending['accumulate']} before the stop are dropped (now --accumulate "
                  f"{run.config.accumulate})")
        return
    for name, parameter in run.model.named_parameters():
        if name in pending["gradients"]:
            parameter.grad = pending["gradients"][name].to(parameter.device)


def end_epoch(run: Run, epoch: int, plan: EpochPlan, stats: dict) -> dict:
    """Evaluate, write the epoch's metrics line, then the checkpoints (best.pt before last.pt, so
    that a failure in between leaves last.pt at the previous epoch and a rerun redoes this one)."""
    state = run.state
    state.elapsed += stats["seconds"]
    loss_sum, seen, skipped, timed = all_reduce(
        [stats["loss_sum"], float(stats["seen"]), float(stats["skipped"]), float(stats["timed"])],
        run.info, run.device)
    evaluated = (epoch + 1) % run.config.eval_every == 0 or epoch + 1 == run.config.epochs
    metrics = {"epoch": epoch + 1, "stage": plan.stage, "train_loss": loss_sum / max(1.0, seen),
               **(_scores(run) if evaluated else {}), "lr": run.scheduler.get_last_lr()[0],
               "image_size": plan.image_size, "dropout": run.model.dropout.p,
               "randaug_magnitude": plan.randaug_magnitude, "mixup_alpha": plan.mixup_alpha,
               "images_per_sec": timed / max(1e-9, stats["seconds"]),
               "epoch_seconds": stats["seconds"], "wall_time": state.elapsed,
               "peak_memory_mb": peak_memory_mb(run.device), "skipped_images": int(skipped)}
    run.model.train()
    is_best = evaluated and reported_top1(metrics) > state.best_top1
    state.best_top1 = max(state.best_top1, reported_top1(metrics)) if evaluated else state.best_top1
    state.epoch, state.batches_done, state.partial = epoch + 1, 0, RunState().partial
    if run.info.main:
        append_metrics(run, metrics)
        finished = state.epoch == run.config.epochs
        save_checkpoint(run, ([run.out / "best.pt"] if is_best else []) + [run.last_path], finished)
        _print_epoch(run, metrics)
    return metrics


def _scores(run: Run) -> dict:
    loader = run.data.val(run.config.eval_size)
    val = evaluate(run.model, loader, run.device, run.amp, run.channels_last, run.info)
    scores = {"val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"]}
    if run.ema is not None:
        ema = evaluate(run.ema.module, loader, run.device, run.amp, run.channels_last, run.info)
        scores.update(ema_top1=ema["top1"], ema_top5=ema["top5"])
    return scores


def _print_epoch(run: Run, metrics: dict) -> None:
    if run.config.quiet:
        return
    ema = f", EMA top-1 {metrics['ema_top1']:.1f}%" if "ema_top1" in metrics else ""
    top1 = (f", top-1 {metrics['val_top1']:.1f}%{ema}" if "val_top1" in metrics
            else " (not evaluated)")
    print(f"epoch {metrics['epoch']}/{run.config.epochs}: loss {metrics['train_loss']:.3f}{top1}, "
          f"{metrics['images_per_sec']:.0f} img/s, {metrics['image_size']}px")


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False,
             channels_last: bool = False, info: DistInfo | None = None) -> dict:
    """Top-1 / top-5 accuracy (%), mean cross-entropy, images scored and unreadable images skipped
    over ``loader`` (all ranks together under DDP)."""
    info = info or DistInfo()
    model.eval()
    correct1 = correct5 = loss_sum = count = skipped = 0.0
    for images, labels, unreadable in loader:
        skipped += unreadable
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        # soft (multi-label, normalized) targets: score against the strongest label
        if labels.ndim == 2:
            labels = labels.argmax(1)
        with autocast(device, amp):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == labels).sum().item()
        correct5 += (top5 == labels[:, None]).any(1).sum().item()
        count += labels.numel()
    correct1, correct5, loss_sum, count, skipped = all_reduce(
        [correct1, correct5, loss_sum, count, skipped], info, device)
    scored = max(count, 1)
    return {"top1": 100 * correct1 / scored, "top5": 100 * correct5 / scored,
            "loss": loss_sum / scored, "count": int(count), "skipped": int(skipped)}


class StopRequests:
    """Defers SIGINT (Ctrl-C) and SIGTERM (SLURM time limits, ``timeout``) during training to the
    end of the current batch, so that the checkpoint written then holds exactly the batches it says
    it does. A second signal stops at once. Under DDP every process stops at the same batch (the
    request is all-reduced)."""

    def __init__(self, run: Run, after_steps: int | None = None):
        self.run, self.after_steps, self.steps, self.flag = run, after_steps, 0, False
        self.previous: dict = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.flag = True
        # a second signal: at once
        signal.signal(signum, self.previous.get(signum, signal.default_int_handler))

    def requested(self) -> bool:
        """Called after each batch: True if training must stop now."""
        self.steps += 1
        flag = self.flag or (self.after_steps is not None and self.steps >= self.after_steps)
        if self.run.info.world > 1:
            flag = all_reduce([float(flag)], self.run.info, self.run.device)[0] > 0
        return flag
