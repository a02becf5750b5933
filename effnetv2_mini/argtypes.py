"""One set of value checks for every way a number reaches a run: the ``effnetv2`` command line, the
bench/ scripts, :class:`~effnetv2_mini.engine.config.TrainConfig` (library callers) and the
notebooks' parameters (:mod:`effnetv2_mini.study.profiles`).

A *rule* is ``(test, meaning)``: ``meaning`` completes "must be ..." in the error. :func:`arg` turns
a rule into an argparse type, so that ``--epochs 0`` ends in ``argument --epochs: must be a whole
number >= 1, got 0`` (exit 2, no traceback); :class:`Rule` ``.holds(value)`` checks a value a
program gives (:class:`~effnetv2_mini.engine.config.TrainConfig`, the notebooks' profiles).

    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--size", type=image_size)
    parser.add_argument("--models", type=model_name, nargs="+")
    unique(parser, "--seeds", args.seeds)          # after parse_args: each seed once

No torch here: the command line checks its arguments before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import math
import numbers

__all__ = ["MAX_IMAGE_SIZE", "MAX_MIX_ALPHA", "Rule", "POSITIVE_INT", "NON_NEGATIVE_INT",
           "IMAGE_SIZE", "POSITIVE_FLOAT", "NON_NEGATIVE_FLOAT", "FINITE_FLOAT", "FRACTION",
           "MIX_ALPHA", "arg", "positive_int", "non_negative_int", "image_size", "positive_float",
           "non_negative_float", "finite_float", "fraction", "mix_alpha", "model_name", "unique",
           "data"]

# The paper's largest image is 512 px; far larger sizes only fail later, in the allocator, after a
# whole epoch.
MAX_IMAGE_SIZE = 2048
# Beta(alpha, alpha) at alpha 100 already gives lam = 0.5 +- 0.04: larger alphas mix the same way,
# and from about 1e38 (float32's largest) torch's sampler returns lam = 1e-38, i.e. no mixing at
# all. The paper's mixup alphas are 0 to 0.4 (Table 6), CutMix's usual 1.0.
MAX_MIX_ALPHA = 100.0


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


class Rule:
    """A test and what a value passing it is (``must be <meaning>``); ``whole`` rules take integers
    only."""

    def __init__(self, test, meaning: str, whole: bool):
        self.test, self.meaning, self.whole = test, meaning, whole

    def holds(self, value) -> bool:
        return (_whole(value) if self.whole else _number(value)) and bool(self.test(value))


POSITIVE_INT = Rule(lambda v: v >= 1, "a whole number >= 1", whole=True)
NON_NEGATIVE_INT = Rule(lambda v: v >= 0, "a whole number >= 0", whole=True)
IMAGE_SIZE = Rule(lambda v: 1 <= v <= MAX_IMAGE_SIZE,
                  f"a whole number from 1 to {MAX_IMAGE_SIZE} (px)", whole=True)
POSITIVE_FLOAT = Rule(lambda v: v > 0, "a number > 0", whole=False)
NON_NEGATIVE_FLOAT = Rule(lambda v: v >= 0, "a number >= 0", whole=False)
FINITE_FLOAT = Rule(lambda v: True, "a finite number", whole=False)
FRACTION = Rule(lambda v: 0 <= v < 1, "in [0, 1)", whole=False)
MIX_ALPHA = Rule(lambda v: 0 <= v <= MAX_MIX_ALPHA,
                 f"a number from 0 to {MAX_MIX_ALPHA:g} (Beta(alpha, alpha) mixes half and half "
                 "from about 100 on)", whole=False)


def arg(rule: Rule, name: str):
    """An argparse type for ``rule``: the text parsed as int or float, then checked; ``name`` is the
    function name argparse shows for text that is no number at all (``invalid positive_int value:
    'three'``)."""

    def parse(text: str):
        value = int(text) if rule.whole else float(text)  # ValueError: "invalid NAME value"
        if not rule.holds(value):
            raise argparse.ArgumentTypeError(f"must be {rule.meaning}, got {text}")
        return value

    parse.__name__ = name
    return parse


positive_int = arg(POSITIVE_INT, "positive_int")
non_negative_int = arg(NON_NEGATIVE_INT, "non_negative_int")
image_size = arg(IMAGE_SIZE, "image_size")
positive_float = arg(POSITIVE_FLOAT, "positive_float")
non_negative_float = arg(NON_NEGATIVE_FLOAT, "non_negative_float")
finite_float = arg(FINITE_FLOAT, "finite_float")
fraction = arg(FRACTION, "fraction")  # dropout, drop path, label smoothing, EMA decay
mix_alpha = arg(MIX_ALPHA, "mix_alpha")


def model_name(text: str) -> str:
    """A model that ``build_model`` knows (ours, or torchvision's ResNets of
    :mod:`effnetv2_mini.baselines`)."""
    from .baselines import is_baseline
    from .paper.configs import UnknownModelError, get_config

    if is_baseline(text):
        return text
    try:
        get_config(text)
    except UnknownModelError as error:
        message = f"{error} (or resnet18, resnet50: torchvision's)"
        raise argparse.ArgumentTypeError(message) from None
    return text


def unique(parser: argparse.ArgumentParser, option: str, values: list) -> list:
    """``values`` of a list option, refused (``parser.error``, exit 2) when one is given twice: two
    runs with one seed are one run counted twice."""
    repeated = sorted({v for v in values if values.count(v) > 1}, key=str)
    if repeated:
        shown = ", ".join(map(str, repeated))
        parser.error(f"argument {option}: {shown} given more than once; give each once")
    return values


def data(parser: argparse.ArgumentParser, dataset: str, data_root: str | None) -> None:
    """Refuse (``parser.error``, exit 2) a data set that training could not read: an unknown name, a
    missing, empty or file ``--data-root``, a tree without images or of one class
    (:func:`effnetv2_mini.data.datasets.check_data`)."""
    from .data.datasets import check_data

    try:
        check_data(dataset, data_root)
    except (OSError, ValueError, RuntimeError) as error:
        root = f" --data-root {data_root}" if data_root is not None else ""
        parser.error(f"--dataset {dataset}{root}: {error}")
