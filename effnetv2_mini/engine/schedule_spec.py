"""The ``--progressive`` option of ``effnetv2 train`` read into a schedule (paper section 4,
Algorithm 1): ``paper`` or ``code`` (the presets of :mod:`effnetv2_mini.paper.progressive`) or a
SPEC of first:last values.

    parse_schedule("stages=4 size=128:300 randaug=5:15 mixup=0:0 dropout=0.1:0.3",
                   config.resolved())
"""

from __future__ import annotations

import math

from ..argtypes import MAX_MIX_ALPHA, MIX_ALPHA
from ..paper.progressive import ProgressiveSchedule, linear_schedule, schedule_preset, variant

__all__ = ["parse_schedule", "SPEC_KEYS"]

SPEC_KEYS = {"stages": "number of stages", "size": "first:last image size",
             "randaug": "first:last RandAugment magnitude", "mixup": "first:last mixup alpha",
             "dropout": "first:last dropout", "round": "round middle sizes to a multiple"}


def parse_schedule(text: str, config, variant_name: str = "progressive") -> ProgressiveSchedule:
    """The schedule the command line asks for (``effnetv2 train --progressive ...``) over
    ``config.epochs``: ``paper`` or ``code`` (the presets, for efficientnetv2_s/m/l) or a SPEC such
    as ``"stages=4 size=128:300 randaug=5:15 mixup=0:0 dropout=0.1:0.3"`` (first:last value;
    Algorithm 1 in between). ``config`` must be resolved (its eval size known)."""
    if text in ("paper", "code"):
        schedule = schedule_preset(config.model, text, epochs=config.epochs, stages=4,
                                   eval_size=config.eval_size)
    else:
        spec = _parse_spec(text)
        if "size" not in spec:
            raise ValueError(f"--progressive {text!r}: a SPEC needs size=FIRST:LAST "
                             "(e.g. size=128:300)")
        schedule = linear_schedule(config.epochs, int(spec.get("stages", 4)),
                                   _int_pair(spec["size"]), config.eval_size,
                                   dropout=spec.get("dropout"),
                                   randaug_magnitude=spec.get("randaug", (0.0, 0.0)),
                                   mixup_alpha=spec.get("mixup", (0.0, 0.0)),
                                   round_to=int(spec.get("round", 8)),
                                   source=f"command line: {text}")
    return variant(schedule, variant_name, seed=config.seed)


def _parse_spec(text: str) -> dict:
    spec = {}
    for token in text.replace(",", " ").split():
        key, _, value = token.partition("=")
        if key not in SPEC_KEYS or not value:
            known = "; ".join(f"{k}: {v}" for k, v in SPEC_KEYS.items())
            raise ValueError(f"--progressive: cannot read {token!r}; write key=value "
                             f"pairs, keys: {known}")
        try:
            spec[key] = (float(value) if key in ("stages", "round")
                         else tuple(float(v) for v in value.split(":")))
        except ValueError:
            raise ValueError(f"--progressive: {token!r} is not a "
                             f"number{'' if key in ('stages', 'round') else ' pair'}") from None
        if key not in ("stages", "round") and len(spec[key]) != 2:
            raise ValueError(f"--progressive: {key} takes FIRST:LAST, got {value!r}")
        _check_range(key, spec[key], token)
    return spec


def _check_range(key: str, value, token: str) -> None:
    """Whole numbers >= 1 for stages and round, finite values >= 0 for the rest, dropout below 1."""
    values = value if isinstance(value, tuple) else (value,)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--progressive: {token!r} must be finite")
    if key in ("stages", "round") and not (value >= 1 and float(value).is_integer()):
        raise ValueError(f"--progressive: {token!r}: {key} must be a whole number >= 1")
    if any(v < 0 for v in values):
        raise ValueError(f"--progressive: {token!r}: values must be >= 0")
    if key == "dropout" and any(v >= 1 for v in values):
        raise ValueError(f"--progressive: {token!r}: a dropout rate must be below 1")
    if key == "mixup" and any(v > MAX_MIX_ALPHA for v in values):
        raise ValueError(f"--progressive: {token!r}: a mixup alpha must be {MIX_ALPHA.meaning}")


def _int_pair(pair: tuple[float, float]) -> tuple[int, int]:
    first, last = int(pair[0]), int(pair[1])
    if first < 1 or last < first:
        raise ValueError(f"--progressive: size={first}:{last} must grow from a positive size")
    return first, last
