"""Figures shared by the notebooks and the report (matplotlib only, no state)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

__all__ = ["BLOCK_COLORS", "draw_architecture", "plot_training_curves", "show_images",
           "plot_regularization_grid", "plot_schedule", "plot_accuracy_vs_time", "comparison_curve",
           "plot_progressive_comparison", "plot_time_to_accuracy", "plot_nas_candidates",
           "plot_finetune_curves", "plot_relative_throughput", "plot_per_stage", "plot_lr_schedule",
           "chance_line", "show_predictions"]

BLOCK_COLORS = {"Fused-MBConv": "#f28e2b", "MBConv": "#4e79a7", "other": "#bab0ac"}


def _kind(operator: str) -> str:
    if operator.startswith("Fused-MBConv"):
        return "Fused-MBConv"
    if operator.startswith("MBConv"):
        return "MBConv"
    return "other"


def draw_architecture(stage_rows: list[dict], title: str = "", ax=None):
    """Draw a network as a row of boxes, one per stage (from
    ``EfficientNet.stage_table(image_size)``).

    Box height follows the stage's output resolution, box width its channel count (square-root scale
    so that 24 and 1280 channels both stay visible); colour gives the block type; the label gives
    the operator and the number of layers.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 3.2))
    max_res = max(r["resolution"] or 1 for r in stage_rows)
    x = 0.0
    for row in stage_rows:
        width = math.sqrt(row["channels"]) / 6
        height = (row["resolution"] or max_res) / max_res
        ax.add_patch(Rectangle((x, -height / 2), width, height,
                               color=BLOCK_COLORS[_kind(row["operator"])], alpha=0.9))
        label = f"{row['layers']}x\n{row['channels']}ch"
        if row["resolution"]:
            label += f"\n{row['resolution']}px"
        ax.text(x + width / 2, -height / 2 - 0.08, label, ha="center", va="top", fontsize=7)
        x += width + 0.25
    ax.set_xlim(-0.25, x)
    ax.set_ylim(-1.0, 0.65)
    ax.axis("off")
    ax.legend(
        handles=[Patch(color=c, label=k if k != "other" else "stem / head")
                 for k, c in BLOCK_COLORS.items()],
        loc="upper right", fontsize=8, ncol=3, frameon=False,
    )
    if title:
        ax.set_title(title)
    return ax


def chance_line(ax, chance: float | None) -> None:
    """The accuracy of guessing (100 / classes), dashed: a result near it shows nothing."""
    if chance is not None:
        ax.axhline(chance, color="gray", ls="--", lw=1, label=f"chance ({chance:.0f}%)")


