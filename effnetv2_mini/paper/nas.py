"""Training-aware neural architecture search (paper section 3.3;
docs/paper.md#training-aware-nas-section-33).

Search space, per stage: operator {MBConv, Fused-MBConv}, number of layers, kernel {3, 5}, expansion
{1, 4, 6}; channel widths and strides come from a backbone (EfficientNet-B4-sized ``b4``, or the
CPU-sized ``cpu``). Every candidate is an ordinary :class:`~effnetv2_mini.paper.configs.ModelConfig`
(block strings, ``build_model``).

Each candidate is trained briefly at reduced size with the ordinary training loop, and scored by

    reward = A * S^w * P^v,   w = -0.07, v = -0.05

with A the accuracy (top-1 in percent at the end of the proxy training), S the training-step time
normalized by a reference model's (the backbone with MBConv everywhere, timed right beside each
candidate so that machine load cancels), P the parameter count.

The search itself (Optuna storage, workers on many machines, resuming, claims so that no two workers
train one candidate) is machinery, not the paper's idea: :mod:`effnetv2_mini.study.nas_driver`.

    effnetv2 nas --space cpu --trials 20 --out runs/nas --epochs 3
    effnetv2 nas-summary --out runs/nas --top 5
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import random
from dataclasses import dataclass

from .configs import ModelConfig, decode_arch, get_config

__all__ = ["SearchSpace", "SPACES", "reward", "candidate_key", "pareto_front", "space_table"]

OPERATORS = ("MBConv", "Fused-MBConv")
KERNELS = (3, 5)
EXPANSIONS = (1, 4, 6)


def reward(accuracy: float, step_time: float, params: float, w: float = -0.07,
           v: float = -0.05) -> float:
    """The paper's reward A * S^w * P^v (S already normalized by the
    reference model's step time)."""
    if accuracy < 0 or step_time <= 0 or params <= 0:
        raise ValueError(f"reward needs accuracy >= 0, step_time > 0, params > 0; got {accuracy}, "
                         f"{step_time}, {params}")
    return accuracy * step_time**w * params**v


@dataclass(frozen=True)
class SearchSpace:
    """Stages of a backbone (channels, strides) with choices of operator,
    layers, kernel and expansion."""

    name: str
    # block strings: channels and strides (their other tokens are replaced)
    backbone: tuple[str, ...]
    layer_choices: tuple[tuple[int, ...], ...]
    base_model: str  # registered model whose head, BN settings and dropout candidates inherit
    reference: tuple[str, ...]  # block strings of the reference model for step-time normalization
    head_channels: int = 1280
    se_ratio: float = 0.25  # for MBConv stages (Fused-MBConv stages go without SE, as in V2)

    def parameters(self) -> dict[str, tuple]:
        """Every choice, by name: ``s<i>_op``, ``s<i>_layers``, ``s<i>_kernel``, ``s<i>_expand``."""
        space = {}
        for i, layers in enumerate(self.layer_choices):
            space.update({f"s{i}_op": OPERATORS, f"s{i}_layers": layers, f"s{i}_kernel": KERNELS,
                          f"s{i}_expand": EXPANSIONS})
        return space

    def sample(self, seed: int) -> dict:
        """A random candidate, deterministic for ``seed`` (plain ``random``; the
        driver uses Optuna's sampler)."""
        rng = random.Random(seed)
        return {name: rng.choice(choices) for name, choices in self.parameters().items()}

    def suggest(self, trial) -> dict:
        return {name: trial.suggest_categorical(name, list(choices))
                for name, choices in self.parameters().items()}

    def blocks(self, choice: dict) -> tuple[str, ...]:
        strings = []
        for i, stage in enumerate(decode_arch(self.backbone)):
            fused = choice[f"s{i}_op"] == "Fused-MBConv"
            text = (f"r{choice[f's{i}_layers']}_k{choice[f's{i}_kernel']}_s{stage.stride}"
                    f"_e{choice[f's{i}_expand']}_i{stage.in_channels}_o{stage.out_channels}")
            strings.append(text + ("_c1" if fused else f"_se{self.se_ratio:g}"))
        return tuple(strings)

    def overrides(self, blocks: tuple[str, ...]) -> dict:
        """``build_model(self.base_model, **overrides)`` builds the candidate."""
        return {"blocks": list(blocks), "width_mult": 1.0, "depth_mult": 1.0,
                "head_channels": self.head_channels, "fused_stages": 0, "guard_90": False}

    def config(self, choice: dict) -> ModelConfig:
        blocks = self.blocks(choice)
        return dataclasses.replace(get_config(self.base_model), name=f"nas_{candidate_key(blocks)}",
                                   family="nas", description="NAS candidate", **{
                                       k: (tuple(v) if k == "blocks" else v)
                                       for k, v in self.overrides(blocks).items()})


