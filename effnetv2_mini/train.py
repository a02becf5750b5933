"""One training loop for every experiment (paper section 6 recipe; PAPER.md section 6).

    from effnetv2_mini.train import TrainConfig, fit
    summary = fit(TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=3, preset="simple",
                              out_dir="runs/demo"))

Presets (every value can be overridden field by field):

- ``paper``: RMSProp (decay 0.9, momentum 0.9, TF-style epsilon 1e-3 inside the square root), lr 0.016 per 256
  images, 5 warm-up epochs then x0.97 every 2.4 epochs, label smoothing 0.1, weight decay 1e-5 off BN and
  biases, EMA 0.9999, stochastic depth 0.2, BN momentum 0.01 (the paper's 0.99).
- ``simple``: AdamW, lr 0.016 per 256, 1 warm-up epoch then cosine, weight decay 0.05 off BN and biases,
  label smoothing 0.1, no EMA, BN momentum 0.1: for short CPU runs and small experiments.

A run owns a directory: ``config.json`` (every resolved setting, library version, device), ``metrics.jsonl``
(one line per epoch), ``last.pt`` (written atomically every epoch and on Ctrl-C) and ``best.pt``. Rerunning
a directory resumes where it stopped (mid-epoch too); a finished run is a no-op. Each training sample's
augmentation is seeded by (seed, epoch, index), so a resumed run matches an uninterrupted one exactly on CPU.
Checkpoints are read with ``torch.load(weights_only=True)``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in DistributedDataParallel, the data sharded by a
DistributedSampler, metrics all-reduced, and only rank 0 logs and writes checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torch.utils.data import DistributedSampler, RandomSampler, Sampler, SequentialSampler, Subset
from tqdm import tqdm

from . import __version__
from .data import batch_mixer, collate_skipping, eval_transform, get_dataset, is_built_in, make_loader, train_transform
from .measure import pick_device
from .model import build_model
from .synthetic import SyntheticShapes

__all__ = ["TrainConfig", "PRESETS", "StageSettings", "fit", "launch", "run_under_torchrun", "config_from_dict",
           "evaluate", "RMSpropTF", "lr_factor", "TrainingDiverged", "load_checkpoint"]

PRESETS = {
    "paper": dict(optimizer="rmsprop", base_lr=0.016, warmup_epochs=5.0, schedule="exponential", decay_rate=0.97,
                  decay_epochs=2.4, weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999, drop_path_rate=0.2,
                  bn_momentum=0.01),
    "simple": dict(optimizer="adamw", base_lr=0.016, warmup_epochs=1.0, schedule="cosine", decay_rate=0.97,
                   decay_epochs=2.4, weight_decay=0.05, label_smoothing=0.1, ema_decay=0.0, drop_path_rate=0.0,
                   bn_momentum=0.1),
}
# Settings that define a run: resuming a directory with different values is refused.
IDENTITY_FIELDS = (
    "model", "model_overrides", "init_from", "freeze_backbone", "dataset", "epochs", "batch_size", "image_size",
    "eval_size", "preset", "optimizer", "lr", "warmup_epochs", "schedule", "weight_decay", "label_smoothing", "ema_decay",
    "seed", "num_classes", "randaug_magnitude", "mixup_alpha", "cutmix_alpha", "dropout", "drop_path_rate",
)


@dataclass
class TrainConfig:
    """Every knob of a run. ``None`` means: take it from the preset (or the model / data set)."""

    model: str = "demo_v2_tiny"
    model_overrides: dict = field(default_factory=dict)  # passed to build_model, e.g. {"fused_stages": 3}
    init_from: str | None = None  # fine-tuning: our checkpoint path, "torchvision" (its ImageNet weights), a state dict file
    freeze_backbone: bool = False  # train the classifier only (BatchNorm statistics still adapt)
    dataset: str = "synthetic"
    data_root: str | None = None
    download: bool = False
    out_dir: str = "runs/train"
    epochs: int = 10
    batch_size: int = 64
    image_size: int | None = None  # training size; None: 64 for synthetic, else the model's train size
    eval_size: int | None = None
    preset: str = "paper"
    optimizer: str | None = None  # rmsprop | adamw | sgd
    lr: float | None = None  # None: the preset's base lr * batch_size * world_size / 256
    warmup_epochs: float | None = None
    schedule: str | None = None  # exponential | cosine | constant
    decay_rate: float | None = None
    decay_epochs: float | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    ema_decay: float | None = None  # 0 turns EMA off
    drop_path_rate: float | None = None
    dropout: float | None = None  # None: the model's
    bn_momentum: float | None = None
    randaug_magnitude: float = 0.0
    random_erasing: float = 0.0  # probability of v2.RandomErasing ("cutout" in the paper's fine-tuning recipe)
    crop_scale: tuple[float, float] | None = None  # random-resized-crop area range; None: (0.08, 1), synthetic (0.35, 1)
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    num_classes: int | None = None  # None: from the data set
    device: str = "auto"
    amp: bool | None = None  # None: on for CUDA
    channels_last: bool | None = None  # None: on for CUDA
    compile: bool = False
    workers: int = 2
    seed: int = 0
    skip_corrupt: bool = False
    max_steps_per_epoch: int | None = None
    synthetic: dict = field(default_factory=dict)  # options of the synthetic set (num_samples, difficulty, ...)
    imagenette_size: str = "320px"
    quiet: bool = False

    def resolved(self) -> TrainConfig:
        """A copy with every preset value filled in (the lr still needs the world size, see :func:`fit`)."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; presets: {', '.join(PRESETS)}")
        preset = PRESETS[self.preset]
        values = {k: (preset[k] if getattr(self, k) is None else getattr(self, k))
                  for k in preset if k != "base_lr" and hasattr(self, k)}
        config = dataclasses.replace(self, **values)
        if config.optimizer not in ("rmsprop", "adamw", "sgd"):
            raise ValueError(f"unknown optimizer {config.optimizer!r}; choose rmsprop, adamw or sgd")
        if config.schedule not in ("exponential", "cosine", "constant"):
            raise ValueError(f"unknown schedule {config.schedule!r}; choose exponential, cosine or constant")
        return config


