"""Architectures as data: the official block-string format and every model of the paper.

One stage of a network is one short string, exactly as in the official TensorFlow code
(google/automl, ``efficientnetv2/effnetv2_configs.py``), so a config reads like the paper's
Table 4::

  r2_k3_s1_e1_i24_o24_c1       2 Fused-MBConv layers, 3x3, stride 1, expansion 1, 24 -> 24 channels
  r6_k3_s2_e4_i64_o128_se0.25  6 MBConv layers, 3x3, stride 2, expansion 4, 64 -> 128, SE ratio 0.25

Tokens: ``r`` repeats, ``k`` kernel, ``s`` stride of the stage's first layer (the V1 form ``s22`` is
accepted), ``e`` expansion ratio, ``i``/``o`` input/output channels before width scaling, ``se`` SE
ratio (absent = no SE), ``c`` conv type (0 = MBConv, 1 = Fused-MBConv; absent = 0).

Width and depth multipliers are applied with the official rounding rules
(docs/paper.md#architectures-and-block-strings-table-4): ``round_filters`` rounds
``channels * width`` to a multiple of 8; ``round_repeats`` is ``ceil(depth * r)``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from dataclasses import dataclass, field

__all__ = [
    "UnknownModelError",
    "StageArgs",
    "ModelConfig",
    "decode_stage",
    "encode_stage",
    "decode_arch",
    "encode_arch",
    "round_filters",
    "round_repeats",
    "MODEL_CONFIGS",
    "get_config",
    "list_models",
    "normalize_name",
]


class UnknownModelError(KeyError, ValueError):
    """An unknown model name; the message lists the close matches."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


@dataclass(frozen=True)
class StageArgs:
    """One stage: ``repeats`` identical blocks, the first with ``stride`` and ``in_channels``."""

    repeats: int
    kernel: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int
    se_ratio: float | None = None
    fused: bool = False

    @property
    def operator(self) -> str:
        return "Fused-MBConv" if self.fused else "MBConv"


_TOKEN = re.compile(r"^(se|r|k|s|e|i|o|c)(\d+(?:\.\d+)?)$")


