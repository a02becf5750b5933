"""Load torchvision's EfficientNet / EfficientNetV2 weights into our modules (nanoGPT-style).

Every tensor of torchvision's state dict is mapped by name onto exactly one tensor of ours, and every
shape is asserted. If the mapping is complete and the eval-mode logits agree (see the tests), the
architecture is right: this is the proof, not a convenience.

Name mapping (torchvision -> ours)::

    features.0.{0,1}                     -> stem.{conv,bn}
    features.<s+1>.<b>.block.<k>         -> stages.<s>.<b>.{expand, depthwise, se, project | fused, project}
        SqueezeExcitation fc1 / fc2      -> se.reduce / se.expand
    features.<last>.{0,1}                -> head.{conv,bn}
    classifier.1                         -> classifier
"""

from __future__ import annotations

import urllib.error

import torch
from torch import nn

from .blocks import ConvBNAct, FusedMBConv, MBConv
from .configs import get_config
from .model import EfficientNet, build_model

__all__ = ["TORCHVISION_NAMES", "torchvision_key_map", "from_torchvision", "load_torchvision_pretrained"]

# Our name -> torchvision's builder name.
TORCHVISION_NAMES = {
    "efficientnetv2_s": "efficientnet_v2_s",
    "efficientnetv2_m": "efficientnet_v2_m",
    "efficientnetv2_l": "efficientnet_v2_l",
    **{f"efficientnet_b{i}": f"efficientnet_b{i}" for i in range(8)},
}

_BN_TENSORS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _conv_bn_pairs(ours: str, theirs: str):
    yield f"{ours}.conv.weight", f"{theirs}.0.weight"
    for tensor in _BN_TENSORS:
        yield f"{ours}.bn.{tensor}", f"{theirs}.1.{tensor}"


def torchvision_key_map(model: EfficientNet) -> dict[str, str]:
    """``{our state-dict key: torchvision state-dict key}`` for every tensor of ``model``."""
    pairs = list(_conv_bn_pairs("stem", "features.0"))
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            ours, theirs = f"stages.{s}.{b}", f"features.{s + 1}.{b}.block"
            parts: list[tuple[str, ConvBNAct | nn.Module | None]]
            if isinstance(block, MBConv):
                parts = [("expand", block.expand), ("depthwise", block.depthwise), ("se", block.se),
                         ("project", block.project)]
            elif isinstance(block, FusedMBConv):
                parts = [("fused", block.fused), ("se", block.se), ("project", block.project)]
            else:  # pragma: no cover - the model holds only these two block types
                raise TypeError(f"unexpected block {type(block).__name__} at {ours}")
            index = 0
            for name, module in parts:
                if module is None:
                    continue
                if name == "se":
                    for tensor in ("weight", "bias"):
                        pairs.append((f"{ours}.se.reduce.{tensor}", f"{theirs}.{index}.fc1.{tensor}"))
                        pairs.append((f"{ours}.se.expand.{tensor}", f"{theirs}.{index}.fc2.{tensor}"))
                else:
                    pairs.extend(_conv_bn_pairs(f"{ours}.{name}", f"{theirs}.{index}"))
                index += 1
    pairs.extend(_conv_bn_pairs("head", f"features.{len(model.stages) + 1}"))
    pairs += [("classifier.weight", "classifier.1.weight"), ("classifier.bias", "classifier.1.bias")]
    return dict(pairs)


def _check_mapping(model: EfficientNet, their_state: dict[str, torch.Tensor]) -> list[str]:
    """Problems that prevent a one-to-one, shape-exact mapping (empty list = loadable)."""
    key_map = torchvision_key_map(model)
    our_state = model.state_dict()
    problems = [f"our tensor {k} has no torchvision counterpart" for k in our_state if k not in key_map]
    for ours, theirs in key_map.items():
        if theirs not in their_state:
            problems.append(f"torchvision tensor {theirs} (for our {ours}) is missing")
        elif their_state[theirs].shape != our_state[ours].shape:
            problems.append(
                f"shape of {ours} {tuple(our_state[ours].shape)} != torchvision {theirs} "
                f"{tuple(their_state[theirs].shape)}"
            )
    unused = sorted(set(their_state) - set(key_map.values()))
    problems += [f"torchvision tensor {k} is not used" for k in unused]
    return problems