@dataclass(frozen=True)
class StageSettings:
    """What may change between epochs (progressive learning, paper section 4): size and regularization."""

    image_size: int
    dropout: float | None
    randaug_magnitude: float
    mixup_alpha: float
    stage: int = 0


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


# ------------------------------------------------------------------------------------------------------------
# Optimizer and learning-rate schedule
# ------------------------------------------------------------------------------------------------------------


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow computes it (the official code's optimizer): the epsilon sits *inside* the square
    root, ``update = lr * g / sqrt(ms + eps)``, with momentum. PyTorch's RMSprop adds eps outside the root,
    which with eps=1e-3 behaves quite differently early in training. Weight decay is added to the gradient
    (the official code adds an L2 term to the loss, which is the same)."""

    def __init__(self, params, lr: float, alpha: float = 0.9, eps: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if not state:
                    state["square_avg"] = torch.zeros_like(p)
                    state["momentum_buffer"] = torch.zeros_like(p)
                square_avg, buf = state["square_avg"], state["momentum_buffer"]
                square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
                buf.mul_(group["momentum"]).addcdiv_(grad, square_avg.add(group["eps"]).sqrt_(), value=group["lr"])
                p.sub_(buf)
        return loss


def lr_factor(epoch: float, config: TrainConfig) -> float:
    """Multiplier of the peak lr at (fractional) ``epoch``: linear warm-up, then staircase exponential decay
    (x ``decay_rate`` every ``decay_epochs``, counted from step 0 as in the official code) or cosine."""
    if epoch < config.warmup_epochs:
        return (epoch + 1e-8) / config.warmup_epochs
    if config.schedule == "exponential":
        return config.decay_rate ** math.floor(epoch / config.decay_epochs)
    if config.schedule == "constant":
        return 1.0
    progress = (epoch - config.warmup_epochs) / max(1e-8, config.epochs - config.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _param_groups(model: nn.Module, weight_decay: float):
    """Weight decay on conv and linear weights only, not on BatchNorm parameters or biases (paper recipe)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _optimizer(model: nn.Module, config: TrainConfig, lr: float) -> torch.optim.Optimizer:
    groups = _param_groups(model, config.weight_decay)
    if config.optimizer == "rmsprop":
        return RMSpropTF(groups, lr=lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)


def _ema_avg_fn(decay: float):
    """EMA with the official warm-up: the decay is ``min(decay, (1 + n) / (10 + n))`` after n updates."""

    def update(averaged: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor):
        n = float(num_averaged)
        d = min(decay, (1 + n) / (10 + n))
        return averaged * d + current * (1 - d)

    return update


# ------------------------------------------------------------------------------------------------------------
# Reproducible augmentation: each sample is seeded by (seed, epoch, index), carried by the sampler
# ------------------------------------------------------------------------------------------------------------


class SeededSampler(Sampler):
    """Yields ``(sample_seed, index)`` from a base sampler, skipping the first ``skip`` indices (resume).

    Samplers run in the main process, so :meth:`set_epoch` takes effect even with persistent workers."""

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
    """Runs the wrapped data set's random transforms under a per-sample seed."""

    def __init__(self, base):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        seed, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.base[index]


# ------------------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------------------


def _atomic_save(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False)
    handle.close()
    try:
        torch.save(payload, handle.name)
        os.replace(handle.name, path)
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``: a file from the internet cannot run code)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------------------
# Distributed helpers
# ------------------------------------------------------------------------------------------------------------


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(requested_device: str) -> tuple[_Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist(), pick_device(requested_device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and requested_device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return _Dist(rank, world, local_rank), device


def _all_reduce(values: list[float], info: _Dist, device: torch.device) -> list[float]:
    if info.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


# ------------------------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device, amp: bool = False, channels_last: bool = False,
             info: _Dist | None = None) -> dict:
    """Top-1 / top-5 accuracy (%) and mean cross-entropy over ``loader`` (all ranks together under DDP)."""
    info = info or _Dist()
    model.eval()
    correct1 = correct5 = loss_sum = count = 0.0
    for images, labels, _ in loader:
        if images is None:
            continue
        images = images.to(device, non_blocking=True)
        if channels_last:
            images = images.to(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        if labels.ndim == 2:  # soft (multi-label, normalized) targets: score against the strongest label
            labels = labels.argmax(1)
        with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=amp):
            logits = model(images).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        correct1 += (top5[:, 0] == labels).sum().item()
        correct5 += (top5 == labels[:, None]).any(1).sum().item()
        count += labels.numel()
    correct1, correct5, loss_sum, count = _all_reduce([correct1, correct5, loss_sum, count], info, device)
    count = max(count, 1)
    return {"top1": 100 * correct1 / count, "top5": 100 * correct5 / count, "loss": loss_sum / count}


def _amp_dtype(device: torch.device):
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: ``max_memory_allocated``; CPU: the process's peak resident set size (``ru_maxrss``)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


# ------------------------------------------------------------------------------------------------------------
# The loop
# ------------------------------------------------------------------------------------------------------------


class _Data:
    """Train and val data sets and loaders; loaders are rebuilt only when the stage's settings change."""

    def __init__(self, config: TrainConfig, info: _Dist, device: torch.device, num_classes: int | None):
        self.config, self.info, self.device = config, info, device
        options = {}
        if is_built_in(config.dataset):
            options = dict(config.synthetic)
            if num_classes is not None:
                options.setdefault("num_classes", num_classes)
        elif config.dataset == "imagenette":
            options = {"size": config.imagenette_size}
        elif config.dataset == "imagenet21k" and num_classes is not None:
            options = {"num_classes": num_classes}
        common = dict(root=config.data_root, skip_corrupt=config.skip_corrupt)
        if config.download and info.main:  # rank 0 downloads; the others wait, then open the files
            for split in ("train", "val"):
                get_dataset(config.dataset, split, download=True, **common, **options)
        if info.world > 1:
            dist.barrier()
        self.train_set = get_dataset(config.dataset, "train", **common, **options)
        self.val_set = get_dataset(config.dataset, "val", **common, **options)
        self.num_classes = num_classes or len(self.train_set.classes)
        self.crop_fraction = 1.0 if is_built_in(config.dataset) else 0.875
        self._train_key = self._val_key = None
        self._train_loader = self._val_loader = None

    def _render(self, dataset, size: int) -> None:
        if isinstance(dataset, SyntheticShapes) and dataset.resolution != size:
            dataset.set_resolution(size)  # the built-in set renders at the stage's size

    def train_loader(self, stage: StageSettings, epoch: int, skip_batches: int):
        key = (stage.image_size, stage.randaug_magnitude)
        if key != self._train_key:  # a new stage: re-render / new transform, new workers
            self._render(self.train_set, stage.image_size)
            scale = self.config.crop_scale or ((0.35, 1.0) if is_built_in(self.config.dataset) else (0.08, 1.0))
            self.train_set.transform = train_transform(stage.image_size, stage.randaug_magnitude, scale=tuple(scale),
                                                       random_erasing=self.config.random_erasing)
            self._shuffle = torch.Generator()
            if self.info.world > 1:
                base = DistributedSampler(self.train_set, num_replicas=self.info.world, rank=self.info.rank,
                                          shuffle=True, seed=self.config.seed, drop_last=True)
            else:
                base = RandomSampler(self.train_set, generator=self._shuffle)
            self._sampler = SeededSampler(base, self.config.seed)
            batches = torch.utils.data.BatchSampler(self._sampler, self.config.batch_size, drop_last=True)
            self._train_loader = torch.utils.data.DataLoader(
                SeededDataset(self.train_set), batch_sampler=batches, num_workers=self.config.workers,
                pin_memory=self.device.type == "cuda", persistent_workers=self.config.workers > 0,
                collate_fn=collate_skipping, generator=torch.Generator().manual_seed(self.config.seed),
            )
            self._train_key = key
        self._shuffle.manual_seed(self.config.seed * 10_007 + epoch)
        self._sampler.set_epoch(epoch, skip=skip_batches * self.config.batch_size)
        return self._train_loader

    def val_loader(self, eval_size: int):
        if self._val_key != eval_size:
            self._render(self.val_set, eval_size)
            self.val_set.transform = eval_transform(eval_size, self.crop_fraction)
            shard = self.val_set if self.info.world == 1 else Subset(
                self.val_set, range(self.info.rank, len(self.val_set), self.info.world))
            self._val_loader = make_loader(shard, self.config.batch_size, train=False, workers=self.config.workers,
                                           device=self.device, sampler=SequentialSampler(shard), drop_last=False,
                                           generator=torch.Generator().manual_seed(0))
            self._val_key = eval_size
        return self._val_loader


def _constant_stages(config: TrainConfig) -> Callable[[int], StageSettings]:
    def stage_at(epoch: int) -> StageSettings:
        return StageSettings(config.image_size, config.dropout, config.randaug_magnitude, config.mixup_alpha)

    return stage_at


def _write_config(path: Path, config: TrainConfig, extra: dict) -> None:
    payload = {"config": dataclasses.asdict(config), **extra}
    if path.exists():
        previous = json.loads(path.read_text())["config"]
        differing = [k for k in IDENTITY_FIELDS if previous.get(k) != payload["config"].get(k)]
        if differing:
            changes = ", ".join(f"{k}: {previous.get(k)!r} -> {payload['config'].get(k)!r}" for k in differing)
            raise ValueError(f"{path.parent} holds a run with different settings ({changes}); "
                             "use another output directory, or delete this one to start over")
    path.write_text(json.dumps(payload, indent=2, default=str))


def fit(config: TrainConfig, stages: Callable[[int], StageSettings] | None = None, extra_config: dict | None = None,
        stop_after_steps: int | None = None, on_epoch_start: Callable | None = None) -> dict:
    """Train (or resume, or do nothing if finished) the run in ``config.out_dir``; return its summary.

    ``stages(epoch)`` gives the epoch's image size and regularization (progressive learning); by default they
    are constant. ``stop_after_steps`` simulates an interruption (Ctrl-C) after that many optimizer steps of
    this call, for tests; the checkpoint is written exactly as on Ctrl-C. ``on_epoch_start(epoch, model,
    loader, mixer)`` is called before each epoch's first step (inspection, logging).
    """
    config = config.resolved()
    info, device = _setup_distributed(config.device)
    amp = device.type == "cuda" if config.amp is None else config.amp
    channels_last = device.type == "cuda" if config.channels_last is None else config.channels_last
    out = Path(config.out_dir)
    last_path, best_path, metrics_path = out / "last.pt", out / "best.pt", out / "metrics.jsonl"

    checkpoint = load_checkpoint(last_path) if last_path.exists() else None
    if checkpoint is not None and checkpoint.get("finished"):
        if info.main and not config.quiet:
            print(f"{out}: run already finished ({checkpoint['epoch']} epochs); nothing to do")
        return checkpoint["summary"]

    torch.manual_seed(config.seed)
    data = _Data(config, info, device, config.num_classes)
    if config.image_size is None:
        config.image_size = 64 if is_built_in(config.dataset) else build_model(config.model).config.train_size
    if config.eval_size is None:
        config.eval_size = (config.image_size if is_built_in(config.dataset)
                            else build_model(config.model).config.eval_size)
    config.num_classes = data.num_classes
    stages = stages or _constant_stages(config)
    overrides = dict(config.model_overrides, num_classes=data.num_classes, drop_path_rate=config.drop_path_rate,
                     bn_momentum=config.bn_momentum)
    if config.dropout is not None:
        overrides["dropout"] = config.dropout
    model = build_model(config.model, **overrides)
    init_report = None
    if config.init_from and checkpoint is None:  # fresh fine-tuning run (a resumed one has its weights)
        from .compat import load_pretrained, load_torchvision_pretrained

        source = load_torchvision_pretrained(config.model) if config.init_from == "torchvision" else config.init_from
        init_report = load_pretrained(model, source)
        if info.main and not config.quiet:
            print(f"initialized {config.model} {init_report}")
    if config.freeze_backbone:
        for name, parameter in model.named_parameters():
            parameter.requires_grad = name.startswith("classifier.")
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    world_batch = config.batch_size * info.world
    lr = config.lr if config.lr is not None else PRESETS[config.preset]["base_lr"] * world_batch / 256
    optimizer = _optimizer(model, config, lr)
    steps_per_epoch = len(data.train_set) // world_batch
    if config.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    if steps_per_epoch < 1:
        raise ValueError(f"the training set ({len(data.train_set)} images) is smaller than one batch of {world_batch}")
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step / steps_per_epoch, config))
    ema = AveragedModel(model, avg_fn=_ema_avg_fn(config.ema_decay), use_buffers=True) if config.ema_decay else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp and _amp_dtype(device) == torch.float16)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    start_epoch, skip_batches, best_top1, elapsed = 0, 0, -1.0, 0.0
    partial = {"loss_sum": 0.0, "seen": 0, "skipped": 0}  # sums of an epoch interrupted midway
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        if ema is not None:
            ema.load_state_dict(checkpoint["ema"])
        _set_rng_state(checkpoint["rng"])
        start_epoch, skip_batches = checkpoint["epoch"], checkpoint["batches_done"]
        best_top1, elapsed = checkpoint["best_top1"], checkpoint["elapsed"]
        partial = checkpoint["partial_epoch"]
        if info.main and not config.quiet:
            print(f"resuming {out} at epoch {start_epoch + 1}, batch {skip_batches}")
    train_model = model
    if info.world > 1:
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    forward_model = torch.compile(train_model) if config.compile else train_model

    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        _write_config(out / "config.json", config, {
            "library_version": __version__, "torch": torch.__version__, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "world_size": info.world, "peak_lr": lr, "steps_per_epoch": steps_per_epoch, "amp": amp,
            "channels_last": channels_last, **(extra_config or {})})
        if init_report is not None:
            (out / "init_report.json").write_text(json.dumps(init_report.to_dict(), indent=2))
        if metrics_path.exists():  # drop lines of epochs that the checkpoint does not cover
            lines = [ln for ln in metrics_path.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= start_epoch]
            metrics_path.write_text("".join(line + "\n" for line in lines))

    def checkpoint_payload(epoch: int, batches_done: int, finished: bool = False, summary=None, partial=None) -> dict:
        return {"partial_epoch": partial or {"loss_sum": 0.0, "seen": 0, "skipped": 0},
                "model": model.state_dict(), "ema": ema.state_dict() if ema is not None else {},
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "epoch": epoch, "batches_done": batches_done, "best_top1": best_top1, "elapsed": elapsed,
                "rng": _rng_state(), "finished": finished, "summary": summary or {},
                "model_name": config.model, "model_overrides": dict(config.model_overrides),
                "num_classes": data.num_classes}

    steps_this_call = 0
    last_metrics: dict = {}
    for epoch in range(start_epoch, config.epochs):
        stage = stages(epoch)
        if stage.dropout is not None:
            model.set_dropout(stage.dropout)
        mixer = batch_mixer(data.num_classes, stage.mixup_alpha, config.cutmix_alpha)
        loader = data.train_loader(stage, epoch, skip_batches)
        total = steps_per_epoch - skip_batches
        if on_epoch_start is not None:
            on_epoch_start(epoch, model, loader, mixer)
        model.train()
        epoch_start = time.perf_counter()
        seen, loss_sum, skipped = partial["seen"], partial["loss_sum"], partial["skipped"]
        seen_before = seen  # images of this epoch trained before an interruption (not timed here)
        partial = {"loss_sum": 0.0, "seen": 0, "skipped": 0}
        progress = tqdm(islice(loader, total), total=total, desc=f"epoch {epoch + 1}/{config.epochs}",
                        disable=config.quiet or not info.main, leave=False, file=sys.stdout,
                        mininterval=0.5 if sys.stdout.isatty() else 10.0)
        batch_index = skip_batches
        try:
            for images, labels, n_skipped in progress:
                skipped += n_skipped
                if images is None:
                    continue
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                if channels_last:
                    images = images.to(memory_format=torch.channels_last)
                if mixer is not None:
                    images, labels = mixer(images, labels)
                with torch.autocast(device.type, dtype=_amp_dtype(device), enabled=amp):
                    loss = criterion(forward_model(images), labels)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}, batch {batch_index + 1}; the last good "
                        f"checkpoint {last_path} is kept. Lower the learning rate (--lr) or check the data.")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(model)
                seen += images.shape[0]
                loss_sum += loss.item() * images.shape[0]
                batch_index += 1
                steps_this_call += 1
                if not config.quiet and info.main:
                    rate = (seen - seen_before) * info.world / max(1e-9, time.perf_counter() - epoch_start)
                    progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}",
                                         img_s=f"{rate:.0f}", refresh=False)
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            progress.close()
            elapsed += time.perf_counter() - epoch_start
            if info.main:
                _atomic_save(checkpoint_payload(epoch, batch_index,
                                                partial={"loss_sum": loss_sum, "seen": seen, "skipped": skipped}),
                             last_path)
                if not config.quiet:
                    print(f"\ninterrupted: checkpoint written to {last_path}; rerun the same command to resume")
            raise
        except TrainingDiverged:
            progress.close()
            raise
        progress.close()
        skip_batches = 0
        epoch_seconds = time.perf_counter() - epoch_start
        elapsed += epoch_seconds
        loss_sum, seen_all, skipped, timed = _all_reduce(
            [loss_sum, float(seen), float(skipped), float(seen - seen_before)], info, device)
        val = evaluate(model, data.val_loader(config.eval_size), device, amp, channels_last, info)
        metrics = {
            "epoch": epoch + 1, "stage": stage.stage, "train_loss": loss_sum / max(1.0, seen_all),
            "val_top1": val["top1"], "val_top5": val["top5"], "val_loss": val["loss"],
            "lr": scheduler.get_last_lr()[0], "image_size": stage.image_size, "dropout": model.dropout.p,
            "randaug_magnitude": stage.randaug_magnitude, "mixup_alpha": stage.mixup_alpha,
            "images_per_sec": timed / max(1e-9, epoch_seconds), "epoch_seconds": epoch_seconds,
            "wall_time": elapsed, "peak_memory_mb": _peak_memory_mb(device), "skipped_images": int(skipped),
        }
        if ema is not None:
            ema_val = evaluate(ema.module, data.val_loader(config.eval_size), device, amp, channels_last, info)
            metrics.update(ema_top1=ema_val["top1"], ema_top5=ema_val["top5"])
        model.train()
        top1 = max(metrics["val_top1"], metrics.get("ema_top1", -1.0))
        last_metrics = metrics
        if info.main:
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(metrics) + "\n")
            is_best = top1 > best_top1
            best_top1 = max(best_top1, top1)
            finished = epoch + 1 == config.epochs
            summary = _summary(metrics_path, best_top1, elapsed) if finished else None
            payload = checkpoint_payload(epoch + 1, 0, finished=finished, summary=summary)
            _atomic_save(payload, last_path)
            if is_best:
                _atomic_save(payload, best_path)
            if not config.quiet:
                ema_text = f", EMA top-1 {metrics['ema_top1']:.1f}%" if ema is not None else ""
                print(f"epoch {epoch + 1}/{config.epochs}: loss {metrics['train_loss']:.3f}, top-1 "
                      f"{metrics['val_top1']:.1f}%{ema_text}, {metrics['images_per_sec']:.0f} img/s, "
                      f"{stage.image_size}px")
    if info.world > 1:
        dist.barrier()
    return _summary(metrics_path, best_top1, elapsed) if metrics_path.exists() else last_metrics