def plot_training_curves(rows: list[dict], title: str = "", chance: float | None = None):
    """Loss, top-1 (the raw weights and their EMA) and images/s per epoch, from ``metrics.jsonl``
    rows."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    epochs = [r["epoch"] for r in rows]
    axes[0].plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in rows], "s-", label="val")
    axes[0].set_ylabel("loss")
    axes[1].plot(epochs, [r["val_top1"] for r in rows], "o-", label="raw weights")
    if "ema_top1" in rows[0]:
        axes[1].plot(epochs, [r["ema_top1"] for r in rows], "s-", label="EMA of the weights")
    chance_line(axes[1], chance)
    axes[1].set_ylabel("val top-1 (%)")
    axes[2].plot(epochs, [r["images_per_sec"] for r in rows], "o-")
    axes[2].set_ylabel("training images/s")
    axes[2].set_ylim(0, 1.15 * max(r["images_per_sec"] for r in rows))
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images, labels=None, class_names=None, normalization: str = "official",
                columns: int = 8, title: str = ""):
    """A grid of normalized image tensors (``normalization``: a key of
    ``transforms.NORMALIZATIONS``), e.g. a batch after augmentation."""
    import torch

    from ..data.transforms import NORMALIZATIONS

    mean, std = NORMALIZATIONS[normalization]
    images = (images.detach().float().cpu() * torch.tensor(std).view(1, 3, 1, 1)
              + torch.tensor(mean).view(1, 3, 1, 1))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy())
        if labels is not None:
            # soft labels after MixUp
            label = int(labels[i].argmax()) if labels[i].ndim else int(labels[i])
            ax.set_title(class_names[label] if class_names else str(label), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _heatmap(ax, values, row_labels, col_labels, title, row_name, col_name):
    import numpy as np

    data = np.array(values, dtype=float)
    ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(col_labels)), [str(c) for c in col_labels])
    ax.set_yticks(range(len(row_labels)), [str(r) for r in row_labels])
    ax.set_xlabel(col_name)
    ax.set_ylabel(row_name)
    best = data.argmax(axis=0)  # best regularization for each image size (column)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            bold = best[j] == i
            ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center",
                    color="white" if not bold else "black", fontweight="bold" if bold else "normal",
                    bbox=dict(facecolor="yellow", alpha=0.8, edgecolor="none") if bold else None)
    ax.set_title(title)


def plot_regularization_grid(grid: dict, paper: dict | None = None):
    """Table 5 as heatmaps: top-1 per (RandAugment magnitude, image size), the best magnitude of
    each size highlighted; ours beside the paper's. ``grid["top1"][i][j]`` is size i, magnitude j
    (regularization_grid)."""
    panels = 2 if paper else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    ours = [[grid["top1"][i][j] for i in range(len(grid["sizes"]))]
            for j in range(len(grid["magnitudes"]))]
    _heatmap(axes[0][0], ours, grid["magnitudes"], grid["sizes"], "ours (top-1 %)",
             "RandAugment magnitude", "image size")
    if paper:
        _heatmap(axes[0][1], paper["top1"], paper["magnitudes"], paper["sizes"],
                 "paper Table 5 (ImageNet top-1 %)", "RandAugment magnitude", "image size")
    fig.tight_layout()
    return fig


def plot_schedule(schedule, title: str = ""):
    """Image size and each regularizer across epochs (Algorithm 1)."""
    plans = schedule.epoch_plans()
    epochs = range(1, len(plans) + 1)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    series = [("image size (px)", [s.image_size for s in plans]),
              ("dropout", [s.dropout if s.dropout is not None else float("nan") for s in plans]),
              ("RandAugment magnitude", [s.randaug_magnitude for s in plans]),
              ("mixup alpha", [s.mixup_alpha for s in plans])]
    for ax, (label, values) in zip(axes, series):
        ax.step(list(epochs), values, where="post")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{schedule.variant} schedule ({schedule.source})")
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(rows: list[dict], ax=None, chance: float | None = None):
    """Top-1 against training wall-clock, one curve per run (rows of a progressive comparison, with
    ``curve``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for row in rows:
        curve = row["curve"]
        ax.plot([c["wall_time"] for c in curve], [c["top1"] for c in curve], "o-", markersize=3,
                label=f"{row['variant'].replace('_', ' ')} (seed {row['seed']})")
    chance_line(ax, chance)
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def comparison_curve(result, variant: str, seed: int) -> list[dict]:
    """One run of a progressive comparison (``experiments.progressive_comparison``), asked for by
    its variant and seed: its ``{epoch, wall_time, top1}`` per epoch."""
    # the key progressive_comparison files each run's curve under
    return result.curves[f"{variant}-s{seed}"]


def plot_progressive_comparison(result, ax=None):
    """Top-1 against training wall-clock for every run of a progressive comparison, with chance
    dashed."""
    runs = [dict(row, curve=comparison_curve(result, row["variant"], row["seed"]))
            for row in result.rows]
    return plot_accuracy_vs_time(runs, ax=ax, chance=result.conditions.chance)


def plot_time_to_accuracy(result, paper: dict | None = None):
    """Figure 1a's question on this machine: top-1 against training minutes, one curve per run of
    ``experiments.time_to_accuracy`` (colour: network, solid: Algorithm 1, dashed: fixed size), the
    V1 fixed-size final accuracy the headline measures against as a dotted line; beside it the
    paper's Table 7 (``paper``: top-1 against training hours, EfficientNet and EfficientNetV2)."""
    fig, axes = plt.subplots(1, 2 if paper else 1, figsize=(12 if paper else 6.5, 4.2),
                             squeeze=False)
    ax = axes[0][0]
    colours = dict(zip(result.models, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row in result.rows:
        points = [p for p in row["curve"] if p["top1"] is not None]
        style = "-" if row["variant"] == "progressive" else "--"
        ax.plot([p["wall_time"] / 60 for p in points], [p["top1"] for p in points], style,
                marker="o", markersize=3, color=colours[row["model"]],
                label=f"{row['model']} {row['variant']} (seed {row['seed']})")
    for p in result.v2_progressive_time_to_v1_fixed_accuracy.get("per_seed", []):
        ax.axhline(p["target_top1"], color="grey", linestyle=":", linewidth=1)
    chance_line(ax, result.conditions.chance)
    ax.set(xlabel="training wall-clock (minutes)", ylabel="val top-1 (%)",
           title=f"this run ({result.conditions.device_name})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if paper:
        ax = axes[0][1]
        for family, marker in (("efficientnet_", "s"), ("efficientnetv2_", "o")):
            rows = [r for r in paper["rows"] if r["model"].startswith(family)
                    and not r["model"].endswith("21k")]
            ax.plot([r["train_hours"] for r in rows], [r["top1"] for r in rows], marker=marker,
                    label=family.rstrip("_"))
            for r in rows:
                ax.annotate(_short(r["model"]), (r["train_hours"], r["top1"]), fontsize=7,
                            xytext=(3, -9), textcoords="offset points")
        ax.set(xlabel="training hours (32 TPU cores)", ylabel="ImageNet top-1 (%)",
               title="the paper, Table 7")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_nas_candidates(ranked: list[dict], front: list[dict] | None = None, ax=None,
                        chance: float | None = None):
    """NAS candidates: proxy accuracy A against normalized step time S, marker size by parameters P,
    colour by the reward A * S^w * P^v (paper section 3.3); ``front`` (e.g. ``nas.pareto_front``)
    drawn as a dashed line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    largest = max(r["params"] for r in ranked)
    points = ax.scatter([r["normalized_step_time"] for r in ranked],
                        [r["accuracy"] for r in ranked],
                        s=[30 + 300 * r["params"] / largest for r in ranked],
                        c=[r["reward"] for r in ranked], cmap="viridis", alpha=0.8)
    if front:
        ax.plot([r["normalized_step_time"] for r in front], [r["accuracy"] for r in front], "r--o",
                label="Pareto front")
        ax.legend()
    chance_line(ax, chance)
    ax.legend(fontsize=8)
    ax.set_xlabel("training-step time / reference (S)")
    ax.set_ylabel("proxy top-1 % (A)")
    ax.figure.colorbar(points, ax=ax, label="reward")
    ax.grid(alpha=0.3)
    return ax


def plot_finetune_curves(curves: dict[str, list[dict]], ax=None, chance: float | None = None):
    """Validation top-1 per epoch of each fine-tuning run (``"model/data set/start"`` -> metrics
    rows)."""
    from matplotlib.ticker import MaxNLocator

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for name, metrics in curves.items():
        model, dataset, start = name.split("/")
        how = ("fine-tuned from pretrained weights" if start == "pretrained"
               else "trained from scratch")
        label = f"{how}: {model} on {dataset}"
        ax.plot([m["epoch"] for m in metrics], [m.get("ema_top1", m["val_top1"]) for m in metrics],
                "o-" if start == "pretrained" else "s--", label=label)
    chance_line(ax, chance)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("fine-tuning from pretrained weights vs training from scratch")
    return ax


def plot_relative_throughput(rows: list[dict], ax=None):
    """Table 3 as bars: training throughput of each fused-stage variant relative to no fused stages,
    ours beside the paper's TPUv3 and V100 (rows: fused_stages, train_images_per_sec, paper_tpu,
    paper_v100)."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    base = next(r for r in rows if r["fused_stages"] == 0)
    series = [("ours", "train_images_per_sec"), ("paper TPUv3", "paper_tpu"),
              ("paper V100", "paper_v100")]
    x = np.arange(len(rows))
    for k, (label, key) in enumerate(series):
        ax.bar(x + (k - 1) * 0.27, [r[key] / base[key] for r in rows], width=0.27, label=label)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set_xticks(x, ["none" if not r["fused_stages"] else f"1-{r['fused_stages']}" for r in rows])
    ax.set_xlabel("stages with Fused-MBConv (EfficientNet-B4)")
    ax.set_ylabel("training images/s vs no fused")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_per_stage(rows: list[dict], device: str = "", ax=None):
    """Fused-MBConv's training speed over MBConv's, stage by stage (section 3.2: above 1, fusing
    pays)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.5))
    ratios = [r["fused_vs_mbconv"] for r in rows]
    ax.bar(range(len(rows)), ratios, color=["#f28e2b" if x > 1 else "#4e79a7" for x in ratios])
    ax.axhline(1.0, color="gray", lw=1)
    ax.set_xticks(range(len(rows)), [f"stage {r['stage']}\n{r['resolution']} px" for r in rows],
                  fontsize=8)
    ax.set_ylabel("Fused-MBConv / MBConv training speed")
    ax.set_yscale("log")
    ax.set_title("EfficientNet-B4's stages as Fused-MBConv vs "
                 f"MBConv{' on ' + device if device else ''}")
    ax.grid(axis="y", alpha=0.3)
    return ax


def plot_lr_schedule(config, steps_per_epoch: int = 100, ax=None):
    """The learning rate over training (warm-up, then the recipe's decay), from
    ``optim.lr_factor``."""
    from ..paper.optim import lr_factor

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.2))
    steps = range(config.epochs * steps_per_epoch + 1)
    ax.plot([s / steps_per_epoch for s in steps],
            [lr_factor(s / steps_per_epoch, config) for s in steps])
    ax.set_xlabel("epoch")
    ax.set_ylabel("learning rate / peak")
    ax.set_title(f"{config.schedule} schedule, {config.warmup_epochs:g} warm-up epoch(s)")
    ax.grid(alpha=0.3)
    return ax


def draw_blocks(mbconv, fused, resolution: int = 64):
    """Figure 2 drawn from our modules: the layers of an MBConv and a Fused-MBConv block, top to
    bottom, each box with its operation, output shape and parameter count (read from the modules,
    not typed by hand)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    tallest = max(len(_block_layers(block, resolution)) for block in (mbconv, fused))
    for ax, block in zip(axes, (mbconv, fused)):
        layers = _block_layers(block, resolution)
        for i, (label, shape, params, kind) in enumerate(layers):
            y = len(layers) - i
            ax.add_patch(Rectangle((0.1, y - 0.4), 0.8, 0.75,
                                   color=BLOCK_COLORS.get(kind, "#bab0ac"), alpha=0.85))
            ax.text(0.5, y, f"{label}\n{shape}, {params:,} params", ha="center", va="center",
                    fontsize=8)
            if i:
                ax.annotate("", xy=(0.5, y + 0.36), xytext=(0.5, y + 0.6),
                            arrowprops=dict(arrowstyle="->"))
        ax.set_xlim(0, 1)
        ax.set_ylim(len(layers) - tallest + 0.3, len(layers) + 0.6)
        ax.axis("off")
        ax.set_title(f"{type(block).__name__}: {sum(p.numel() for p in block.parameters()):,} "
                     "parameters")
    fig.suptitle("paper Figure 2, from effnetv2_mini.paper.blocks (input "
                 f"{resolution}x{resolution})")
    fig.tight_layout()
    return fig


def _block_layers(block, resolution: int) -> list[tuple]:
    """(label, output shape, parameters, colour key) of each layer of an MBConv / Fused-MBConv."""
    rows, size = [], resolution
    for name in ("expand", "depthwise", "fused", "se", "project"):
        layer = getattr(block, name, None)
        if layer is None:
            continue
        params = sum(p.numel() for p in layer.parameters())
        if name == "se":
            se = "squeeze-and-excitation (pool, 1x1, SiLU, 1x1, sigmoid)"
            rows.append((se, f"{layer.expand.out_channels}ch", params, "other"))
            continue
        conv = layer.conv
        size = -(-size // conv.stride[0])
        kind = "depthwise" if conv.groups > 1 else "regular"
        activation = "" if layer.act.__class__.__name__ == "Identity" else ", SiLU"
        label = (f"{conv.kernel_size[0]}x{conv.kernel_size[0]} {kind} conv, "
                 f"stride {conv.stride[0]}, BN{activation}")
        rows.append((label, f"{conv.out_channels}ch {size}x{size}", params,
                     "MBConv" if kind == "depthwise"
                     else ("Fused-MBConv" if name == "fused" else "other")))
    if block.has_residual:
        rows.append(("+ input (stochastic depth)", "", 0, "other"))
    return rows


def plot_families(models: list[dict]):
    """EfficientNet V1 and V2: the papers' ImageNet top-1 (left) and our parameter counts (right)
    against our FLOPs, one line per family (``models`` rows: name, family, params, macs,
    paper_top1)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for family, style in (("v1", "o--"), ("v2", "s-")):
        points = sorted((m for m in models if m["family"] == family), key=lambda m: m["macs"])
        label = "EfficientNet (V1)" if family == "v1" else "EfficientNetV2"
        scored = [m for m in points if m.get("paper_top1") is not None]
        line = axes[0].plot([m["macs"] / 1e9 for m in scored], [m["paper_top1"] for m in scored],
                            style, label=label)[0]
        axes[1].plot([m["macs"] / 1e9 for m in points], [m["params"] / 1e6 for m in points], style,
                     label=label, color=line.get_color())
        for m in scored:
            axes[0].annotate(_short(m["name"]), (m["macs"] / 1e9, m["paper_top1"]), fontsize=7,
                             xytext=(4, -9), textcoords="offset points")
    axes[0].set_ylabel("ImageNet top-1 (%, the papers')")
    axes[1].set_ylabel("parameters (millions, ours)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs at eval size (billions of multiply-adds, ours)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return fig


def _short(name: str) -> str:
    return ("V2-" if "v2" in name else "") + name.split("_")[-1].upper()


def plot_scaling(rows: list[dict], speed_key: str, device: str = ""):
    """Top-1 (the papers') and training speed (ours, all models at one image size) against FLOPs, V1
    and V2."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for family, style in (("v1", "o--"), ("v2", "s-")):
        points = sorted((r for r in rows if r["family"] == family), key=lambda r: r["macs"])
        label = "EfficientNet (V1)" if family == "v1" else "EfficientNetV2"
        scored = [r for r in points if r.get("paper_top1") is not None]
        axes[0].plot([r["macs"] / 1e9 for r in scored], [r["paper_top1"] for r in scored], style,
                     label=label)
        # a rehearsal times only some models
        timed = [r for r in points if r.get(speed_key) is not None]
        axes[1].plot([r["macs"] / 1e9 for r in timed], [r[speed_key] for r in timed], style,
                     label=label)
        for r in timed:
            axes[1].annotate(_short(r["model"]), (r["macs"] / 1e9, r[speed_key]), fontsize=7,
                             xytext=(3, 3), textcoords="offset points")
    size = rows[0]["measured_at"] if rows else "?"
    axes[0].set_ylabel("ImageNet top-1 (%, the papers')")
    axes[1].set_ylabel(f"{speed_key.replace('_', ' ')} at {size} px "
                       f"(ours{', ' + device if device else ''})")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("FLOPs at each model's eval size (GMACs)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def show_predictions(checkpoint_path: str, dataset: str, data_root: str | None = None,
                     options: dict | None = None, classes: list[int] | None = None,
                     count: int = 16):
    """A grid of the first ``count`` validation images with the model's predicted class; wrong ones
    framed red."""
    import torch

    from ..data.datasets import get_dataset, is_built_in
    from ..data.loaders import ClassSubset
    from ..data.transforms import normalization_of
    from ..engine.evaluation import checkpoint_eval_transform, load_model

    model, checkpoint = load_model(checkpoint_path)
    size = checkpoint.get("eval_size") or model.config.eval_size
    extra = dict(options or {}, resolution=size) if is_built_in(dataset) else {}
    val = get_dataset(dataset, "val", root=data_root, **extra)
    if classes is not None:
        val = ClassSubset(val, classes)
    val.transform = checkpoint_eval_transform(checkpoint, size, dataset)
    step = max(1, len(val) // count)
    items = [val[i * step] for i in range(min(count, len(val)))]
    images, truth = torch.stack([x[0] for x in items]), [x[1] for x in items]
    with torch.no_grad():
        predicted = model.eval()(images).argmax(1).tolist()
    names = [c if isinstance(c, str) else c[0] for c in val.classes]
    right = sum(p == t for p, t in zip(predicted, truth))
    normalization = normalization_of(checkpoint.get("preprocessing"), checkpoint.get("normalize"))
    fig = show_images(images, torch.tensor(predicted), names, normalization=normalization,
                      title=f"{len(items)} validation images: predicted class (title), red frame = "
                            f"wrong ({right} right)")
    for ax, p, t in zip(fig.axes, predicted, truth):
        if p != t:
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set(visible=True, color="red", linewidth=3)
    return fig
