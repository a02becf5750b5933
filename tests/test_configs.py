"""Block strings, rounding rules and the model registry (docs/paper.md#architectures-and-block-strings-table-4)."""

import pytest

from effnetv2_mini.paper.configs import (
    MODEL_CONFIGS,
    StageArgs,
    UnknownModelError,
    decode_arch,
    decode_stage,
    encode_arch,
    encode_stage,
    get_config,
    list_models,
    round_filters,
    round_repeats,
)


def test_decode_fused_and_mbconv_stage():
    assert decode_stage("r4_k3_s2_e4_i24_o48_c1") == StageArgs(4, 3, 2, 4, 24, 48, None, True)
    assert decode_stage("r6_k3_s2_e4_i64_o128_se0.25") == StageArgs(6, 3, 2, 4, 64, 128, 0.25, False)


def test_v1_two_digit_stride_is_accepted():
    assert decode_stage("r2_k5_s22_e6_i24_o40_se0.25").stride == 2
    assert decode_stage("r1_k3_s11_e1_i32_o16_se0.25").stride == 1


@pytest.mark.parametrize("name", sorted(MODEL_CONFIGS))
def test_every_registered_architecture_round_trips(name):
    blocks = MODEL_CONFIGS[name].blocks
    stages = decode_arch(blocks)
    assert encode_arch(stages) == " ".join(blocks)  # registry strings are canonical
    assert decode_arch(encode_arch(stages)) == stages


def test_encode_canonical_order():
    stage = StageArgs(9, 3, 1, 6, 128, 160, 0.25, False)
    assert encode_stage(stage) == "r9_k3_s1_e6_i128_o160_se0.25"
    assert encode_stage(StageArgs(2, 3, 1, 1, 24, 24, None, True)) == "r2_k3_s1_e1_i24_o24_c1"


@pytest.mark.parametrize(
    "text, token",
    [
        ("r2_k3_s1_e1_i24_o24_x7", "x7"),
        ("r2_k3_s1_e1_i24_o24_c2", "c2"),
        ("r2_k3_s3x_e1_i24_o24", "s3x"),
        ("r2_k3_s1_e1_i24_o24_se1.5", "se1.5"),
        ("r2_k3_s1_e1_i24_o24_", "''"),
    ],
)
def test_malformed_token_is_named_with_the_string(text, token):
    with pytest.raises(ValueError) as error:
        decode_stage(text)
    assert token in str(error.value)
    assert text in str(error.value)


def test_missing_tokens_are_listed():
    with pytest.raises(ValueError, match="lacks the token.*i, o"):
        decode_stage("r2_k3_s1_e1")


def test_even_kernel_and_duplicate_tokens_are_rejected():
    with pytest.raises(ValueError, match="odd"):
        decode_stage("r1_k4_s1_e1_i8_o8")
    with pytest.raises(ValueError, match="twice"):
        decode_stage("r1_r2_k3_s1_e1_i8_o8")


def test_round_filters_official_and_torchvision_rules():
    assert round_filters(32, 1.1) == 32 and round_filters(112, 1.1) == 120
    # 16 * 1.2 = 19.2 rounds down to 16, below 90% of 19.2: only the V1/torchvision rule bumps it to 24.
    assert round_filters(16, 1.2) == 16
    assert round_filters(16, 1.2, guard_90=True) == 24
    assert round_filters(3, 0.5) == 8  # never below the divisor


def test_round_repeats_is_ceiling():
    assert round_repeats(3, 1.4) == 5 and round_repeats(4, 3.1) == 13 and round_repeats(2, 1.0) == 2


def test_registry_has_every_paper_model():
    assert set(list_models("v2")) == {f"efficientnetv2_{t}" for t in ("s", "m", "l", "xl", "b0", "b1", "b2", "b3")}
    assert set(list_models("v1")) == {f"efficientnet_b{i}" for i in range(8)}
    assert all(name.startswith("demo_") for name in list_models("demo"))
    assert len(list_models("demo")) >= 2


def test_names_accept_common_spellings():
    assert get_config("EfficientNetV2-S").name == "efficientnetv2_s"
    assert get_config("efficientnet_v2_m").name == "efficientnetv2_m"
    assert get_config("efficientnet-b3").name == "efficientnet_b3"


def test_unknown_model_lists_close_matches():
    with pytest.raises(UnknownModelError) as error:
        get_config("efficientnetv2_ss")
    message = str(error.value)
    assert "efficientnetv2_s" in message and "Did you mean" in message
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_v2_b_models_scale_the_base():
    b3 = get_config("efficientnetv2_b3")
    stages = b3.stages()
    assert [s.repeats for s in stages] == [2, 3, 3, 5, 7, 12]  # ceil(1.4 * r)
    assert b3.head_width == 1536 and b3.stem_channels == 40