def candidate_key(blocks) -> str:
    return hashlib.sha1(" ".join(blocks).encode()).hexdigest()[:12]


SPACES = {
    # EfficientNet-B4-sized (its channels and strides, width 1.4 applied), the paper's setting.
    "b4": SearchSpace(
        name="b4",
        backbone=("r2_k3_s1_e1_i48_o24", "r4_k3_s2_e6_i24_o32", "r4_k5_s2_e6_i32_o56",
                  "r6_k3_s2_e6_i56_o112", "r6_k5_s1_e6_i112_o160", "r8_k5_s2_e6_i160_o272",
                  "r2_k3_s1_e6_i272_o448"),
        layer_choices=((1, 2, 3), (2, 3, 4, 5), (2, 3, 4, 5), (4, 5, 6, 7), (4, 5, 6, 7),
                       (6, 7, 8, 9), (1, 2, 3)),
        base_model="efficientnet_b4",
        reference=("r2_k3_s1_e1_i48_o24_se0.25", "r4_k3_s2_e6_i24_o32_se0.25",
                   "r4_k5_s2_e6_i32_o56_se0.25", "r6_k3_s2_e6_i56_o112_se0.25",
                   "r6_k5_s1_e6_i112_o160_se0.25", "r8_k5_s2_e6_i160_o272_se0.25",
                   "r2_k3_s1_e6_i272_o448_se0.25"),
        head_channels=1792,
    ),
    # Small enough to train tens of candidates on a 2-core CPU.
    "cpu": SearchSpace(
        name="cpu",
        backbone=("r1_k3_s1_e1_i16_o16", "r1_k3_s2_e4_i16_o24", "r2_k3_s2_e4_i24_o32",
                  "r2_k3_s2_e4_i32_o48"),
        layer_choices=((1, 2), (1, 2), (1, 2, 3), (1, 2, 3)),
        base_model="demo_v2_tiny",
        reference=("r1_k3_s1_e1_i16_o16_se0.25", "r1_k3_s2_e4_i16_o24_se0.25",
                   "r2_k3_s2_e4_i24_o32_se0.25", "r2_k3_s2_e4_i32_o48_se0.25"),
        head_channels=256,
    ),
}


def pareto_front(rows: list[dict]) -> list[dict]:
    """The candidates no other candidate beats on both accuracy and step time, fastest first."""

    def dominated(r):
        return any(o is not r and o["accuracy"] >= r["accuracy"]
                   and o["normalized_step_time"] <= r["normalized_step_time"]
                   and (o["accuracy"] > r["accuracy"]
                        or o["normalized_step_time"] < r["normalized_step_time"]) for o in rows)

    return sorted((r for r in rows if not dominated(r)), key=lambda r: r["normalized_step_time"])


def space_table(space: SearchSpace) -> tuple[list[dict], int]:
    """The choices of every stage, and the number of architectures in the space."""
    choices = space.parameters()
    rows = [{"stage": i + 1, "backbone": block, "operator": "/".join(choices[f"s{i}_op"]),
             "layers": "/".join(map(str, choices[f"s{i}_layers"])),
             "kernel": "/".join(map(str, choices[f"s{i}_kernel"])),
             "expansion": "/".join(map(str, choices[f"s{i}_expand"]))}
            for i, block in enumerate(space.backbone)]
    return rows, math.prod(len(c) for c in choices.values())