def decode_stage(text: str) -> StageArgs:
    """Decode one official block string such as ``r4_k3_s2_e4_i24_o48_c1``.

    Raises ValueError naming the offending token and the whole string.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty block string {text!r}; expected e.g. 'r2_k3_s1_e1_i24_o24_c1'")
    values: dict[str, str] = {}
    for token in text.strip().split("_"):
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(
                f"unknown token {token!r} in block string {text!r}; "
                "known tokens are r<repeats> k<kernel> s<stride> e<expand> i<in> o<out> "
                "se<ratio> c<0|1>"
            )
        key, value = match.groups()
        if key in values:
            raise ValueError(f"token {key!r} appears twice in block string {text!r}")
        values[key] = value
    missing = [k for k in ("r", "k", "s", "e", "i", "o") if k not in values]
    if missing:
        raise ValueError(f"block string {text!r} lacks the token(s) {', '.join(missing)}")

    def integer(key: str) -> int:
        raw = values[key]
        if "." in raw:
            raise ValueError(f"token {key}{raw!r} in block string {text!r} must be an integer")
        return int(raw)

    stride_text = values["s"]
    if len(stride_text) == 2 and stride_text[0] == stride_text[1]:  # V1 form: s11, s22
        stride_text = stride_text[0]
    if stride_text not in ("1", "2"):
        raise ValueError(f"token 's{values['s']}' in block string {text!r}: stride must be "
                         "s1, s2, s11 or s22")
    conv_type = values.get("c", "0")
    if conv_type not in ("0", "1"):
        raise ValueError(f"token 'c{conv_type}' in block string {text!r}: conv type "
                         "must be c0 or c1")
    se_ratio = float(values["se"]) if "se" in values else None
    if se_ratio is not None and not 0.0 < se_ratio <= 1.0:
        raise ValueError(f"token 'se{values['se']}' in block string {text!r}: SE ratio "
                         "must be in (0, 1]")
    stage = StageArgs(
        repeats=integer("r"),
        kernel=integer("k"),
        stride=int(stride_text),
        expand_ratio=integer("e"),
        in_channels=integer("i"),
        out_channels=integer("o"),
        se_ratio=se_ratio,
        fused=conv_type == "1",
    )
    for name in ("repeats", "kernel", "stride", "expand_ratio", "in_channels", "out_channels"):
        if getattr(stage, name) < 1:
            raise ValueError(f"{name} must be >= 1 in block string {text!r}")
    if stage.kernel % 2 == 0:
        raise ValueError(f"kernel k{stage.kernel} in block string {text!r} must be odd")
    return stage


def encode_stage(stage: StageArgs) -> str:
    """The canonical block string of a stage (inverse of :func:`decode_stage`)."""
    parts = [
        f"r{stage.repeats}",
        f"k{stage.kernel}",
        f"s{stage.stride}",
        f"e{stage.expand_ratio}",
        f"i{stage.in_channels}",
        f"o{stage.out_channels}",
    ]
    if stage.se_ratio is not None:
        parts.append(f"se{stage.se_ratio:g}")
    if stage.fused:
        parts.append("c1")
    return "_".join(parts)


def decode_arch(text: str | list[str] | tuple[str, ...]) -> tuple[StageArgs, ...]:
    """Decode a whole architecture: block strings separated by spaces, or a list of them."""
    strings = text.split() if isinstance(text, str) else list(text)
    if not strings:
        raise ValueError("an architecture needs at least one block string")
    stages = tuple(decode_stage(s) for s in strings)
    for (before, after), (text_before, text_after) in zip(zip(stages, stages[1:]),
                                                          zip(strings, strings[1:])):
        if after.in_channels != before.out_channels:
            raise ValueError(f"block strings do not chain: {text_before!r} ends with "
                             f"o{before.out_channels} but the next, {text_after!r}, starts with "
                             f"i{after.in_channels}; make them equal")
    return stages


def encode_arch(stages: tuple[StageArgs, ...] | list[StageArgs]) -> str:
    return " ".join(encode_stage(s) for s in stages)


def round_filters(channels: float, width_mult: float, divisor: int = 8,
                  guard_90: bool = False) -> int:
    """Scale a channel count by ``width_mult`` and round to a multiple of ``divisor``.

    Official rule (docs/paper.md#architectures-and-block-strings-table-4):
    ``max(divisor, int(c * w + divisor / 2) // divisor * divisor)``.
    ``guard_90=True`` adds the EfficientNet-V1 / torchvision rule "never drop below 90% of
    ``c * w``" (bump by one divisor if so); the V1 baselines use it so that our parameter counts
    equal torchvision's, the V2 models follow the official V2 code, which has no such guard.
    """
    scaled = channels * width_mult
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if guard_90 and rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth_mult: float) -> int:
    """Scale a stage's depth: ``ceil(depth_mult * repeats)`` (official code)."""
    return int(math.ceil(depth_mult * repeats))


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build one network (see :mod:`effnetv2_mini.paper.model`).

    ``blocks`` holds the unscaled block strings; ``stages()`` applies the
    width and depth multipliers.
    """

    name: str
    blocks: tuple[str, ...]
    # "v2", "v1" (the paper's baseline) or "demo" (small CPU models, not from the paper)
    family: str
    width_mult: float = 1.0
    depth_mult: float = 1.0
    train_size: int = 224
    eval_size: int = 224
    dropout: float = 0.2
    # 1 - survival probability of the last block (docs/paper.md#blocks-figure-2)
    drop_path_rate: float = 0.2
    head_channels: int = 1280  # before width rounding
    num_classes: int = 1000
    guard_90: bool = False  # see round_filters
    bn_eps: float = 1e-3
    # PyTorch convention; the paper's TF momentum 0.99 (the official code: 0.9)
    bn_momentum: float = 0.01
    # paper Table 3: stages 1..N use Fused-MBConv (without SE) instead of MBConv
    fused_stages: int = 0
    description: str = ""
    source: str = field(default="", compare=False)

    def stages(self) -> tuple[StageArgs, ...]:
        """The block strings with width and depth scaling applied (and ``fused_stages``
        turned into Fused-MBConv)."""
        decoded = decode_arch(self.blocks)
        if not 0 <= self.fused_stages <= len(decoded):
            raise ValueError(f"fused_stages must be in 0..{len(decoded)} for {self.name}, got "
                             f"{self.fused_stages}")
        scaled = []
        for index, stage in enumerate(decoded):
            scaled.append(
                dataclasses.replace(
                    stage,
                    repeats=round_repeats(stage.repeats, self.depth_mult),
                    in_channels=self.round(stage.in_channels),
                    out_channels=self.round(stage.out_channels),
                    fused=stage.fused or index < self.fused_stages,
                    # Table 3's fused stages drop SE, as V2's own Fused-MBConv stages do: this
                    # reproduces the paper's parameter counts for stages 1-5 and 1-7 to 0.1M
                    # (1-3: 20.9M vs 20.0M).
                    se_ratio=None if index < self.fused_stages else stage.se_ratio,
                )
            )
        return tuple(scaled)

    def round(self, channels: int) -> int:
        return round_filters(channels, self.width_mult, guard_90=self.guard_90)

    @property
    def stem_channels(self) -> int:
        return self.round(decode_stage(self.blocks[0]).in_channels)

    @property
    def head_width(self) -> int:
        return self.round(self.head_channels)

    def block_strings(self) -> str:
        return encode_arch(decode_arch(self.blocks))


# --------------------------------------------------------------------------------------------------
# The paper's architectures (official effnetv2_configs.py;
# docs/paper.md#architectures-and-block-strings-table-4)
# --------------------------------------------------------------------------------------------------

V2_S = (
    "r2_k3_s1_e1_i24_o24_c1 r4_k3_s2_e4_i24_o48_c1 r4_k3_s2_e4_i48_o64_c1 "
    "r6_k3_s2_e4_i64_o128_se0.25 r9_k3_s1_e6_i128_o160_se0.25 r15_k3_s2_e6_i160_o256_se0.25"
)
V2_M = (
    "r3_k3_s1_e1_i24_o24_c1 r5_k3_s2_e4_i24_o48_c1 r5_k3_s2_e4_i48_o80_c1 "
    "r7_k3_s2_e4_i80_o160_se0.25 r14_k3_s1_e6_i160_o176_se0.25 r18_k3_s2_e6_i176_o304_se0.25 "
    "r5_k3_s1_e6_i304_o512_se0.25"
)
V2_L = (
    "r4_k3_s1_e1_i32_o32_c1 r7_k3_s2_e4_i32_o64_c1 r7_k3_s2_e4_i64_o96_c1 "
    "r10_k3_s2_e4_i96_o192_se0.25 r19_k3_s1_e6_i192_o224_se0.25 r25_k3_s2_e6_i224_o384_se0.25 "
    "r7_k3_s1_e6_i384_o640_se0.25"
)
V2_XL = (
    "r4_k3_s1_e1_i32_o32_c1 r8_k3_s2_e4_i32_o64_c1 r8_k3_s2_e4_i64_o96_c1 "
    "r16_k3_s2_e4_i96_o192_se0.25 r24_k3_s1_e6_i192_o256_se0.25 r32_k3_s2_e6_i256_o512_se0.25 "
    "r8_k3_s1_e6_i512_o640_se0.25"
)
V2_BASE = (
    "r1_k3_s1_e1_i32_o16_c1 r2_k3_s2_e4_i16_o32_c1 r2_k3_s2_e4_i32_o48_c1 "
    "r3_k3_s2_e4_i48_o96_se0.25 r5_k3_s1_e6_i96_o112_se0.25 r8_k3_s2_e6_i112_o192_se0.25"
)
# EfficientNet (V1) B0, the paper's baseline, from the official efficientnet code (MBConv only).
V1_BASE = (
    "r1_k3_s1_e1_i32_o16_se0.25 r2_k3_s2_e6_i16_o24_se0.25 r2_k5_s2_e6_i24_o40_se0.25 "
    "r3_k3_s2_e6_i40_o80_se0.25 r3_k5_s1_e6_i80_o112_se0.25 r4_k5_s2_e6_i112_o192_se0.25 "
    "r1_k3_s1_e6_i192_o320_se0.25"
)
# Small models for CPU demos and tests. NOT from the paper: the names start with "demo_".
DEMO_V2 = ("r1_k3_s1_e1_i16_o16_c1 r1_k3_s2_e4_i16_o24_c1 r2_k3_s2_e4_i24_o32_se0.25 "
           "r2_k3_s2_e4_i32_o48_se0.25")
DEMO_V1 = ("r1_k3_s1_e1_i16_o16_se0.25 r1_k3_s2_e4_i16_o24_se0.25 r2_k5_s2_e4_i24_o32_se0.25 "
           "r2_k3_s2_e4_i32_o48_se0.25")


def _split(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _paper_models() -> dict[str, ModelConfig]:
    configs: dict[str, ModelConfig] = {}
    v2_source = "official effnetv2_configs.py; torchvision efficientnet_v2_*"
    for name, blocks, train, evaluate, dropout in [
        ("efficientnetv2_s", V2_S, 300, 384, 0.2),
        ("efficientnetv2_m", V2_M, 384, 480, 0.3),
        ("efficientnetv2_l", V2_L, 384, 480, 0.4),
        ("efficientnetv2_xl", V2_XL, 384, 512, 0.4),
    ]:
        configs[name] = ModelConfig(
            name=name, blocks=_split(blocks), family="v2", train_size=train, eval_size=evaluate,
            dropout=dropout,
            description=f"EfficientNetV2-{name.rsplit('_', 1)[1].upper()} (paper Table 4)",
            source=v2_source,
        )
    for tag, (width, depth, train, evaluate, dropout) in {
        "b0": (1.0, 1.0, 192, 224, 0.2),
        "b1": (1.0, 1.1, 192, 240, 0.2),
        "b2": (1.1, 1.2, 208, 260, 0.3),
        "b3": (1.2, 1.4, 240, 300, 0.3),
    }.items():
        name = f"efficientnetv2_{tag}"
        configs[name] = ModelConfig(
            name=name, blocks=_split(V2_BASE), family="v2", width_mult=width, depth_mult=depth,
            train_size=train, eval_size=evaluate, dropout=dropout,
            description=f"EfficientNetV2-{tag.upper()} (official code, scaled V2 base)",
            source=v2_source,
        )
    for tag, (width, depth, size, dropout) in {
        "b0": (1.0, 1.0, 224, 0.2),
        "b1": (1.0, 1.1, 240, 0.2),
        "b2": (1.1, 1.2, 260, 0.3),
        "b3": (1.2, 1.4, 300, 0.3),
        "b4": (1.4, 1.8, 380, 0.4),
        "b5": (1.6, 2.2, 456, 0.4),
        "b6": (1.8, 2.6, 528, 0.5),
        "b7": (2.0, 3.1, 600, 0.5),
    }.items():
        name = f"efficientnet_{tag}"
        configs[name] = ModelConfig(
            name=name, blocks=_split(V1_BASE), family="v1", width_mult=width, depth_mult=depth,
            train_size=size, eval_size=size, dropout=dropout, guard_90=True,
            description=f"EfficientNet-{tag.upper()} (V1 baseline, compound scaling)",
            source="official efficientnet code; torchvision efficientnet_b*",
        )
    for name, blocks, description in [
        ("demo_v2_tiny", DEMO_V2, "tiny V2-style model (fused early stages) for CPU demos; "
                                  "not a paper model"),
        ("demo_v1_tiny", DEMO_V1, "tiny MBConv-only model for CPU demos; not a paper model"),
    ]:
        configs[name] = ModelConfig(
            name=name, blocks=_split(blocks), family="demo", train_size=64, eval_size=64,
            dropout=0.1, drop_path_rate=0.0, head_channels=256, num_classes=10, bn_momentum=0.1,
            description=description, source="this project",
        )
    return configs


MODEL_CONFIGS: dict[str, ModelConfig] = _paper_models()


def normalize_name(name: str) -> str:
    """Accept common spellings: ``EfficientNetV2-S``, ``efficientnet_v2_s``, ``efficientnet-b0``."""
    key = name.strip().lower().replace("-", "_")
    key = key.replace("efficientnet_v2", "efficientnetv2")
    return key


def get_config(name: str) -> ModelConfig:
    """The registered config of ``name``; an unknown name raises KeyError listing close matches."""
    key = normalize_name(name)
    if key not in MODEL_CONFIGS:
        close = difflib.get_close_matches(key, MODEL_CONFIGS, n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"unknown model {name!r}.{hint} Known models: "
                                f"{', '.join(list_models())}")
    return MODEL_CONFIGS[key]


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered models, optionally of one family ("v2", "v1", "demo")."""
    return [name for name, cfg in MODEL_CONFIGS.items() if family is None or cfg.family == family]
