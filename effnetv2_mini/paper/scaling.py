"""Model scaling: EfficientNet's compound scaling and EfficientNetV2's rules (paper section 3.3).

V1 (Tan & Le 2019): depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi, with alpha
1.2, beta 1.1, gamma 1.15 (alpha * beta^2 * gamma^2 ~ 2: FLOPs about double per step of phi). The
released B1..B7 use rounded coefficients (``V1_COEFFICIENTS``), which
:func:`compound_table` sets beside the formula.

V2 keeps width/depth scaling but (1) caps the inference image size at 480, because very large images
cost memory and training speed (paper section 3.2, bottleneck 1), and (2) adds layers gradually to
the later stages rather than scaling every stage equally (:func:`depth_table` shows
it for S -> M -> L -> XL).

    from effnetv2_mini.paper.scaling import scale
    from effnetv2_mini.measure import describe
    mine = scale("efficientnetv2_b0", width=1.3, depth=1.6, eval_size=320, name="my_b4ish")
    describe(mine, throughput=True)  # params, FLOPs, images/s on this device
                                     # (measurement, not the paper)
"""

from __future__ import annotations

import dataclasses
import math

from .configs import ModelConfig, decode_arch, get_config, round_repeats

__all__ = ["ALPHA", "BETA", "GAMMA", "V2_MAX_EVAL_SIZE", "V1_COEFFICIENTS", "compound_coefficients",
           "compound_table", "scale", "scale_v2", "depth_table", "v2_cap_example"]

ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
V2_MAX_EVAL_SIZE = 480
# The released EfficientNet-B0..B7 (official efficientnet code): width, depth, resolution, dropout.
V1_COEFFICIENTS = {
    name: (cfg.width_mult, cfg.depth_mult, cfg.eval_size, cfg.dropout)
    for name, cfg in ((f"efficientnet_b{i}", get_config(f"efficientnet_b{i}")) for i in range(8))
}


def compound_coefficients(phi: float, alpha: float = ALPHA, beta: float = BETA,
                          gamma: float = GAMMA, base_resolution: int = 224) -> dict:
    """V1's formula: depth, width and resolution multipliers (and the
    resolution in pixels) for ``phi``."""
    return {"phi": phi, "depth": alpha**phi, "width": beta**phi,
            "resolution": base_resolution * gamma**phi,
            "flops_factor": (alpha * beta**2 * gamma**2) ** phi}


def compound_table(phis=range(8)) -> list[dict]:
    """The formula beside the released B0..B7 coefficients (they were rounded and tuned by hand)."""
    rows = []
    for phi in phis:
        formula = compound_coefficients(phi)
        width, depth, size, _ = V1_COEFFICIENTS[f"efficientnet_b{phi}"]
        rows.append({"model": f"B{phi}", "phi": phi, "formula_width": formula["width"],
                     "released_width": width, "formula_depth": formula["depth"],
                     "released_depth": depth, "formula_resolution": round(formula["resolution"]),
                     "released_resolution": size})
    return rows


def scale(base: str | ModelConfig, width: float = 1.0, depth: float = 1.0,
          train_size: int | None = None, eval_size: int | None = None, dropout: float | None = None,
          name: str | None = None) -> ModelConfig:
    """``base`` with its width and depth multiplied by ``width`` and ``depth`` (channels rounded to
    multiples of 8, repeats rounded up, as the official code does) and, optionally,
    new image sizes and dropout."""
    config = base if isinstance(base, ModelConfig) else get_config(base)
    return dataclasses.replace(
        config,
        name=name or f"{config.name}_w{width:g}_d{depth:g}",
        width_mult=config.width_mult * width,
        depth_mult=config.depth_mult * depth,
        train_size=train_size or config.train_size,
        eval_size=eval_size or config.eval_size,
        dropout=config.dropout if dropout is None else dropout,
        description=f"{config.name} scaled x{width:g} width, x{depth:g} depth",
        source="effnetv2_mini.paper.scaling.scale",
    )


def scale_v2(base: str | ModelConfig, width: float = 1.0, depth: float = 1.0,
             eval_size: int | None = None, train_size: int | None = None,
             max_eval_size: int = V2_MAX_EVAL_SIZE, **options) -> ModelConfig:
    """Like :func:`scale`, with V2's rule that the inference size never
    exceeds ``max_eval_size`` (480).

    Without sizes, the V1 rule would grow the resolution by gamma per step
    of width/depth; V2 caps it."""
    config = base if isinstance(base, ModelConfig) else get_config(base)
    # V1-style growth of resolution, from the FLOPs the width/depth change implies
    if eval_size is None:
        phi = math.log(max(1e-9, depth)) / math.log(ALPHA) if depth != 1 else 0.0
        eval_size = int(round(config.eval_size * GAMMA**phi))
    capped = min(eval_size, max_eval_size)
    train = min(train_size or config.train_size, capped)
    return scale(config, width, depth, train_size=train, eval_size=capped, **options)


def depth_table(names=("efficientnetv2_s", "efficientnetv2_m", "efficientnetv2_l",
                       "efficientnetv2_xl")) -> list[dict]:
    """Layers per stage of each model, to see where V2's larger models add depth
    (mostly the later stages)."""
    per_model = {}
    for name in names:
        config = get_config(name)
        per_model[name] = [round_repeats(s.repeats, config.depth_mult)
                           for s in decode_arch(config.blocks)]
    stages = max(len(r) for r in per_model.values())
    return [{"model": name,
             **{f"stage{i + 1}": repeats[i] if i < len(repeats) else None for i in range(stages)},
             "total": sum(repeats)} for name, repeats in per_model.items()]


def v2_cap_example(model: str = "efficientnetv2_l", width: float = 1.2, depth: float = 2.0) -> str:
    """One line contrasting V1's resolution rule with V2's cap, for a larger ``model``."""
    bigger = scale_v2(model, width=width, depth=depth)
    v1_size = round(get_config(model).eval_size * GAMMA ** (math.log(depth) / math.log(ALPHA)))
    return (f"V1's rule would evaluate a {depth:g}x-deeper {model} at {v1_size}px; V2 caps it: "
            f"eval {bigger.eval_size}px, train {bigger.train_size}px")
