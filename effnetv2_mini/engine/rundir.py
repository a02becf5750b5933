"""A run's directory, and resuming it: everything the training loop leaves to others.

A run owns a directory: ``config.json`` (every resolved setting, library version, device),
``metrics.jsonl`` (one line per epoch), ``last.pt`` (written atomically every epoch and on Ctrl-C)
and ``best.pt``. Rerunning a directory resumes where it stopped (mid-epoch too); a finished run is a
no-op. Each training sample's augmentation is seeded by (seed, epoch, index), so a resumed run
matches an uninterrupted one exactly on CPU.

- :func:`open_run`: check the directory's settings, build data, model, optimizer and EMA, restore
  the checkpoint.
- :func:`append_metrics`, :func:`save_checkpoint`: what the loop writes at the end of an epoch,
  atomically.
- :func:`read_history`, :func:`read_summary`: a run directory read back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..data.loaders import Loaders
from ..paper.optim import lr_factor
from ..paper.progressive import ProgressiveSchedule
from .build import build_objects, ema_decay_per_step, resolve
from .checkpoint import (
    TEMP_SUFFIX,
    atomic_save,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    non_finite_tensors,
    rng_state,
    set_rng_state,
)
from .config import TrainConfig, bn_momentum_per_batch, global_batch, surely_mistaken
from .devices import device_name
from .distributed import DistInfo, setup
from .errors import TrainingDiverged

__all__ = ["Run", "RunState", "open_run", "append_metrics", "save_checkpoint", "diverged_note",
           "reported_top1", "summarize_metrics", "read_summary", "read_history", "IDENTITY_FIELDS",
           "FIXED_FIELDS", "FREE_FIELDS"]

# Settings that define a run: resuming a directory with different values is refused, or with
# --resume-with-changes recorded in config.json's "changes" with the epoch (and batch) from which
# they apply.
IDENTITY_FIELDS = (
    "model", "model_overrides", "init_from", "freeze_backbone", "dataset", "epochs", "batch_size",
    "image_size", "eval_size", "recipe", "optimizer", "lr", "base_lr", "warmup_epochs", "schedule",
    "weight_decay", "label_smoothing", "ema_decay", "seed", "num_classes", "randaug_magnitude",
    "mixup_alpha", "cutmix_alpha", "dropout", "drop_path_rate", "classes", "images_per_class",
    "bn_momentum", "preprocessing", "normalize", "randaug_reference", "cutmix_with_mixup",
    "ema_reference_batch", "cache", "decode_on_device", "accumulate", "data_root", "synthetic",
    "max_steps_per_epoch", "imagenette_size", "head_init_classes", "decay_rate", "decay_epochs",
    "crop_scale", "eval_every", "skip_corrupt", "sync_bn", "amp", "channels_last", "compile",
    "init_from_ema", "holdout_per_class",
)
# What a run is: even --resume-with-changes cannot change these (the weights and data would not
# fit).
FIXED_FIELDS = ("model", "model_overrides", "init_from", "init_from_ema", "freeze_backbone",
                "dataset", "num_classes", "classes", "images_per_class", "batch_size",
                "holdout_per_class")
# Settings that change neither what is trained nor what is recorded: free on resume. The device is
# recorded where it matters, as the effective device, amp, channels_last and process count
# (RUNTIME_RECORD).
FREE_FIELDS = ("out_dir", "download", "quiet", "resume_with_changes", "workers", "device",
               "batch_augment")
# config.json's effective runtime settings: a resume under other ones (another machine, --nproc) is
# recorded too.
RUNTIME_RECORD = ("device", "amp", "channels_last", "world_size")


@dataclass
class RunState:
    """Where a run stands: what a checkpoint records besides the weights."""

    epoch: int = 0  # epochs completed
    batches_done: int = 0  # batches of the current epoch already trained (an interrupted epoch)
    best_top1: float = -1.0
    elapsed: float = 0.0  # training seconds so far
    partial: dict = field(default_factory=lambda: {"loss_sum": 0.0, "seen": 0, "skipped": 0})
    # a stop between two optimizer steps (gradient accumulation): the gradients of the batches
    # trained since the last step, kept so that the resumed run adds the rest of the group to them
    # (engine.loop._pending_gradients)
    accumulation: dict | None = None


@dataclass(kw_only=True)
class Run:
    """Everything one training needs, built once by :func:`open_run`."""

    config: TrainConfig
    info: DistInfo
    device: torch.device
    out: Path
    data: Loaders
    model: nn.Module
    forward: nn.Module  # the model as called in training: DDP-wrapped and/or compiled
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    ema: nn.Module | None
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    amp: bool
    channels_last: bool
    steps_per_epoch: int
    state: RunState = field(default_factory=RunState)
    # the open lock file of the run directory (main process), see _lock_directory
    lock: object = None

    def release(self) -> None:
        """Give the run directory's lock back (the process's end, kill -9 included, gives it back
        too)."""
        if self.lock is not None:
            _HELD_LOCKS.discard(self.lock)
            self.lock.close()
            self.lock = None

    @property
    def last_path(self) -> Path:
        return self.out / "last.pt"

    @property
    def metrics_path(self) -> Path:
        return self.out / "metrics.jsonl"


# --------------------------------------------------------------------------------------------------
# Opening a run: settings check, building, resuming
# --------------------------------------------------------------------------------------------------


def open_run(config: TrainConfig, schedule: ProgressiveSchedule | None = None,
             extra_config: dict | None = None) -> Run | dict:
    """Open the run in ``config.out_dir``: resolve its settings
    (:func:`effnetv2_mini.engine.build.resolve`), check them against the directory's, then either
    return the summary of a finished run, or build data, model, optimizer, EMA
    (:func:`~effnetv2_mini.engine.build.build_objects`) and restore the checkpoint."""
    config, rule = resolve(config, schedule)
    extra_config = _run_record(schedule, rule, extra_config)
    info, device = setup(config.device)
    out = Path(config.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the run directory {out} (--out) is a file: give a directory (it holds "
                         "config.json, metrics.jsonl and the checkpoints)")
    changed = _check_settings(out / "config.json", config)
    ours = (out / "config.json").exists()
    foreign = [] if ours else [n for n in ("metrics.jsonl", "last.pt", "best.pt")
                               if (out / n).exists()]
    # another program's files (or a run whose config.json was deleted): never mixed with this run's
    if foreign:
        raise ValueError(f"{out} holds {', '.join(foreign)} but no config.json: it is not a run "
                         "directory of effnetv2 train (another tool's, or its config.json was "
                         "deleted); give another --out")
    checkpoint = load_checkpoint(out / "last.pt") if (out / "last.pt").exists() else None
    if (checkpoint is not None and checkpoint.get("finished")
            and checkpoint["epoch"] >= config.epochs):
        if info.main and not config.quiet:
            print(f"{out}: run already finished ({checkpoint['epoch']} epochs); nothing to do")
        return checkpoint["summary"]
    # before any data or model is built
    schedule = _check_schedule(out / "config.json", extra_config, config.resume_with_changes)
    if changed or schedule:
        changes = _changes(out / "config.json", config, changed, checkpoint, schedule)
        extra_config = {**(extra_config or {}), "changes": changes}
    torch.manual_seed(config.seed)
    data = Loaders(config, info, device)
    config.num_classes = data.num_classes
    objects = build_objects(config, info, device, data.steps_per_epoch(), fresh=checkpoint is None)
    run = Run(config=config, info=info, device=device, out=out, data=data,
              steps_per_epoch=data.steps_per_epoch(), **vars(objects))
    if rule is not None and info.main and not config.quiet and checkpoint is None:
        print(_rule_note(config, rule))
    if checkpoint is not None:
        _restore(run, checkpoint, changed)
    if info.main:
        run.lock = _lock_directory(out)
        _write_run_files(run, extra_config)
    return run


def _run_record(schedule: ProgressiveSchedule | None, rule: dict | None,
                extra: dict | None) -> dict:
    """What config.json records beside the settings: the progressive schedule, or the fixed-size
    rule's regularization and where it comes from."""
    record = dict(extra or {})
    if schedule is not None:
        record = {"progressive": schedule.to_dict(), **record}
    if rule is not None:
        record["fixed_size_regularization"] = rule
    return record


