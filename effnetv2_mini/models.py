"""Every network the project trains, by name: the paper's EfficientNets and torchvision's ResNets.

:func:`effnetv2_mini.paper.model.build_model` builds the paper's family only (V2-S/M/L/XL,
V2-B0..B3, V1 B0..B7, the demo models). The ResNets of section 6.2 (Table 12: progressive learning
on a ResNet) are torchvision's (:mod:`effnetv2_mini.baselines`). This module is where the two meet,
so that the training engine, the experiments and the command line take any of them by name and
``paper/`` never imports torchvision's networks.

    model = build_model("resnet50", num_classes=10)  # torchvision's ResNet-50 with a head dropout
    model = build_model("efficientnetv2_s", dropout=0.3)  # ours
"""

from __future__ import annotations

from torch import nn

from .baselines import baseline_config, build_baseline, is_baseline
from .paper import model as paper_model
from .paper.configs import ModelConfig, get_config

__all__ = ["build_model", "default_sizes"]


def build_model(name: str | ModelConfig, num_classes: int | None = None, **overrides) -> nn.Module:
    """A network by name: ``resnet18`` and ``resnet50`` are torchvision's ResNets (they take
    ``num_classes``, ``dropout``, ``bn_momentum`` and ``drop_path_rate``, skipped with a warning);
    any other name or a :class:`ModelConfig` goes to :func:`effnetv2_mini.paper.model.build_model`
    (its ``overrides`` replace config fields)."""
    if is_baseline(name):
        return build_baseline(name, num_classes, **overrides)
    return paper_model.build_model(name, num_classes, **overrides)


def default_sizes(name: str) -> tuple[int, int]:
    """(training size, evaluation size) of a model when a run gives none: its config's, or for
    torchvision's ResNets torchvision's 224 px."""
    config = baseline_config(name) or get_config(name)
    return config.train_size, config.eval_size