def _first(model: nn.Module, kind: type) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, kind))


def from_torchvision(tv_model: nn.Module | str, name: str | None = None, **overrides) -> EfficientNet:
    """Our model with the weights (and BN statistics) of a torchvision EfficientNet(V2).

    ``tv_model`` may also be a model name (``"efficientnetv2_s"`` or ``"efficientnet_v2_s"``): torchvision's
    ImageNet weights are then downloaded, see :func:`load_torchvision_pretrained`.

    ``name`` (ours, e.g. ``efficientnetv2_s``) may be omitted: the architecture is then found by trying
    every model torchvision also has and keeping the one whose tensors map one-to-one with equal shapes.
    BatchNorm epsilon and the head dropout are taken from the torchvision model (its B0..B4 use
    eps 1e-5; the paper's value is 1e-3). ``overrides`` go to :func:`build_model` (e.g. ``drop_path_rate``).
    """
    if isinstance(tv_model, str):
        return load_torchvision_pretrained(tv_model)
    their_state = tv_model.state_dict()
    bn = _first(tv_model, nn.BatchNorm2d)
    classifier = _first(tv_model.classifier, nn.Linear)
    dropout = _first(tv_model.classifier, nn.Dropout).p
    overrides = dict(
        dict(num_classes=classifier.out_features, bn_eps=bn.eps, bn_momentum=bn.momentum, dropout=dropout),
        **overrides,
    )

    candidates = [name] if name is not None else list(TORCHVISION_NAMES)
    report = {}
    for candidate in candidates:
        get_config(candidate)  # clear error for an unknown name
        with torch.device("meta"):
            skeleton = build_model(candidate, **overrides)
        problems = _check_mapping(skeleton, their_state)
        if not problems:
            model = build_model(candidate, **overrides)
            key_map = torchvision_key_map(model)
            model.load_state_dict({ours: their_state[theirs] for ours, theirs in key_map.items()}, strict=True)
            return model
        report[candidate] = problems
    if name is not None:
        details = "\n  ".join(report[name][:10])
        raise ValueError(f"torchvision model does not map onto {name}:\n  {details}")
    raise ValueError(
        "the torchvision model matches none of " + ", ".join(candidates) + "; first differences: "
        + "; ".join(f"{k}: {v[0]}" for k, v in report.items())
    )


def load_torchvision_pretrained(name: str, weights: str = "DEFAULT", progress: bool = True) -> EfficientNet:
    """Download torchvision's ImageNet weights for ``name`` (ours or torchvision's spelling) and map them.

    Offline, this fails with a message that names the file and where to put it.
    """
    import torchvision

    ours = get_config(name).name
    if ours not in TORCHVISION_NAMES:
        raise ValueError(
            f"torchvision has no weights for {ours}; models with weights: {', '.join(TORCHVISION_NAMES)}"
        )
    tv_name = TORCHVISION_NAMES[ours]
    weight_enum = torchvision.models.get_model_weights(tv_name)
    chosen = getattr(weight_enum, weights) if isinstance(weights, str) else weights
    try:
        tv_model = torchvision.models.get_model(tv_name, weights=chosen, progress=progress)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        filename = chosen.url.rsplit("/", 1)[-1]
        hub_dir = torch.hub.get_dir()
        raise RuntimeError(
            f"could not download torchvision weights {chosen} for {ours} from {chosen.url} ({error}). "
            f"If this machine is offline, download that file elsewhere and copy it to "
            f"{hub_dir}/checkpoints/{filename} (set TORCH_HOME to move that folder)."
        ) from error
    return from_torchvision(tv_model, ours)
