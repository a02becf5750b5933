"""Whole models: parameter counts and FLOPs against the published numbers, overrides, stage tables."""

import pytest
import torch
import torchvision

from effnetv2_mini import build_model, get_config, list_models
from effnetv2_mini.compat import TORCHVISION_NAMES
from effnetv2_mini.measure import count_macs, count_params
from effnetv2_mini.paper.blocks import FusedMBConv, MBConv


def meta_model(name, **overrides):
    with torch.device("meta"):
        return build_model(name, **overrides)


# torchvision's published parameter counts (weight metadata), 1000 classes.
TORCHVISION_PARAMS = {
    "efficientnetv2_s": 21_458_488,
    "efficientnetv2_m": 54_139_356,
    "efficientnetv2_l": 118_515_272,
    "efficientnet_b0": 5_288_548,
    "efficientnet_b1": 7_794_184,
    "efficientnet_b2": 9_109_994,
    "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616,
    "efficientnet_b5": 30_389_784,
    "efficientnet_b6": 43_040_704,
    "efficientnet_b7": 66_347_960,
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_PARAMS))
def test_param_count_equals_torchvision_exactly(name):
    ours = count_params(meta_model(name))
    assert ours == TORCHVISION_PARAMS[name]
    with torch.device("meta"):
        theirs = torchvision.models.get_model(TORCHVISION_NAMES[name])
    assert ours == count_params(theirs)


def test_v2_xl_is_about_208m():
    assert abs(count_params(meta_model("efficientnetv2_xl")) - 208e6) / 208e6 < 0.01


@pytest.mark.parametrize(
    "name, params_m", [("efficientnetv2_b0", 7.1), ("efficientnetv2_b1", 8.1), ("efficientnetv2_b2", 10.1),
                       ("efficientnetv2_b3", 14.4)]
)
def test_v2_b_models_match_official_readme(name, params_m):
    assert abs(count_params(meta_model(name)) / 1e6 - params_m) < 0.06  # the README rounds to 0.1M


@pytest.mark.parametrize(
    "name, size, macs_b",
    [("efficientnetv2_s", 384, 8.4), ("efficientnetv2_m", 480, 24.7), ("efficientnetv2_l", 480, 56.3),
     ("efficientnetv2_b0", 224, 0.72)],
)
def test_flops_within_5_percent_of_official(name, size, macs_b):
    macs = count_macs(meta_model(name), size) / 1e9
    assert abs(macs - macs_b) / macs_b < 0.05, macs


def test_count_macs_of_a_single_conv():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.Flatten(), torch.nn.Linear(8 * 16, 5))
    assert count_macs(conv, 4) == 4 * 4 * 8 * 3 * 9 + 8 * 16 * 5


@pytest.mark.parametrize("name", list_models("demo"))
def test_demo_models_run_forward_and_backward(name):
    torch.manual_seed(0)
    model = build_model(name)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_stage_types_follow_the_config():
    model = meta_model("efficientnetv2_s")
    kinds = [type(stage[0]) for stage in model.stages]
    assert kinds == [FusedMBConv] * 3 + [MBConv] * 3
    assert [len(s) for s in model.stages] == [2, 4, 4, 6, 9, 15]
    v1 = meta_model("efficientnet_b4")
    assert all(isinstance(b, MBConv) for s in v1.stages for b in s)


def test_drop_path_rates_grow_linearly_to_the_configured_rate():
    model = meta_model("efficientnetv2_s")
    blocks = [b for s in model.stages for b in s]
    rates = [getattr(b.drop_path, "rate", None) for b in blocks]
    expected = [0.2 * i / len(blocks) for i in range(len(blocks))]
    for rate, want, block in zip(rates, expected, blocks):
        if block.has_residual:
            assert rate == pytest.approx(want)


def test_overrides_and_errors():
    model = build_model("demo_v2_tiny", num_classes=7, dropout=0.3, drop_path_rate=0.1, width_mult=2.0)
    assert model.classifier.out_features == 7 and model.dropout.p == 0.3
    assert model.config.stem_channels == 32
    deeper = meta_model("efficientnetv2_s", depth_mult=2.0)
    assert [len(s) for s in deeper.stages] == [4, 8, 8, 12, 18, 30]
    with pytest.raises(TypeError, match="unknown override.*dropuot"):
        build_model("demo_v2_tiny", dropuot=0.1)
    with pytest.raises(KeyError, match="Did you mean"):
        build_model("efficientnet_b8")


def test_build_from_custom_block_strings():
    model = build_model("demo_v2_tiny", blocks="r1_k3_s1_e1_i16_o16_c1 r1_k5_s2_e6_i16_o32_se0.25")
    assert len(model.stages) == 2 and model(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_dropout_can_change_at_run_time():
    model = build_model("demo_v1_tiny")
    model.set_dropout(0.45)
    assert model.dropout.p == 0.45
    with pytest.raises(ValueError):
        model.set_dropout(1.5)


def test_stage_table_reads_like_table_4():
    rows = meta_model("efficientnetv2_s").stage_table(384)
    assert [r["operator"].split(",")[0] for r in rows[1:-1]] == ["Fused-MBConv1"] + ["Fused-MBConv4"] * 2 + [
        "MBConv4"] + ["MBConv6"] * 2
    assert [r["channels"] for r in rows] == [24, 24, 48, 64, 128, 160, 256, 1280]
    assert [r["resolution"] for r in rows] == [192, 192, 96, 48, 24, 24, 12, 12]
    assert get_config("efficientnetv2_s").eval_size == 384


def test_channels_last_gives_the_same_outputs_and_gradients_within_float_tolerance():
    """channels_last is the CPU default (a speed choice): the numbers must not change beyond float rounding."""
    import copy

    torch.manual_seed(0)
    model = build_model("efficientnetv2_b0", num_classes=10).train()
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 64, 64)
    target = torch.tensor([0, 3, 5, 9])
    outputs = []
    for net, images in ((model, x), (other, x.to(memory_format=torch.channels_last))):
        torch.manual_seed(1)  # the same dropout mask
        logits = net(images)
        torch.nn.functional.cross_entropy(logits, target).backward()
        outputs.append((logits.detach(), {n: p.grad for n, p in net.named_parameters()}))
    (a, grads_a), (b, grads_b) = outputs
    torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)  # logits of order 1: a wrong result is off by ~1
    total = torch.cat([g.flatten() for g in grads_a.values()]).norm()
    difference = torch.cat([(g - grads_b[n]).flatten() for n, g in grads_a.items()]).norm()
    assert difference <= 1e-4 * total  # measured 3e-5: float rounding; a wrong layout would be off by order 1
    for name, grad in grads_a.items():  # each gradient that is not analytically zero (a bias followed by BatchNorm)
        if grad.norm() > 1e-6 * total:
            assert (grad - grads_b[name]).norm() <= 1e-3 * grad.norm(), name
