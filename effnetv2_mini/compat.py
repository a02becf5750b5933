"""Load torchvision's EfficientNet / EfficientNetV2 weights into our modules (nanoGPT-style).

Every tensor of torchvision's state dict is mapped by name onto exactly one tensor of ours, and
every shape is asserted. If the mapping is complete and the eval-mode logits agree (see the tests),
the architecture is right: this is the proof, not a convenience.

Name mapping (torchvision -> ours)::

    features.0.{0,1}                     -> stem.{conv,bn}
    features.<s+1>.<b>.block.<k>         -> stages.<s>.<b>.{expand, depthwise, se, project |
                                            fused, project}
        SqueezeExcitation fc1 / fc2      -> se.reduce / se.expand
    features.<last>.{0,1}                -> head.{conv,bn}
    classifier.1                         -> classifier
"""

from __future__ import annotations

import math
import os
import urllib.error
from dataclasses import dataclass, field

import torch
from torch import nn

from .baselines import is_baseline
from .paper.blocks import ConvBNAct, FusedMBConv, MBConv
from .paper.configs import get_config
from .paper.model import EfficientNet, build_model

__all__ = ["TORCHVISION_NAMES", "torchvision_key_map", "from_torchvision",
           "load_torchvision_pretrained", "load_pretrained", "LoadReport", "ArchitectureMismatch"]

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
                        pairs.append((f"{ours}.se.reduce.{tensor}",
                                      f"{theirs}.{index}.fc1.{tensor}"))
                        pairs.append((f"{ours}.se.expand.{tensor}",
                                      f"{theirs}.{index}.fc2.{tensor}"))
                else:
                    pairs.extend(_conv_bn_pairs(f"{ours}.{name}", f"{theirs}.{index}"))
                index += 1
    pairs.extend(_conv_bn_pairs("head", f"features.{len(model.stages) + 1}"))
    pairs += [("classifier.weight", "classifier.1.weight"),
              ("classifier.bias", "classifier.1.bias")]
    return dict(pairs)


def _check_mapping(model: EfficientNet, their_state: dict[str, torch.Tensor]) -> list[str]:
    """Problems that prevent a one-to-one, shape-exact mapping (empty list = loadable)."""
    key_map = torchvision_key_map(model)
    our_state = model.state_dict()
    problems = [f"our tensor {k} has no torchvision counterpart" for k in our_state
                if k not in key_map]
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


def from_torchvision(tv_model: nn.Module | str, name: str | None = None,
                     **overrides) -> EfficientNet:
    """Our model with the weights (and BN statistics) of a torchvision EfficientNet(V2).

    ``tv_model`` may also be a model name (``"efficientnetv2_s"`` or ``"efficientnet_v2_s"``):
    torchvision's ImageNet weights are then downloaded, see :func:`load_torchvision_pretrained`.

    ``name`` (ours, e.g. ``efficientnetv2_s``) may be omitted: the architecture is then found by
    trying every model torchvision also has and keeping the one whose tensors map one-to-one with
    equal shapes. BatchNorm epsilon and the head dropout are taken from the torchvision model (its
    B0..B4 use eps 1e-5; the paper's value is 1e-3). ``overrides`` go to :func:`build_model`
    (e.g. ``drop_path_rate``).
    """
    if isinstance(tv_model, str):
        return load_torchvision_pretrained(tv_model)
    their_state = tv_model.state_dict()
    bn = _first(tv_model, nn.BatchNorm2d)
    classifier = _first(tv_model.classifier, nn.Linear)
    dropout = _first(tv_model.classifier, nn.Dropout).p
    overrides = dict(
        dict(num_classes=classifier.out_features, bn_eps=bn.eps, bn_momentum=bn.momentum,
             dropout=dropout),
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
            model.load_state_dict({ours: their_state[theirs] for ours, theirs in key_map.items()},
                                  strict=True)
            return model
        report[candidate] = problems
    if name is not None:
        details = "\n  ".join(report[name][:10])
        raise ValueError(f"torchvision model does not map onto {name}:\n  {details}")
    raise ValueError(
        "the torchvision model matches none of " + ", ".join(candidates) + "; first differences: "
        + "; ".join(f"{k}: {v[0]}" for k, v in report.items())
    )


def load_torchvision_pretrained(name: str, weights: str = "DEFAULT",
                                progress: bool = True) -> EfficientNet:
    """Download torchvision's ImageNet weights for ``name`` (ours or
    torchvision's spelling) and map them.

    Offline, this fails with a message that names the file and where to put it.
    """
    import torchvision

    if is_baseline(name):  # effnetv2_mini.baselines: torchvision's ResNets train from scratch here
        raise ValueError(f"{name} is torchvision's ResNet: its ImageNet weights are not mapped "
                         "(init_from='torchvision' is for the EfficientNets "
                         f"{', '.join(TORCHVISION_NAMES)}); train it from scratch")
    ours = get_config(name).name
    if ours not in TORCHVISION_NAMES:
        raise ValueError(
            f"torchvision has no weights for {ours}; models with weights: "
            f"{', '.join(TORCHVISION_NAMES)}"
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
            f"could not download torchvision weights {chosen} for {ours} from "
            f"{chosen.url} ({error}). If this machine is offline, download that file elsewhere "
            f"and copy it to {hub_dir}/checkpoints/{filename} (set TORCH_HOME to move that folder)."
        ) from error
    return from_torchvision(tv_model, ours)


# --------------------------------------------------------------------------------------------------
# Any state dict onto a model, with a report (fine-tuning, paper section 5.3)
# --------------------------------------------------------------------------------------------------


class ArchitectureMismatch(ValueError):
    """A checkpoint whose backbone does not fit the requested model; the message names the layer."""


@dataclass
class LoadReport:
    """What a load did: tensor names ``loaded`` from the source, newly ``initialized`` (e.g. the new
    classifier), and source tensors ``ignored`` (e.g. an EMA counter, an old head). Names are ours
    (torchvision's are mapped first)."""

    source: str
    loaded: list[str] = field(default_factory=list)
    initialized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def names(items):
            return (", ".join(items[:6])
                    + (f", ... ({len(items)} in all)" if len(items) > 6 else "")
                    if items else "none")

        return (f"from {self.source}:\n  loaded      {len(self.loaded)} tensors\n"
                f"  initialized {len(self.initialized)}: {names(self.initialized)}\n"
                f"  ignored     {len(self.ignored)}: {names(self.ignored)}")

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": self.loaded, "initialized": self.initialized,
                "ignored": self.ignored}


