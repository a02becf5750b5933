"""Training-efficiency tools and scaling (paper sections 3.2, 3.3; Tables 2 and 3)."""

import pytest
import torch

from effnetv2_mini import build_model
from effnetv2_mini.engine.devices import OUT_OF_MEMORY
from effnetv2_mini.measure import block_throughput, count_macs, count_params, describe, max_batch_size
from effnetv2_mini.paper.blocks import FusedMBConv, MBConv
from effnetv2_mini.paper.configs import get_config
from effnetv2_mini.paper.scaling import V1_COEFFICIENTS, compound_coefficients, depth_table, scale, scale_v2

TORCHVISION_V1_PARAMS = [5_288_548, 7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704, 66_347_960]


def meta(name, **overrides):
    with torch.device("meta"):
        return build_model(name, **overrides)


def test_table_3_variants_have_the_expected_block_types():
    for fused in (0, 3, 5, 7):
        model = meta("efficientnet_b4", fused_stages=fused)
        kinds = [type(stage[0]) for stage in model.stages]
        assert kinds == [FusedMBConv] * fused + [MBConv] * (7 - fused)
        assert all(block.se is None for stage in model.stages[:fused] for block in stage)
        assert all(isinstance(b, type(stage[0])) for stage in model.stages for b in stage)


def test_table_3_params_grow_monotonically_like_the_paper():
    params = [count_params(meta("efficientnet_b4", fused_stages=n)) / 1e6 for n in (0, 3, 5, 7)]
    assert params == sorted(params)
    # paper: 19.3, 20.0, 43.4, 132.0 (M). Stages 1-5 and 1-7 agree to 0.1M; stages 1-3 come out 20.9M.
    assert params[0] == pytest.approx(19.34, abs=0.01)
    assert params[2] == pytest.approx(43.4, abs=0.15) and params[3] == pytest.approx(132.0, abs=0.15)
    assert params[1] == pytest.approx(20.0, rel=0.05)
    macs = [count_macs(meta("efficientnet_b4", fused_stages=n), 380) for n in (0, 3, 5, 7)]
    assert macs == sorted(macs)


def test_fused_stages_out_of_range_is_refused():
    with pytest.raises(ValueError, match="fused_stages must be in 0..7"):
        build_model("efficientnet_b4", fused_stages=8)


@pytest.mark.parametrize("index", range(8))
def test_scaling_b0_reproduces_torchvision_v1_params(index):
    width, depth, size, dropout = V1_COEFFICIENTS[f"efficientnet_b{index}"]
    config = scale("efficientnet_b0", width, depth, eval_size=size, dropout=dropout)
    with torch.device("meta"):
        assert count_params(build_model(config)) == TORCHVISION_V1_PARAMS[index]


def test_compound_formula_and_v2_rules():
    c = compound_coefficients(1)
    assert (c["depth"], c["width"], c["resolution"]) == pytest.approx((1.2, 1.1, 257.6))
    assert compound_coefficients(3)["flops_factor"] == pytest.approx((1.2 * 1.1**2 * 1.15**2) ** 3)
    big = scale_v2("efficientnetv2_l", width=1.2, depth=2.0)
    assert big.eval_size == 480 and big.train_size <= 480  # V1's rule would ask for more than 480
    assert scale_v2("efficientnetv2_s", eval_size=600).eval_size == 480
    rows = {r["model"]: r for r in depth_table()}
    added = [rows["efficientnetv2_m"][f"stage{i}"] - rows["efficientnetv2_s"][f"stage{i}"] for i in range(1, 7)]
    assert sum(added[3:]) > sum(added[:3])  # M adds its layers mostly to the later stages
    assert rows["efficientnetv2_s"]["stage7"] is None and rows["efficientnetv2_m"]["stage7"] == 5


def test_v2_b_models_are_the_v2_base_scaled():
    base = get_config("efficientnetv2_b0")
    for tag, (w, d) in {"b1": (1.0, 1.1), "b2": (1.1, 1.2), "b3": (1.2, 1.4)}.items():
        ours = scale(base, w, d)
        with torch.device("meta"):
            assert count_params(build_model(ours)) == count_params(build_model(f"efficientnetv2_{tag}"))


def test_describe_a_custom_config():
    info = describe(scale("demo_v2_tiny", width=2.0, depth=2.0), image_size=32, throughput=True, batch_size=2,
                    device="cpu", num_classes=10)
    assert info["params"] > count_params(build_model("demo_v2_tiny")) and info["macs"] > 0
    assert info["train_images_per_sec"] > 0 and info["eval_images_per_sec"] > 0 and info["stem"] == 32


def test_max_batch_search_with_a_synthetic_budget():
    budget = 50_000

    def fits(batch):  # 1,000 bytes per image plus 5,000 of weights
        return 1_000 * batch + 5_000 <= budget

    assert max_batch_size(fits) == (45, 46)

    def oom_above_20(batch):
        if batch > 20:
            raise torch.OutOfMemoryError("CUDA out of memory (synthetic)")
        return True

    assert max_batch_size(oom_above_20) == (20, 21)
    assert max_batch_size(lambda b: True, limit=64) == (64, None)
    assert max_batch_size(lambda b: False) == (0, 1)
    assert torch.OutOfMemoryError in OUT_OF_MEMORY


PEAK_SCRIPT = """
from effnetv2_mini import build_model
from effnetv2_mini.measure import max_batch_size, peak_step_memory
model = build_model("demo_v1_tiny")
peak_step_memory(model, 4, 32)  # first step: one-time allocations
small, large = peak_step_memory(model, 8, 64), peak_step_memory(model, 64, 64)
found, too_big = max_batch_size(lambda b: peak_step_memory(model, b, 64) <= large, limit=256)
print(small, large, found, too_big)
"""


def test_peak_step_memory_grows_with_the_batch_on_cpu():
    """In a fresh process, as notebook 03 measures (a long-lived process that already grew can under-count)."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    small, large, found, too_big = (int(x) for x in result.stdout.split())
    assert large > 3 * small > 0
    assert 32 <= found < too_big <= 128


def test_block_throughput_runs_for_both_block_types():
    stage = get_config("efficientnet_b0").stages()[2]
    for fused in (False, True):
        assert block_throughput(stage, 16, 2, fused=fused, repeats=2) > 0
