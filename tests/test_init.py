"""EfficientNet.reset_parameters against the official initializers (efficientnetv2/effnetv2_model.py).

conv_kernel_initializer: N(0, sqrt(2 / fan_out)), fan_out = k * k * (last dim of the TF kernel): out_channels for a
regular conv, the depth multiplier 1 for a depthwise conv. dense_kernel_initializer: U(-1/sqrt(out), 1/sqrt(out)).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effnetv2_mini.paper.model import _official_conv_std, build_model


def test_official_conv_std_literals():
    assert _official_conv_std(nn.Conv2d(32, 64, 3)) == pytest.approx(0.058926, rel=1e-4)  # sqrt(2 / (3 * 3 * 64))
    assert _official_conv_std(nn.Conv2d(96, 96, 3, groups=96)) == pytest.approx(0.471405, rel=1e-4)  # sqrt(2 / 9)
    assert _official_conv_std(nn.Conv2d(96, 96, 5, groups=96)) == pytest.approx(0.282843, rel=1e-4)  # sqrt(2 / 25)
    assert _official_conv_std(nn.Conv2d(256, 1280, 1)) == pytest.approx(0.039528, rel=1e-4)  # sqrt(2 / 1280)


@pytest.fixture(scope="module")
def v2_s():
    torch.manual_seed(0)
    return build_model("efficientnetv2_s")


def test_depthwise_convs_get_std_sqrt_2_over_9(v2_s):
    depthwise = [m.weight for m in v2_s.modules()
                 if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels and m.kernel_size == (3, 3)]
    assert len(depthwise) > 10
    weights = torch.cat([w.flatten() for w in depthwise])
    # sqrt(2 / 9) = 0.4714; kaiming fan_out (sqrt(2 / (9 * C)), C >= 512 here) would give 0.027 or less
    assert weights.std().item() == pytest.approx(0.4714, rel=0.02)
    assert abs(weights.mean().item()) < 0.01


def test_regular_convs_keep_fan_out_of_all_outputs(v2_s):
    head = v2_s.head.conv.weight  # 1x1, 256 -> 1280
    assert head.std().item() == pytest.approx(0.03953, rel=0.02)  # sqrt(2 / 1280)
    fused = v2_s.stages[1][1].fused.conv.weight  # 3x3, 48 -> 192
    assert tuple(fused.shape) == (192, 48, 3, 3)
    assert fused.std().item() == pytest.approx(0.03402, rel=0.02)  # sqrt(2 / (9 * 192))
    torch.manual_seed(0)
    tiny = build_model("demo_v2_tiny")
    conv = tiny.stages[1][0].fused.conv  # 3x3, 16 -> 64: 9216 weights
    assert tuple(conv.weight.shape) == (64, 16, 3, 3)
    assert conv.weight.std().item() == pytest.approx(0.0589, rel=0.03)  # sqrt(2 / 576)


def test_dense_layer_uniform_one_over_sqrt_classes(v2_s):
    weight = v2_s.classifier.weight  # 1000 classes: bound 1 / sqrt(1000) = 0.031623
    assert weight.abs().max().item() <= 0.031623
    assert weight.abs().max().item() > 0.0316
    assert weight.std().item() == pytest.approx(0.018257, rel=0.02)  # bound / sqrt(3)
    assert v2_s.classifier.bias.abs().sum() == 0