def _state_from(source, prefer_ema: bool = False) -> tuple[dict, str]:
    """A flat state dict and a description from: our checkpoint (path or dict; its EMA weights when
    ``prefer_ema`` and it has them), a module, or a state dict."""
    from .engine.checkpoint import load_checkpoint

    if isinstance(source, nn.Module):
        return source.state_dict(), type(source).__name__
    description = "state dict"
    if isinstance(source, (str, os.PathLike)):
        description = str(source)
        source = load_checkpoint(source)
    if isinstance(source, dict) and "model" in source and isinstance(source["model"], dict):
        name = source.get("model_name")
        use_ema = prefer_ema and bool(source.get("ema"))
        description += ((f" (checkpoint of {name}" if name else " (checkpoint")
                        + (", EMA weights)" if use_ema else ")"))
        source = source["ema"] if use_ema else source["model"]
    return dict(source), description


def load_pretrained(model: EfficientNet, source, keep_head: bool = False,
                    prefer_ema: bool = False) -> LoadReport:
    """Load ``source`` (our checkpoint path/dict, a module, a state dict with our or torchvision's
    names; DDP's and EMA's ``module.`` prefixes are stripped) into ``model`` and report what
    happened. ``prefer_ema``: from our checkpoint, take the EMA weights if it kept any (the official
    code fine-tunes from them, ``ft_init_ema``).

    The classifier is re-initialized (a new task) unless ``keep_head`` and its shape matches. A
    backbone tensor whose shape differs, or a backbone tensor the source lacks, raises
    :class:`ArchitectureMismatch` naming it.
    """
    state, description = _state_from(source, prefer_ema)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("features.") for k in state):  # torchvision's names
        reverse = {theirs: ours for ours, theirs in torchvision_key_map(model).items()}
        state = {reverse.get(k, k): v for k, v in state.items()}
    ours = model.state_dict()
    report = LoadReport(source=description)
    to_load = {}
    for key, tensor in state.items():
        if key not in ours:
            report.ignored.append(key)
            continue
        is_head = key.startswith("classifier.")
        if tensor.shape != ours[key].shape:
            if is_head:
                report.ignored.append(key)
                continue
            raise ArchitectureMismatch(
                f"layer {key} differs: {tuple(tensor.shape)} in {description}, "
                f"{tuple(ours[key].shape)} in {model.config.name}. The checkpoint was trained for "
                "another architecture; build the model it was trained as (its name is in the "
                "checkpoint's 'model_name').")
        if is_head and not keep_head:
            report.ignored.append(key)
            continue
        to_load[key] = tensor
    missing = [k for k in ours if k not in to_load and not k.startswith("classifier.")]
    if missing:
        raise ArchitectureMismatch(
            f"layer {missing[0]} of {model.config.name} is not in {description} ({len(missing)} "
            "tensors missing): the checkpoint was trained for another architecture.")
    model.load_state_dict(to_load, strict=False)
    report.loaded = sorted(to_load)
    report.initialized = [k for k in ours if k not in to_load]
    # a fresh head, initialised as the model's own (dense ~ U(+-1/sqrt(classes)))
    with torch.no_grad():
        if "classifier.weight" in report.initialized:
            bound = 1.0 / math.sqrt(model.classifier.out_features)
            model.classifier.weight.uniform_(-bound, bound)
            model.classifier.bias.zero_()
    return report