def _rule_note(config: TrainConfig, rule: dict) -> str:
    values = ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in rule["fields"].items())
    return (f"recipe {config.recipe} at a fixed size: {values} from {rule['source']} (a "
            "progressive schedule trains Algorithm 1 instead; set the values to choose others)")


LOCK_NAME = ".lock"
# The lock files this process holds. A forked child (a DataLoader worker) shares the open file and
# with it the flock: after kill -9 of the training, its orphaned workers held the lock for seconds
# and the rerun was refused ("in use by another training (pid N)" with N dead). Children close their
# copy at once; the parent keeps the lock.
_HELD_LOCKS: set = set()


def _close_inherited_locks() -> None:
    for handle in list(_HELD_LOCKS):
        handle.close()  # this copy only: the flock stays with the parent's open file
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


def _lock_directory(out: Path):
    """Hold ``out/.lock`` (an flock) while the run trains, so that a second training started into
    the same directory is refused, naming the holder, instead of interleaving its epochs and
    checkpoints with the first's."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock
        return None
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK_NAME, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise RuntimeError(f"the run directory {out} is in use by another training ({holder})"
                           f"{_gone(holder)}: wait for it to end, or stop it and rerun this "
                           "command to resume; or give another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since "
                 f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    _HELD_LOCKS.add(handle)
    return handle


def _gone(holder: str) -> str:
    """What to say when the lock's named holder on this machine no longer runs (processes it started
    hold it)."""
    words = holder.split()
    here = len(words) >= 4 and words[3].rstrip(",") == socket.gethostname()
    if not here or words[0] != "pid" or not words[1].isdigit():
        return ""
    try:
        os.kill(int(words[1]), 0)
    except ProcessLookupError:
        return (f"; pid {words[1]} is gone, and processes it started (data-loader workers) still "
                "hold the lock: they exit within seconds, so rerun then")
    except PermissionError:  # alive, another user's
        pass
    return ""


def _check_schedule(path: Path, extra_config: dict | None, resume_with_changes: bool) -> dict:
    """An interrupted progressive run resumed without its schedule, or with another one, is refused
    (its record in config.json would be replaced and the epochs would follow other sizes); with
    ``resume_with_changes`` the change is returned, ``{"progressive": [before, after]}``, for
    config.json's "changes" ({} if none)."""
    if not path.exists():
        return {}
    before = json.loads(path.read_text()).get("progressive")
    # as config.json holds it
    after = json.loads(json.dumps((extra_config or {}).get("progressive")))
    if before == after:
        return {}
    if resume_with_changes:
        return {"progressive": [before, after]}
    had = "no progressive schedule"
    if before is not None:
        had = f"the progressive schedule of {before.get('source')!r}"
    asks = "none" if after is None else repr(after.get("source"))
    raise ValueError(f"{path.parent} holds a run trained with {had}; this command asks for {asks}: "
                     "rerun the run's own command (its config.json records it), or use another "
                     "output directory")