def _summary(metrics_path: Path, best_top1: float, elapsed: float) -> dict:
    lines = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
    return {"epochs": len(lines), "best_top1": best_top1, "final": lines[-1] if lines else {}, "wall_time": elapsed,
            "metrics_path": str(metrics_path)}


def config_from_dict(values: dict) -> TrainConfig:
    """A :class:`TrainConfig` from its JSON form (``dataclasses.asdict``; JSON turns tuples into lists)."""
    values = dict(values)
    if values.get("crop_scale") is not None:
        values["crop_scale"] = tuple(values["crop_scale"])
    return TrainConfig(**values)


def run_under_torchrun(module: str, config: TrainConfig, nproc: int, **extra) -> dict:
    """Run ``python -m <module> --config <out_dir>/launch.json`` under torchrun with ``nproc`` processes on this
    machine and return the run's summary. The spec file holds ``{"config": <config>, **extra}``; the module's
    entry point reads it back with :func:`read_launch_spec` and :func:`config_from_dict`."""
    import subprocess

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = out / "launch.json"
    spec.write_text(json.dumps({"config": dataclasses.asdict(config), **extra}, indent=2))
    subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", "-m", module,
                    "--config", str(spec)], check=True)
    checkpoint = load_checkpoint(out / "last.pt")
    return checkpoint["summary"] or _summary(out / "metrics.jsonl", checkpoint["best_top1"], checkpoint["elapsed"])


def read_launch_spec(argv=None, description: str = "Run one training from a launch spec (used under torchrun).") -> dict:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="the launch.json written by run_under_torchrun")
    return json.loads(Path(parser.parse_args(argv).config).read_text())


def launch(config: TrainConfig, nproc: int = 1, stages=None) -> dict:
    """Train in this process (``nproc`` 1), or under ``torchrun`` with ``nproc`` processes on this machine.

    Notebooks use this so that the same cell trains on a laptop and on an 8-GPU node. The config travels as
    ``<out_dir>/launch.json``; the summary is read back from the run directory.
    """
    if nproc <= 1:
        return fit(config, stages=stages)
    if stages is not None:
        raise ValueError("custom stage schedules run in-process only; use nproc=1 or the progressive module's CLI")
    return run_under_torchrun("effnetv2_mini.train", config, nproc)


def _main(argv=None) -> None:
    fit(config_from_dict(read_launch_spec(argv)["config"]))


if __name__ == "__main__":
    _main()
