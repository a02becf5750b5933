"""The blocks of paper Fig. 2: shapes, residuals, SE width, stochastic depth."""

import torch
from torch import nn

from effnetv2_mini.paper.blocks import ConvBNAct, DropPath, FusedMBConv, MBConv, SqueezeExcite


def _convs(module):
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def test_squeeze_width_comes_from_block_input_not_expanded_width():
    block = MBConv(64, 128, kernel=3, stride=2, expand_ratio=4, se_ratio=0.25)
    assert block.se.reduce.out_channels == 16  # 64 * 0.25, not 256 * 0.25
    assert block.se.reduce.in_channels == 256 and block.se.reduce.bias is not None


def test_mbconv_layers_and_shapes():
    block = MBConv(32, 32, kernel=5, stride=1, expand_ratio=6, se_ratio=0.25).eval()
    kinds = [(c.kernel_size, c.groups) for c in _convs(block)]
    assert kinds == [((1, 1), 1), ((5, 5), 192), ((1, 1), 1), ((1, 1), 1), ((1, 1), 1)]
    assert block.has_residual
    x = torch.randn(2, 32, 16, 16)
    assert block(x).shape == x.shape


def test_mbconv_without_expansion_has_no_expand_conv():
    block = MBConv(32, 16, kernel=3, stride=1, expand_ratio=1, se_ratio=0.25)
    assert block.expand is None and not block.has_residual


def test_project_has_no_activation():
    block = MBConv(16, 24, kernel=3, stride=2, expand_ratio=4, se_ratio=None)
    assert isinstance(block.project.act, nn.Identity) and isinstance(block.depthwise.act, nn.SiLU)


def test_fused_mbconv_expand_one_is_a_single_conv():
    block = FusedMBConv(24, 24, kernel=3, stride=1, expand_ratio=1, se_ratio=None)
    convs = _convs(block)
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and block.has_residual
    assert isinstance(block.fused.act, nn.SiLU)


def test_fused_mbconv_expand_one_puts_its_se_on_the_input_as_the_official_block():
    """Official FusedMBConvBlock: SE acts on the expansion output, which for e == 1 is the block input (24
    channels here), then the single kxk conv (24 -> 32, stride 2) follows."""
    block = FusedMBConv(24, 32, kernel=3, stride=2, expand_ratio=1, se_ratio=0.25).eval()
    assert (block.se.reduce.in_channels, block.se.reduce.out_channels) == (24, 6)  # int(24 * 0.25)
    x = torch.randn(2, 24, 16, 16)
    assert torch.equal(block(x), block.fused(block.se(x))) and block(x).shape == (2, 32, 8, 8)


def test_fused_mbconv_with_expansion_projects_back():
    block = FusedMBConv(24, 48, kernel=3, stride=2, expand_ratio=4, se_ratio=None).eval()
    convs = _convs(block)
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (24, 96, (3, 3), (2, 2)),
        (96, 48, (1, 1), (1, 1)),
    ]
    assert not block.has_residual
    assert block(torch.randn(1, 24, 32, 32)).shape == (1, 48, 16, 16)


def test_residual_only_for_stride_one_and_equal_channels():
    assert not MBConv(32, 32, 3, 2, 4, None).has_residual
    assert not MBConv(32, 48, 3, 1, 4, None).has_residual


def test_se_rescales_channels_between_zero_and_one():
    se = SqueezeExcite(8, 2)
    x = torch.rand(3, 8, 5, 5) + 0.1
    ratio = se(x) / x
    assert torch.all(ratio > 0) and torch.all(ratio < 1)
    assert torch.allclose(ratio, ratio[..., :1, :1].expand_as(ratio))  # one scale per channel


def test_drop_path_is_identity_in_eval_and_per_sample_in_training():
    torch.manual_seed(0)
    drop = DropPath(0.5)
    x = torch.ones(4000, 3, 2, 2)
    drop.eval()
    assert torch.equal(drop(x), x)
    drop.train()
    y = drop(x)
    per_sample = y.flatten(1)
    assert torch.all((per_sample == 0).all(1) | (per_sample == 2.0).all(1))  # whole samples dropped, rest x2
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert abs(kept - 0.5) < 0.05
    assert abs(y.mean().item() - 1.0) < 0.1  # expectation preserved


def test_drop_path_rejects_bad_rate():
    try:
        DropPath(1.0)
    except ValueError as error:
        assert "[0, 1)" in str(error)
    else:
        raise AssertionError("rate 1.0 must be rejected")


def test_conv_bn_act_uses_paper_bn_settings():
    layer = ConvBNAct(3, 8, 3, stride=2)
    assert layer.bn.eps == 1e-3 and layer.bn.momentum == 0.01 and layer.conv.padding == (1, 1)