def _check_settings(path: Path, config: TrainConfig) -> list[str]:
    """Refuse to continue a run directory with other settings (before anything else, finished runs
    included), unless ``resume_with_changes`` asks for it; return the fields that change."""
    if not path.exists():
        return []
    try:
        previous = json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as error:  # truncated or edited by hand
        raise ValueError(f"{path} cannot be read ({type(error).__name__}: {error}): it records the "
                         f"settings of the run in {path.parent}. Restore it, or use another output "
                         "directory") from None
    # as config.json holds it (tuples as lists); a field absent from an old file: the default
    current = json.loads(json.dumps(dataclasses.asdict(config), default=str))
    differing = [k for k in IDENTITY_FIELDS
                 if previous.get(k, getattr(TrainConfig, k, None)) != current.get(k)
                 and not (k == "num_classes" and current.get(k) is None)]
    changes = ", ".join(f"{k}: {previous.get(k)!r} -> {current.get(k)!r}" for k in differing)
    fixed = [k for k in differing if k in FIXED_FIELDS]
    if differing and (fixed or not config.resume_with_changes):
        hint = "" if fixed else ("; to continue it from its last checkpoint with the new values "
                                 "(e.g. a lower --lr after a NaN), add --resume-with-changes")
        raise ValueError(f"{path.parent} holds a run with different settings ({changes}); use "
                         f"another output directory, or delete this one to start over{hint}")
    return differing


def _changes(config_path: Path, config: TrainConfig, changed: list[str], checkpoint: dict | None,
             schedule: dict | None = None) -> list[dict]:
    """The run's history of --resume-with-changes, this one added (kept in config.json): [old, new]
    per field, from epoch ``at_epoch + 1`` on (``at_batch``: batches of that epoch trained before,
    when it stopped mid-epoch)."""
    previous = json.loads(config_path.read_text())
    fields = {k: [previous["config"].get(k), getattr(config, k)] for k in changed}
    entry = dict(_resumed_at(checkpoint), fields={**fields, **(schedule or {})})
    return previous.get("changes", []) + [entry]


def _resumed_at(checkpoint: dict | None) -> dict:
    """Where a resumed run goes on: ``{"at_epoch": epochs done}`` and, mid-epoch, ``"at_batch"``."""
    epoch, batch = (checkpoint["epoch"], checkpoint["batches_done"]) if checkpoint else (0, 0)
    return {"at_epoch": epoch, **({"at_batch": batch} if batch else {})}


