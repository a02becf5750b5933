"""The building blocks of EfficientNet and EfficientNetV2 (paper Figure 2 and section 3.3).

- :class:`ConvBNAct`     convolution -> BatchNorm -> SiLU (or no activation)
- :class:`SqueezeExcite` squeeze-and-excitation, squeeze width from the *block input* channels
- :class:`DropPath`      stochastic depth: drop the residual branch per sample while training
- :class:`MBConv`        1x1 expand -> kxk depthwise -> SE -> 1x1 project (EfficientNet's block)
- :class:`FusedMBConv`   kxk conv (expand + spatial in one) -> SE -> 1x1 project
                         (V2's early-stage block)

Padding is symmetric, ``(k - 1) // 2``, as in torchvision (docs/paper.md#blocks-figure-2: weights
trained with TensorFlow "same" padding lose about 1% top-1 when run with
symmetric padding at stride 2).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ConvBNAct", "SqueezeExcite", "DropPath", "MBConv", "FusedMBConv"]


class ConvBNAct(nn.Module):
    """``kxk`` convolution (no bias), BatchNorm, then SiLU unless ``act=False``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int = 1,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel, stride, padding=(kernel - 1) // 2, groups=groups,
            bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act = nn.SiLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation (paper Figure 2).

    Global average pool -> 1x1 conv to ``squeeze_channels`` (with bias) -> SiLU -> 1x1 conv back
    (with bias) -> sigmoid -> rescale the input channels. The official code sets
    ``squeeze_channels = max(1, int(block_input_channels * se_ratio))``: the *block input*, not the
    expanded width, is what the ratio applies to.
    """

    def __init__(self, channels: int, squeeze_channels: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In-place activations act on fresh conv outputs that autograd does not need.
        scale = nn.functional.silu(self.reduce(x.mean((2, 3), keepdim=True)), inplace=True)
        return x * self.expand(scale).sigmoid_()


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016) as used by the paper: each *sample* in a batch skips the
    residual branch with probability ``rate``; kept samples are scaled by ``1 / (1 - rate)``.
    Identity in eval mode and when ``rate == 0``.
    """

    def __init__(self, rate: float = 0.0):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * mask.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


def _se_channels(block_in: int, se_ratio: float) -> int:
    return max(1, int(block_in * se_ratio))


class _InvertedResidual(nn.Module):
    """What MBConv and Fused-MBConv share: ``out = branch(x)``, plus ``x`` through stochastic depth
    when the block keeps its shape (stride 1 and equal channels; docs/paper.md#blocks-figure-2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, drop_path: float):
        super().__init__()
        self.has_residual = stride == 1 and in_channels == out_channels
        self.drop_path = DropPath(drop_path) if self.has_residual else nn.Identity()

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if not self.has_residual:
            return out
        out = self.drop_path(out)
        # in place: cheaper, and autograd does not need the branch output (BN saves its input)
        out += x
        return out


class MBConv(_InvertedResidual):
    """Mobile inverted bottleneck (paper Fig. 2, left).

    ``[1x1 expand, BN, SiLU]`` (only if ``expand_ratio != 1``) -> ``kxk`` depthwise with the stride,
    BN, SiLU -> SE (optional) -> 1x1 project, BN, no activation -> + input (stride 1 and equal
    channels only, through stochastic depth).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float | None,
        drop_path: float = 0.0,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ):
        super().__init__(in_channels, out_channels, stride, drop_path)
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        hidden = in_channels * expand_ratio
        self.expand = ConvBNAct(in_channels, hidden, 1, **bn) if expand_ratio != 1 else None
        self.depthwise = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, **bn)
        self.se = SqueezeExcite(hidden, _se_channels(in_channels, se_ratio)) if se_ratio else None
        self.project = ConvBNAct(hidden, out_channels, 1, act=False, **bn)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.expand is None else self.expand(x)
        out = self.depthwise(out)
        if self.se is not None:
            out = self.se(out)
        out = self.project(out)
        return out


class FusedMBConv(_InvertedResidual):
    """Fused-MBConv (paper Figure 2, right; section 3.3): the 1x1 expansion and the depthwise
    ``kxk`` of MBConv are replaced by one regular ``kxk`` convolution, which uses
    accelerators better in early stages.

    ``expand_ratio != 1``: ``kxk`` conv with the stride to ``in * e`` channels, BN, SiLU -> SE
    (optional; no V2 config uses it) -> 1x1 project, BN. ``expand_ratio == 1``: a single ``kxk``
    conv, BN, SiLU; an SE, if configured, comes *before* that conv, on the block's input, as in the
    official ``FusedMBConvBlock`` (whose SE always acts on the expansion output, which for e
    == 1 is the input itself).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float | None,
        drop_path: float = 0.0,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.01,
    ):
        super().__init__(in_channels, out_channels, stride, drop_path)
        bn = dict(bn_eps=bn_eps, bn_momentum=bn_momentum)
        if expand_ratio == 1:
            self.se = (SqueezeExcite(in_channels, _se_channels(in_channels, se_ratio)) if se_ratio
                       else None)
            self.fused = ConvBNAct(in_channels, out_channels, kernel, stride, **bn)
            self.project = None
        else:
            hidden = in_channels * expand_ratio
            self.fused = ConvBNAct(in_channels, hidden, kernel, stride, **bn)
            self.se = (SqueezeExcite(hidden, _se_channels(in_channels, se_ratio)) if se_ratio
                       else None)
            self.project = ConvBNAct(hidden, out_channels, 1, act=False, **bn)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        if self.project is None:  # e == 1: [SE on the input ->] one kxk conv
            return self.fused(x if self.se is None else self.se(x))
        out = self.fused(x)
        if self.se is not None:
            out = self.se(out)
        return self.project(out)
