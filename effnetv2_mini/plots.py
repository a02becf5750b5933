"""Figures shared by the notebooks and the report (matplotlib only, no state)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
from matplotlib.patches import Patch, Rectangle

__all__ = ["BLOCK_COLORS", "draw_architecture", "plot_params_vs_flops", "plot_training_curves", "show_images",
           "plot_regularization_grid", "plot_schedule", "plot_accuracy_vs_time", "plot_nas_candidates",
           "plot_finetune_curves", "plot_relative_throughput"]

BLOCK_COLORS = {"Fused-MBConv": "#f28e2b", "MBConv": "#4e79a7", "other": "#bab0ac"}


def _kind(operator: str) -> str:
    if operator.startswith("Fused-MBConv"):
        return "Fused-MBConv"
    if operator.startswith("MBConv"):
        return "MBConv"
    return "other"


def draw_architecture(stage_rows: list[dict], title: str = "", ax=None):
    """Draw a network as a row of boxes, one per stage (from ``EfficientNet.stage_table(image_size)``).

    Box height follows the stage's output resolution, box width its channel count (square-root scale so
    that 24 and 1280 channels both stay visible); colour gives the block type; the label gives the
    operator and the number of layers.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 3.2))
    max_res = max(r["resolution"] or 1 for r in stage_rows)
    x = 0.0
    for row in stage_rows:
        width = math.sqrt(row["channels"]) / 6
        height = (row["resolution"] or max_res) / max_res
        ax.add_patch(Rectangle((x, -height / 2), width, height, color=BLOCK_COLORS[_kind(row["operator"])], alpha=0.9))
        label = f"{row['layers']}x\n{row['channels']}ch"
        if row["resolution"]:
            label += f"\n{row['resolution']}px"
        ax.text(x + width / 2, -height / 2 - 0.08, label, ha="center", va="top", fontsize=7)
        x += width + 0.25
    ax.set_xlim(-0.25, x)
    ax.set_ylim(-1.0, 0.65)
    ax.axis("off")
    ax.legend(
        handles=[Patch(color=c, label=k if k != "other" else "stem / head") for k, c in BLOCK_COLORS.items()],
        loc="upper right", fontsize=8, ncol=3, frameon=False,
    )
    if title:
        ax.set_title(title)
    return ax


def plot_params_vs_flops(rows: list[dict], ax=None):
    """Params (M) against multiply-adds (B), one line per family (``rows`` need name, family, params, macs)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for family, style in (("v1", "o--"), ("v2", "s-")):
        points = sorted((r for r in rows if r["family"] == family), key=lambda r: r["macs"])
        if not points:
            continue
        label = "EfficientNet (V1)" if family == "v1" else "EfficientNetV2"
        ax.plot([p["macs"] / 1e9 for p in points], [p["params"] / 1e6 for p in points], style, label=label)
        for p in points:
            ax.annotate(p["name"].split("_")[-1].upper(), (p["macs"] / 1e9, p["params"] / 1e6), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs at eval size (billions of multiply-adds, measured)")
    ax.set_ylabel("parameters (millions)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return ax


def plot_training_curves(rows: list[dict], title: str = ""):
    """Loss, top-1 (raw and EMA) and images/s per epoch, from ``metrics.jsonl`` rows."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    epochs = [r["epoch"] for r in rows]
    axes[0].plot(epochs, [r["train_loss"] for r in rows], "o-", label="train")
    axes[0].plot(epochs, [r["val_loss"] for r in rows], "s-", label="val")
    axes[0].set_ylabel("loss")
    axes[1].plot(epochs, [r["val_top1"] for r in rows], "o-", label="weights")
    if "ema_top1" in rows[0]:
        axes[1].plot(epochs, [r["ema_top1"] for r in rows], "s-", label="EMA of weights")
    axes[1].set_ylabel("val top-1 (%)")
    axes[2].plot(epochs, [r["images_per_sec"] for r in rows], "o-")
    axes[2].set_ylabel("training images/s")
    axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend()
    axes[1].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images, labels=None, class_names=None, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                columns: int = 8, title: str = ""):
    """A grid of (normalised) image tensors, e.g. a batch after augmentation."""
    import torch

    images = images.detach().float().cpu() * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, image in enumerate(images):
        ax = axes.flat[i]
        ax.imshow(image.clamp(0, 1).permute(1, 2, 0).numpy())
        if labels is not None:
            label = int(labels[i].argmax()) if labels[i].ndim else int(labels[i])  # soft labels after MixUp
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
            ax.text(j, i, f"{data[i, j]:.1f}", ha="center", va="center", color="white" if not bold else "black",
                    fontweight="bold" if bold else "normal",
                    bbox=dict(facecolor="yellow", alpha=0.8, edgecolor="none") if bold else None)
    ax.set_title(title)