def _runtime_changes(previous: dict, payload: dict, state: RunState) -> dict:
    """The effective device, amp, channels_last and process count that differ from config.json's,
    once anything was trained under the old ones: ``{field: [old, new]}``."""
    if not previous or (state.epoch == 0 and state.batches_done == 0):
        return {}
    return {k: [previous[k], payload[k]] for k in RUNTIME_RECORD
            if k in previous and previous[k] != payload[k]}


def _restore(run: Run, checkpoint: dict, changed: list[str] = ()) -> None:
    """Load the checkpoint into the run; with changed hyper-parameters (--resume-with-changes) the
    new learning rate, weight decay and schedule take over (and a new optimizer starts with fresh
    state)."""
    run.model.load_state_dict(checkpoint["model"])
    if "optimizer" not in changed:
        run.optimizer.load_state_dict(checkpoint["optimizer"])
    new_lrs = list(run.scheduler.base_lrs)
    run.scheduler.load_state_dict(checkpoint["scheduler"])
    if changed:
        run.scheduler.base_lrs = new_lrs
        factor = lr_factor(run.scheduler.last_epoch / run.steps_per_epoch, run.config)
        for group, weight_decay in zip(run.optimizer.param_groups, (run.config.weight_decay, 0.0)):
            group.update(initial_lr=new_lrs[0], lr=new_lrs[0] * factor, weight_decay=weight_decay)
    run.scaler.load_state_dict(checkpoint["scaler"])
    if run.ema is not None:
        run.ema.load_state_dict(checkpoint["ema"])
    set_rng_state(checkpoint["rng"])
    run.state = RunState(epoch=checkpoint["epoch"], batches_done=checkpoint["batches_done"],
                         best_top1=checkpoint["best_top1"], elapsed=checkpoint["elapsed"],
                         partial=checkpoint["partial_epoch"],
                         accumulation=checkpoint.get("accumulation"))
    if run.info.main and not run.config.quiet:
        print(f"resuming {run.out} at epoch {run.state.epoch + 1}, batch {run.state.batches_done}")


def _write_run_files(run: Run, extra_config: dict | None) -> None:
    """``config.json`` (every resolved setting), ``init_report.json`` (fine-tuning), and
    ``metrics.jsonl`` cut back to the epochs the checkpoint covers."""
    run.out.mkdir(parents=True, exist_ok=True)
    config = run.config
    payload = {"config": dataclasses.asdict(config), "library_version": __version__,
               "torch": torch.__version__, "device": str(run.device),
               "device_name": device_name(run.device), "world_size": run.info.world,
               "global_batch": global_batch(config, run.info.world),
               "peak_lr": run.scheduler.base_lrs[0], "steps_per_epoch": run.steps_per_epoch,
               "amp": run.amp, "channels_last": run.channels_last,
               "ema_decay_per_step": (ema_decay_per_step(config, run.info.world)
                                      if config.ema_decay else 0.0),
               "bn_momentum_per_batch": bn_momentum_per_batch(config.bn_momentum,
                                                              config.accumulate),
               "sync_bn_active": any(isinstance(m, nn.SyncBatchNorm) for m in run.model.modules()),
               "train_images": len(run.data.train_set), "val_images": len(run.data.val_set),
               **(extra_config or {})}
    _record_changes(run, payload, "changes" in (extra_config or {}))
    warnings = surely_mistaken(config, run.info.world, payload["peak_lr"], run.steps_per_epoch)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    payload.update({"warnings": warnings} if warnings else {})
    for stale in run.out.glob(f".*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)  # a partial write of a killed process (kill -9 while saving)
    atomic_write_json(run.out / "config.json", payload, indent=2, default=str)
    report = getattr(run.model, "init_report", None)
    if report is not None:
        (run.out / "init_report.json").write_text(json.dumps(report.to_dict(), indent=2))
    if run.metrics_path.exists():  # drop lines of epochs that the checkpoint does not cover
        lines = [ln for ln in run.metrics_path.read_text().splitlines()
                 if ln and json.loads(ln)["epoch"] <= run.state.epoch]
        atomic_write_text(run.metrics_path, "".join(line + "\n" for line in lines))


def _record_changes(run: Run, payload: dict, resumed_with_changes: bool) -> None:
    """Keep config.json's "changes" (a plain resume kept none, so the record then claimed the last
    values for the whole run) and add the effective runtime settings that differ from the last
    open's, said on the terminal."""
    path = run.out / "config.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    changes = list(payload.get("changes", previous.get("changes", [])))
    runtime = _runtime_changes(previous, payload, run.state)
    if runtime:
        if resumed_with_changes:  # this resume's entry is the last one
            changes[-1] = dict(changes[-1], fields={**changes[-1]["fields"], **runtime})
        else:
            where = {"epoch": run.state.epoch, "batches_done": run.state.batches_done}
            changes.append(dict(_resumed_at(where), fields=runtime))
        print(f"{run.out}: resuming with other runtime settings ("
              + ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in runtime.items())
              + f") from epoch {run.state.epoch + 1}; recorded in config.json \"changes\"",
              file=sys.stderr)
    if changes:
        payload["changes"] = changes


