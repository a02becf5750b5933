"""Networks that are not EfficientNets, for the paper's section 6.2 (Table 12:
progressive learning on ResNets).

These are **torchvision's** networks (``torchvision.models.resnet18`` / ``resnet50``,
He et al. 2016, built with ``weights=None``: random initialization, torchvision's own), not ours.
The wrapper changes nothing inside them; it only puts what the training loop needs around them:

- a head dropout before the classifier, ``model.dropout``, whose rate progressive learning changes
  per stage (``set_dropout``, Algorithm 1's adaptive regularization, paper section 4); torchvision's
  ResNet has none, so the default rate is 0;
- the classifier as ``model.classifier`` (torchvision's ``fc``, same shape and initialization), so
  that ``freeze_backbone`` (train ``classifier.*`` only) works as for EfficientNets;
- ``bn_momentum`` set on every BatchNorm layer (the recipes' value: the
  paper's 0.99 decay is 0.01 here);
- a small ``config`` (name, family, sizes) for the code that asks a model its evaluation size.

Stochastic depth (``drop_path_rate``) does not exist in torchvision's ResNet: a nonzero rate is
skipped with a warning and recorded in ``model.skipped``. torchvision's ImageNet weights are not
mapped (``init_from="torchvision"`` is for EfficientNets); a checkpoint of our own ResNet
training loads as any other.

    model = build_model("resnet18", num_classes=10)  # effnetv2_mini.models.build_model knows
    TrainConfig(model="resnet50", ...)               # these names and so does the training loop
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from .paper.model import AdaptiveDropout

__all__ = ["BASELINES", "BaselineConfig", "TorchvisionResNet", "build_baseline", "baseline_config",
           "is_baseline"]


@dataclass(frozen=True)
class BaselineConfig:
    """What the rest of the library asks a model: its name, family and default
    sizes (torchvision's 224 px)."""

    name: str
    family: str = "resnet"
    train_size: int = 224
    eval_size: int = 224
    dropout: float = 0.0
    num_classes: int = 1000
    description: str = ""


BASELINES: dict[str, BaselineConfig] = {
    "resnet18": BaselineConfig(
        "resnet18", description="torchvision's ResNet-18 (He et al. 2016), with a head dropout"),
    "resnet50": BaselineConfig(
        "resnet50", description="torchvision's ResNet-50 (He et al. 2016; paper Table 12), "
                                "with a head dropout"),
}
_OPTIONS = ("num_classes", "dropout", "bn_momentum", "drop_path_rate")


def baseline_config(name) -> BaselineConfig | None:
    """The config of a baseline name (``resnet18``, ``ResNet-50``, ...), None for any other name."""
    return BASELINES.get(name.strip().lower().replace("-", "")) if isinstance(name, str) else None


def is_baseline(name) -> bool:
    """True for the names :func:`build_baseline` builds (``resnet18``, ``resnet50``)."""
    return baseline_config(name) is not None


class TorchvisionResNet(AdaptiveDropout, nn.Module):
    """torchvision's ResNet with its ``fc`` split into ``dropout`` and ``classifier``
    (see the module docstring)."""

    def __init__(self, config: BaselineConfig, bn_momentum: float | None = None):
        super().__init__()
        import torchvision

        self.config = config
        net = getattr(torchvision.models, config.name)(weights=None, num_classes=config.num_classes)
        self.classifier = net.fc  # torchvision's own layer and initialization
        net.fc = nn.Identity()
        self.backbone = net
        self.dropout = nn.Dropout(config.dropout)
        self.skipped: dict = {}
        if bn_momentum is not None:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.momentum = bn_momentum

    def forward(self, x):
        return self.classifier(self.dropout(self.backbone(x)))


def build_baseline(name: str, num_classes: int | None = None, dropout: float | None = None,
                   bn_momentum: float | None = None, drop_path_rate: float | None = None,
                   **unknown) -> TorchvisionResNet:
    """torchvision's ResNet ``name`` (``resnet18``, ``resnet50``) for ``num_classes``
    classes, with a head dropout.

    ``drop_path_rate`` is accepted because the training loop passes the recipe's: torchvision's
    ResNet has no stochastic depth, so a nonzero rate is skipped (a warning, and
    ``model.skipped``), never silently applied.
    """
    config = baseline_config(name)
    if config is None:
        raise ValueError(f"unknown baseline {name!r}; baselines: {', '.join(BASELINES)}")
    key = config.name
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(sorted(unknown))} for torchvision's "
                        f"{key}; allowed: {', '.join(_OPTIONS)} (its architecture is "
                        "torchvision's, not configurable here)")
    changes = {k: v for k, v in (("num_classes", num_classes), ("dropout", dropout))
               if v is not None}
    model = TorchvisionResNet(BaselineConfig(**{**config.__dict__, **changes}), bn_momentum)
    if drop_path_rate:
        warnings.warn(f"torchvision's {key} has no stochastic depth: "
                      f"drop_path_rate={drop_path_rate} is skipped",
                      stacklevel=2)
        model.skipped["drop_path_rate"] = drop_path_rate
    return model