def plot_regularization_grid(grid: dict, paper: dict | None = None):
    """Table 5 as heatmaps: top-1 per (RandAugment magnitude, image size), the best magnitude of each size
    highlighted; ours beside the paper's. ``grid["top1"][i][j]`` is size i, magnitude j (regularization_grid)."""
    panels = 2 if paper else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.8), squeeze=False)
    ours = [[grid["top1"][i][j] for i in range(len(grid["sizes"]))] for j in range(len(grid["magnitudes"]))]
    _heatmap(axes[0][0], ours, grid["magnitudes"], grid["sizes"], "ours (top-1 %)", "RandAugment magnitude", "image size")
    if paper:
        _heatmap(axes[0][1], paper["top1"], paper["magnitudes"], paper["sizes"], "paper Table 5 (ImageNet top-1 %)",
                 "RandAugment magnitude", "image size")
    fig.tight_layout()
    return fig


def plot_schedule(schedule, title: str = ""):
    """Image size and each regularizer across epochs (Algorithm 1)."""
    settings = schedule.epoch_settings()
    epochs = range(1, len(settings) + 1)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    series = [("image size (px)", [s.image_size for s in settings]),
              ("dropout", [s.dropout if s.dropout is not None else float("nan") for s in settings]),
              ("RandAugment magnitude", [s.randaug_magnitude for s in settings]),
              ("mixup alpha", [s.mixup_alpha for s in settings])]
    for ax, (label, values) in zip(axes, series):
        ax.step(list(epochs), values, where="post")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"{schedule.variant} schedule ({schedule.source})")
    fig.tight_layout()
    return fig


def plot_accuracy_vs_time(rows: list[dict], ax=None):
    """Top-1 against training wall-clock, one curve per run (rows from ``compare_variants``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for row in rows:
        curve = row["curve"]
        ax.plot([c["wall_time"] for c in curve], [c["top1"] for c in curve], "o-", markersize=3,
                label=f"{row['variant']} (seed {row['seed']})")
    ax.set_xlabel("training wall-clock (s)")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def plot_nas_candidates(ranked: list[dict], front: list[dict] | None = None, ax=None):
    """NAS candidates: proxy accuracy A against normalized step time S, marker size by parameters P, colour by
    the reward A * S^w * P^v (paper section 3.2); ``front`` (e.g. ``nas.pareto_front``) drawn as a dashed line."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    largest = max(r["params"] for r in ranked)
    points = ax.scatter([r["normalized_step_time"] for r in ranked], [r["accuracy"] for r in ranked],
                        s=[30 + 300 * r["params"] / largest for r in ranked], c=[r["reward"] for r in ranked],
                        cmap="viridis", alpha=0.8)
    if front:
        ax.plot([r["normalized_step_time"] for r in front], [r["accuracy"] for r in front], "r--o", label="Pareto front")
        ax.legend()
    ax.set_xlabel("training-step time / reference (S)")
    ax.set_ylabel("proxy accuracy (A)")
    ax.figure.colorbar(points, ax=ax, label="reward")
    ax.grid(alpha=0.3)
    return ax


def plot_finetune_curves(curves: dict[str, list[dict]], ax=None):
    """Validation top-1 per epoch of each fine-tuning run (``"model/data set/start"`` -> metrics rows)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    for name, metrics in curves.items():
        ax.plot([m["epoch"] for m in metrics], [m["val_top1"] for m in metrics],
                "o-" if "pretrained" in name else "s--", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("val top-1 (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("fine-tuning from pretrained weights vs training from scratch")
    return ax


def plot_relative_throughput(rows: list[dict], ax=None):
    """Table 3 as bars: training throughput of each fused-stage variant relative to no fused stages, ours beside
    the paper's TPUv3 and V100 (rows: fused_stages, train_images_per_sec, paper_tpu, paper_v100)."""
    import numpy as np

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    base = next(r for r in rows if r["fused_stages"] == 0)
    series = [("ours", "train_images_per_sec"), ("paper TPUv3", "paper_tpu"), ("paper V100", "paper_v100")]
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