# --------------------------------------------------------------------------------------------------
# Writing an epoch's results
# --------------------------------------------------------------------------------------------------


def append_metrics(run: Run, metrics: dict) -> None:
    """Add one epoch's line to ``metrics.jsonl``, rewriting the file atomically: never a torn line
    (full disk)."""
    before = run.metrics_path.read_text() if run.metrics_path.exists() else ""
    atomic_write_text(run.metrics_path, before + json.dumps(metrics) + "\n")


def save_checkpoint(run: Run, paths: list[Path], finished: bool = False) -> None:
    """Write the checkpoint to each of ``paths`` in order (each atomically; separate files, so that
    damage to ``last.pt`` never reaches ``best.pt``), unless a weight is not finite (then the old
    files stay)."""
    payload = _payload(run, finished)
    bad = non_finite_tensors(payload["model"]) + non_finite_tensors(payload["ema"])
    if bad:
        raise TrainingDiverged(f"{len(bad)} tensor(s) of the model became NaN or infinite (e.g. "
                               f"{bad[0]}) at epoch {run.state.epoch}; they were not saved: "
                               f"{diverged_note(run)}")
    for path in paths:
        atomic_save(payload, path)


def _payload(run: Run, finished: bool) -> dict:
    state = run.state
    return {"partial_epoch": state.partial, "model": run.model.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else {},
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(), "epoch": state.epoch,
            "batches_done": state.batches_done, "best_top1": state.best_top1,
            "elapsed": state.elapsed, "rng": rng_state(), "finished": finished,
            "accumulation": state.accumulation,
            "summary": (summarize_metrics(run.out, state.best_top1, state.elapsed)
                        if finished else {}),
            "model_name": run.config.model, "model_overrides": dict(run.config.model_overrides),
            "num_classes": run.data.num_classes, "classes": run.data.class_names,
            "eval_size": run.config.eval_size, "preprocessing": run.config.preprocessing,
            "normalize": run.config.normalize}


def diverged_note(run: Run) -> str:
    """What a diverged run leaves, and how to go on."""
    if run.last_path.exists():
        epoch = load_checkpoint(run.last_path)["epoch"]
        return (f"the last good checkpoint {run.last_path} (end of epoch {epoch}, every tensor "
                "finite) is kept. To continue from it with a lower learning rate, rerun with e.g. "
                "--lr <lower> --resume-with-changes (Python: TrainConfig(..., "
                "resume_with_changes=True)); or check the data.")
    return (f"no checkpoint was written before this point: {run.out} holds nothing to resume from; "
            "start again with a lower --lr (delete the directory or use another --out).")


# --------------------------------------------------------------------------------------------------
# Reading a run directory back
# --------------------------------------------------------------------------------------------------


def reported_top1(row: dict) -> float | None:
    """The accuracy an epoch reports: the EMA weights' when the run keeps an EMA, else the raw
    weights' (None for an epoch that was not evaluated, see ``eval_every``)."""
    return row["ema_top1"] if row.get("ema_top1") is not None else row.get("val_top1")


def read_history(out_dir: str | Path) -> list[dict]:
    """The run's ``metrics.jsonl``: one dict per epoch."""
    lines = (Path(out_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line]


def summarize_metrics(out_dir: str | Path, best_top1: float, elapsed: float) -> dict:
    """A run's summary: ``top1`` is the final epoch's reported accuracy (EMA weights when the run
    keeps an EMA; never the best epoch chosen on the validation set, which would flatter it);
    ``best_top1`` is kept for ``best.pt``."""
    history = read_history(out_dir)
    final = history[-1] if history else {}
    return {"epochs": len(history), "top1": reported_top1(final) if final else None,
            "top1_weights": "EMA" if final.get("ema_top1") is not None else "raw",
            "best_top1": best_top1, "final": final, "wall_time": elapsed,
            "metrics_path": str(Path(out_dir) / "metrics.jsonl")}


def read_summary(out_dir: str | Path) -> dict:
    """The summary of the run in ``out_dir`` (finished or not) from its checkpoint and metrics."""
    checkpoint = load_checkpoint(Path(out_dir) / "last.pt")
    return checkpoint["summary"] or summarize_metrics(out_dir, checkpoint["best_top1"],
                                                      checkpoint["elapsed"])
