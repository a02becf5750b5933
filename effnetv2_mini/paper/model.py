"""EfficientNet / EfficientNetV2 built from a :class:`~effnetv2_mini.paper.configs.ModelConfig`.

stem (3x3 stride-2 ConvBNAct) -> stages of MBConv / Fused-MBConv blocks -> head (1x1 ConvBNAct to
1280 channels) -> global average pool -> dropout -> linear (paper Figure 2 and Table 4;
docs/paper.md#blocks-figure-2).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .blocks import ConvBNAct, FusedMBConv, MBConv
from .configs import ModelConfig, StageArgs, get_config, list_models

__all__ = ["EfficientNet", "AdaptiveDropout", "build_model", "list_models"]


def _official_conv_std(conv: nn.Conv2d) -> float:
    """Standard deviation of the official conv initializer (effnetv2_model.py
    ``conv_kernel_initializer``): N(0, sqrt(2 / fan_out)) with fan_out = kernel_h * kernel_w * the
    last dimension of the TF kernel.

    That dimension is ``out_channels`` for a regular conv (TF kernel [k, k, in, out]) but the depth
    multiplier ``out_channels / groups`` (1 in EfficientNet) for a depthwise conv (TF kernel [k, k,
    channels, multiplier]): a 3x3 depthwise conv gets sqrt(2 / 9) = 0.471. PyTorch's
    kaiming_normal_(mode="fan_out") counts all ``out_channels`` for a depthwise weight [C, 1, k, k],
    a std sqrt(C) times too small.
    """
    kernel_h, kernel_w = conv.kernel_size
    depthwise = conv.groups > 1 and conv.groups == conv.in_channels
    outputs = conv.out_channels // conv.groups if depthwise else conv.out_channels
    return math.sqrt(2.0 / (kernel_h * kernel_w * outputs))


class AdaptiveDropout:
    """A network whose head dropout (``self.dropout``) Algorithm 1 changes
    per stage (paper section 4)."""

    dropout: nn.Dropout

    def set_dropout(self, rate: float) -> None:
        """Change the head dropout at run time (progressive learning
        schedules it, paper section 4)."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {rate}")
        self.dropout.p = rate


class EfficientNet(AdaptiveDropout, nn.Module):
    """One class for the whole family: V2-S/M/L/XL, V2-B0..B3 and the V1 baselines B0..B7."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        bn = dict(bn_eps=config.bn_eps, bn_momentum=config.bn_momentum)
        stage_args = config.stages()
        self.stem = ConvBNAct(3, config.stem_channels, 3, stride=2, **bn)

        total_blocks = sum(s.repeats for s in stage_args)
        block_index = 0
        stages = []
        for args in stage_args:
            blocks = []
            for repeat in range(args.repeats):
                # Survival probability 1 - rate * idx / num_blocks (docs/paper.md#blocks-figure-2).
                drop_path = config.drop_path_rate * block_index / total_blocks
                block_cls = FusedMBConv if args.fused else MBConv
                blocks.append(
                    block_cls(
                        in_channels=args.in_channels if repeat == 0 else args.out_channels,
                        out_channels=args.out_channels,
                        kernel=args.kernel,
                        stride=args.stride if repeat == 0 else 1,
                        expand_ratio=args.expand_ratio,
                        se_ratio=args.se_ratio,
                        drop_path=drop_path,
                        **bn,
                    )
                )
                block_index += 1
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.stage_args = stage_args

        self.head = ConvBNAct(stage_args[-1].out_channels, config.head_width, 1, **bn)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(config.head_width, config.num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official initialisation: conv ~ N(0, sqrt(2 / fan_out)) (see :func:`_official_conv_std`;
        depthwise convs count one output per input channel), dense ~ U(+-1/sqrt(classes)), batch
        norm weight 1 and bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, mean=0.0, std=_official_conv_std(module))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                self.init_classifier(module)

    def init_classifier(self, module: nn.Linear | None = None,
                        range_classes: int | None = None) -> None:
        """The official dense init, U(+-1/sqrt(N)), N the number of classes; ``range_classes``
        replaces N (the ``short`` recipe keeps ImageNet's N = 1000 on 10-class data, where the
        official range is 10x wider and the first steps' logits are large: a loss near 4 where a
        uniform guess gives 2.3)."""
        module = module if module is not None else self.classifier
        bound = 1.0 / math.sqrt(range_classes or module.out_features)
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean((2, 3))
        return self.classifier(self.dropout(x))

    def stage_table(self, image_size: int | None = None) -> list[dict]:
        """A Table-4-like summary: one row per stage (stem and head included).

        With ``image_size``, each row also gives the stage's output resolution.
        """
        size = image_size
        rows = []

        def add(stage, operator, stride, channels, layers, args: StageArgs | None = None):
            nonlocal size
            if size is not None:
                size = -(-size // stride)  # ceil division, as symmetric padding gives
            rows.append(
                {
                    "stage": stage,
                    "operator": operator,
                    "stride": stride,
                    "channels": channels,
                    "layers": layers,
                    "kernel": args.kernel if args else None,
                    "expand": args.expand_ratio if args else None,
                    "se": args.se_ratio if args else None,
                    "resolution": size,
                }
            )

        add(0, "Conv3x3", 2, self.config.stem_channels, 1)
        for i, args in enumerate(self.stage_args, start=1):
            se = (", SE0.25" if args.se_ratio == 0.25
                  else (f", SE{args.se_ratio:g}" if args.se_ratio else ""))
            operator = f"{args.operator}{args.expand_ratio}, k{args.kernel}x{args.kernel}{se}"
            add(i, operator, args.stride, args.out_channels, args.repeats, args)
        add(len(self.stage_args) + 1, "Conv1x1 & Pooling & FC", 1, self.config.head_width, 1)
        return rows


def build_model(name: str | ModelConfig, num_classes: int | None = None, **overrides) -> nn.Module:
    """Build one of the paper's networks by name (see :func:`list_models`) or from a
    :class:`ModelConfig` (torchvision's ResNets of Table 12 too:
    :func:`effnetv2_mini.models.build_model`).

    ``overrides`` replace config fields, e.g. ``dropout=0.3, drop_path_rate=0.1, width_mult=0.5,
    depth_mult=0.5, bn_momentum=0.1``. An unknown override raises TypeError listing the allowed
    ones; an unknown name raises an error listing the close matches.
    """
    config = name if isinstance(name, ModelConfig) else get_config(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    allowed = {f.name for f in dataclasses.fields(ModelConfig)} - {"name", "family", "source"}
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise TypeError(f"unknown override(s) {', '.join(unknown)} for build_model; allowed: "
                        f"{', '.join(sorted(allowed))}")
    if isinstance(overrides.get("blocks"), str):
        overrides["blocks"] = tuple(overrides["blocks"].split())
    elif isinstance(overrides.get("blocks"), list):  # e.g. from a JSON config
        overrides["blocks"] = tuple(overrides["blocks"])
    return EfficientNet(dataclasses.replace(config, **overrides))
