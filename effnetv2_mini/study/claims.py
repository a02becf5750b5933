"""The paper's claims, each judged against our results: is ours comparable, and does it agree?

Two separate questions for every claim:

- **comparable?** Was our number measured the way the paper measured it? Decided from the result's
  recorded conditions against the paper's setting, and *fail closed*: a missing, unknown or
  different field is "no", and so is any rehearsal, capped epoch or fallback to the built-in data
  set.
- **verdict**: what our result says about the claim, at our scale: **agrees**, **contradicts** or
  **no signal**, taking into account the noise we know about: chance level (100 / classes), the
  seed spread when there are several seeds, and otherwise the binomial standard error of an
  accuracy measured on ``val_images`` images. An effect smaller than its noise is "no signal",
  never a finding.

Each ``*_claim`` function takes a typed result (:mod:`effnetv2_mini.study.experiments`) and returns
a :class:`Claim`, which the report's at-a-glance table and each notebook's conclusion show.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from ..data.datasets import is_built_in
from .experiments.results import FINAL_EMA
from .reference import paper_table, paper_value
from .verdict import (
    AGREES,
    CHANCE_MARGIN_POINTS,
    CONTRADICTS,
    NO_SIGNAL,
    ONE_SEED,
    P_VALUE_LIMIT,
    accuracy_noise,
    comparisons,
    difference_noise,
    time_margin,
)

__all__ = ["Claim", "Verdict", "comparable", "accuracy_noise", "difference_noise", "PAPER_SETTINGS",
           "counts_claim", "training_claim", "table2_claim", "table3_claim", "per_stage_claim",
           "nas_claims", "table5_claim", "table6_claim", "speedup_claim", "explain_speedup",
           "adaptive_claim", "transfer_claim", "claims_for", "conclusion",
           "time_to_accuracy_claim", "progressive_each_claim", "table11_claim",
           "architecture_alone_claim", "table10_claim",
           "time_ratio_verdict", "explain_time_to_accuracy", "leaderboard_line"]

NOT_APPLICABLE = "n/a"
GPU_OR_TPU_TIMED = ("V100", "TPU")  # the devices the paper timed (Tables 2, 3)


@dataclass(frozen=True)
class Verdict:
    label: str  # agrees | contradicts | no signal | n/a
    why: str

    def __str__(self) -> str:
        return f"{self.label} ({self.why})" if self.why else self.label


@dataclass(frozen=True)
class Claim:
    """One row of the report's at-a-glance table."""

    key: str
    table: str  # where the paper makes the claim
    statement: str  # the claim, in a sentence
    paper: str  # the paper's number(s)
    ours: str
    conditions: str
    comparable: Verdict  # label "yes" / "no"
    verdict: Verdict


# ---- comparability: fail closed ------------------------------------------------------------------

# The paper's setting for each trained claim: every listed condition must be recorded and match.
PAPER_SETTINGS = {
    "table7": {"profile": {"full"}, "dataset": {"imagenet"}, "model": {"efficientnetv2_s"},
               "epochs": {350}, "eval_size": {384}, "schedule": {"paper Table 6", "official code"},
               "recipe": {"paper", "code"}, "global_batch": {4096}, "accuracy": {FINAL_EMA}},
    "table5": {"profile": {"full"}, "dataset": {"imagenet"}, "image_sizes": {(128, 192, 300)},
               "recipe": {"paper", "code"}},
    "progressive": {"profile": {"full"}, "dataset": {"imagenet"}, "epochs": {350},
                    "schedule": {"paper Table 6", "official code"}, "recipe": {"paper", "code"},
                    "global_batch": {4096}},
    "time_to_accuracy": {"profile": {"full"}, "dataset": {"imagenet"}, "epochs": {350},
                         "recipe": {"paper", "code"}, "global_batch": {4096},
                         # Table 10's pair, each at its own sizes: V2-M with Table 6, B7 at 600 px
                         "per_model": {
                             "efficientnetv2_m": {"schedule": {"paper Table 6", "official code"},
                                                  "eval_size": {480}},
                             "efficientnet_b7": {"eval_size": {600}}}},
    "transfer": {"profile": {"full_transfer"},
                 "dataset": {"cifar10", "cifar100", "flowers102", "stanford_cars"},
                 "recipe": {"finetune paper", "finetune code"}, "global_batch": {512},
                 "lr": {0.001}},
}


def comparable(conditions, setting: dict) -> Verdict:
    """"yes" only if every condition of ``setting`` is recorded and matches; else "no" with the
    first reason."""
    if conditions is None:
        return Verdict("no", "no conditions recorded")
    if conditions.rehearsal:
        return Verdict("no", "a rehearsal: one or two steps per stage at tiny sizes")
    if conditions.fallback_notice:
        return Verdict("no", "fell back to the built-in data set instead of "
                             f"{conditions.dataset_requested}")
    if conditions.steps_per_epoch is not None:
        return Verdict("no", f"epochs capped at {conditions.steps_per_epoch} steps")
    mismatch = _mismatch(lambda key: getattr(conditions, key, None), setting)
    if mismatch:
        return Verdict("no", mismatch)
    if getattr(conditions, "differences", None):
        return Verdict("no", f"differs from the paper's setting: {conditions.differences[0]}")
    if getattr(conditions, "crops_from_cache", False):
        return Verdict("no", "training crops cut from the decoded-image cache (photos pre-shrunk "
                             "to S+32 px), not from the full photos: softer small crops than the "
                             "official preprocessing")
    return Verdict("yes", "")


def _mismatch(recorded, setting: dict, whose: str = "") -> str:
    """The first condition of ``setting`` that ``recorded(key)`` lacks or contradicts, as a reason;
    "" if none. ``per_model`` maps models to their own settings (``conditions.per_model``)."""
    for key, allowed in setting.items():
        if key == "per_model":
            own = recorded("per_model") or {}
            for model, model_setting in allowed.items():
                if model not in own:
                    return f"{model}'s own settings not recorded"
                reason = _mismatch(own[model].get, model_setting, f"{model}: ")
                if reason:
                    return reason
            continue
        value = recorded(key)
        value = tuple(value) if isinstance(value, list) else value
        if value is None:
            return f"{whose}{key} not recorded"
        if value not in allowed:
            paper = " or ".join(_show(a) for a in sorted(allowed, key=str))
            return f"{whose}{key} {_show(value)}, the paper's: {paper}"
    return ""


def _show(value) -> str:
    return "-".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _timed_like_the_paper(conditions) -> Verdict:
    if conditions is None or conditions.rehearsal:
        return Verdict("no", "a rehearsal" if conditions else "no conditions recorded")
    name = conditions.device_name or ""
    if not any(device in name for device in GPU_OR_TPU_TIMED):
        return Verdict("no", f"timed on {conditions.device} ({name or 'unknown'}); "
                             "the paper timed TPUv3 and V100")
    return Verdict("yes", "")


# ---- noise ---------------------------------------------------------------------------------------

def _at_chance(values: list[float], conditions) -> bool:
    """True when every accuracy is within noise of chance (100 / classes): nothing was learned to
    compare."""
    chance = conditions.chance if conditions else None
    if chance is None:
        return False
    noise = 2 * (accuracy_noise(chance, conditions.val_images) or 1.0) + CHANCE_MARGIN_POINTS
    return all(v - chance <= noise for v in values)


def _compare(difference: float, noise: float, positive: str, negative: str) -> Verdict:
    if difference > noise:
        return Verdict(AGREES, positive.format(d=difference, n=noise))
    if difference < -noise:
        return Verdict(CONTRADICTS, negative.format(d=difference, n=noise))
    return Verdict(NO_SIGNAL,
                   f"difference {difference:+.1f} points is within its noise of ±{noise:.1f}")


def _describe(c) -> str:
    if c is None:
        return "conditions not recorded"
    parts = [c.model, c.dataset, f"{c.epochs} epochs" if c.epochs else None,
             f"{'-'.join(map(str, c.image_sizes))} px" if c.image_sizes else None,
             f"schedule: {c.schedule}" if c.schedule else None,
             f"recipe {c.recipe}" if c.recipe else None,
             f"{len(c.seeds)} seed(s)" if len(c.seeds) > 1 else None,
             f"global batch {c.global_batch}" if c.global_batch else None,
             f"{c.device} ({c.device_name})",
             f"{c.wall_clock_s:.0f} s" if c.wall_clock_s else None, f"{c.profile} profile",
             "REHEARSAL" if c.rehearsal else None]
    return ", ".join(p for p in parts if p)


# ---- the claims ----------------------------------------------------------------------------------

def counts_claim(result) -> Claim:
    """Tables 4 and 7: our models have the published parameter counts and FLOPs (they do not depend
    on data)."""
    rows = [r for r in result.models if r.get("reference_params") or r.get("reference_macs_b")]
    deviations = [abs(r["params"] - r["reference_params"]) / r["reference_params"]
                  for r in rows if r.get("reference_params")]
    deviations += [abs(r["macs"] / 1e9 - r["reference_macs_b"]) / r["reference_macs_b"]
                   for r in rows if r.get("reference_macs_b")]
    s = next((r for r in result.models if r["name"] == "efficientnetv2_s"), result.models[0])
    worst = max(deviations) if deviations else None
    verdict = (Verdict(NO_SIGNAL, "no reference numbers to compare with") if worst is None else
               Verdict(AGREES, f"every count within {100 * worst:.1f}% of its reference")
               if worst <= 0.03 else
               Verdict(CONTRADICTS, f"a count differs by {100 * worst:.1f}% from its reference"))
    return Claim("counts", "Tables 4, 7",
                 "the architectures have the published parameter counts and FLOPs",
                 f"{s['name']}: {_millions(s.get('reference_params'))} params, "
                 f"{s.get('reference_macs_b')} GMACs (reference: torchvision / official README)",
                 f"{s['params']:,} params, {s['macs'] / 1e9:.2f} GMACs",
                 "counted from the model (no data, any device)",
                 Verdict("yes", "counts do not depend on data or device"), verdict)


def _millions(value) -> str:
    return f"{value / 1e6:.1f}M" if value else "-"


def training_claim(result) -> Claim:
    """Table 7: EfficientNetV2-S reaches 83.9% top-1 on ImageNet with the paper's recipe and
    progressive learning. At another scale, what our run can say is whether the recipe trains the
    model well above chance."""
    c, top1 = result.conditions, result.top1
    paper_top1 = paper_value("efficientnetv2_s", "top1")[0]
    fit = comparable(c, PAPER_SETTINGS["table7"])
    noise = 2 * (accuracy_noise(top1, c.val_images) or 0.0)
    if top1 is None:
        verdict = Verdict(NO_SIGNAL, "no accuracy recorded")
    elif fit.label == "yes":
        # a reproduction: within half a point (or the noise) of the paper, or better
        tolerance = max(0.5, noise)
        verdict = (Verdict(AGREES,
                           f"{top1:.1f}% vs the paper's {paper_top1}% (tolerance {tolerance:.1f})")
                   if top1 >= paper_top1 - tolerance else
                   Verdict(CONTRADICTS,
                           f"{paper_top1 - top1:.1f} points below the paper's {paper_top1}%"))
    elif _at_chance([top1], c):
        verdict = Verdict(NO_SIGNAL, f"{top1:.1f}% is at chance level ({c.chance:.0f}%)")
    elif c.recipe not in ("paper", "code"):
        verdict = Verdict(NO_SIGNAL,
                          f"{c.model} trains to {top1:.1f}%"
                          + (f" (chance {c.chance:.0f}%)" if c.chance else "")
                          + f" with recipe {c.recipe}, not the paper's: "
                          "that says nothing about the paper's recipe")
    else:
        verdict = Verdict(AGREES,
                          f"at this scale the recipe trains {c.model} to {top1:.1f}%, "
                          f"far above chance ({c.chance:.0f}%); not the paper's number"
                          if c.chance else "trains")
    return Claim("table7", "Table 7",
                 "the paper's recipe trains EfficientNetV2-S to 83.9% top-1 (ImageNet)",
                 f"{paper_top1}% (efficientnetv2_s, ImageNet, 350 epochs, progressive)",
                 f"{top1:.1f}% ({c.model}, {c.accuracy})" if top1 is not None else "-",
                 _describe(c), fit, verdict)


def table2_claim(result) -> Claim:
    """Table 2: larger images force smaller batches (memory), which slows training."""
    batches = [r["max_batch"] for r in sorted(result.rows, key=lambda r: r["image_size"])]
    if len(set(batches)) == 1:
        verdict = Verdict(NO_SIGNAL, f"the same largest batch ({batches[0]}) at every size "
                                     "(limit or budget too small)")
    elif all(a >= b for a, b in zip(batches, batches[1:])):
        verdict = Verdict(AGREES, "the largest batch shrinks as the image size grows: "
                                  + " > ".join(map(str, batches)))
    else:
        verdict = Verdict(CONTRADICTS, "a larger image size fits a larger batch: "
                                       + ", ".join(map(str, batches)))
    ours = ", ".join(f"{r['image_size']} px: batch {r['max_batch']}" for r in result.rows)
    return Claim("table2", "Table 2", "larger images force smaller batches and slow training down",
                 "EfficientNet-B6: smaller batches and slower training at 512 px than at 380 px "
                 "(TPUv3, V100)", ours,
                 _describe(result.conditions)
                 + f", budget {result.memory_budget_bytes / 2**20:.0f} MB",
                 _timed_like_the_paper(result.conditions), verdict)


def table3_claim(result) -> Claim:
    """Table 3: Fused-MBConv in stages 1-3 trains faster than MBConv everywhere, and fusing every
    stage is slower again (on accelerators: TPUv3 and V100)."""
    by = {r["fused_stages"]: r for r in result.rows}
    paper = {row["fused_stages"]: row for row in paper_table("table3")["rows"]}

    def faster(a, b):  # a beats b beyond the spread of the timed repeats
        return by[a]["images_per_sec_range"][0] > by[b]["images_per_sec_range"][1]

    early, everywhere = faster(3, 0), faster(3, 7)
    if early and everywhere:
        verdict = Verdict(AGREES, "fused stages 1-3 beat none and all, beyond the timing spread")
    elif faster(0, 3) or faster(7, 3):
        verdict = Verdict(CONTRADICTS, "fused stages 1-3 are slower than "
                                       + ("no fused stages" if faster(0, 3) else "all fused"))
    else:
        verdict = Verdict(NO_SIGNAL, "the timings' spreads overlap")
    ours = ", ".join(f"{_fused(n)} {by[n]['train_images_per_sec']:.0f}"
                     for n in sorted(by)) + " img/s"
    return Claim("table3", "Table 3",
                 "Fused-MBConv in early stages trains faster; in every stage it does not",
                 ", ".join(f"{_fused(n)} {paper[n]['v100']}" for n in sorted(paper))
                 + " img/s (V100)", ours,
                 _describe(result.conditions)
                 + f", {result.image_size} px, batch {result.batch_size}",
                 _timed_like_the_paper(result.conditions), verdict)


def _fused(stages: int) -> str:
    return "none" if not stages else f"1-{stages}"


def per_stage_claim(result) -> Claim:
    """Section 3.2: depthwise convolutions are slow in early stages, so Fused-MBConv is faster there
    (and not in the late stages, where MBConv's fewer FLOPs win)."""
    early = [r["fused_vs_mbconv"] for r in result.rows if r["stage"] <= 3]
    late = [r["fused_vs_mbconv"] for r in result.rows if r["stage"] >= 5]
    e, la = statistics.geometric_mean(early), statistics.geometric_mean(late)
    if e > 1.1 and la < 1 / 1.1:
        verdict = Verdict(AGREES, f"Fused-MBConv {e:.1f}x MBConv's speed in stages 1-3, "
                                  f"{la:.1f}x in stages 5-7")
    elif e < 1 / 1.1:
        verdict = Verdict(CONTRADICTS, f"Fused-MBConv is slower in the early stages ({e:.2f}x)")
    else:
        verdict = Verdict(NO_SIGNAL,
                          f"ratios {e:.2f}x early and {la:.2f}x late are within 10% of parity")
    return Claim("per_stage", "section 3.2",
                 "depthwise convolutions are slow in early stages: fuse them there",
                 "fused stages 1-3 speed training up (Table 3)",
                 f"fused/MBConv speed: {e:.2f}x early, {la:.2f}x late",
                 _describe(result.conditions), _timed_like_the_paper(result.conditions), verdict)


def nas_claims(result) -> list[Claim]:
    """Section 3.3: the search (proxy training at reduced size) finds fused early stages; the method
    assumes that the proxy ranking predicts a longer training. The paper publishes no search numbers
    (comparable: n/a)."""
    c, ranked = result.conditions, result.ranked
    accuracies = [r["accuracy"] for r in ranked]
    na = Verdict(NOT_APPLICABLE, "the paper publishes no search numbers")
    top = result.top_choices
    fused_early = statistics.mean(r["fused"] for r in top[:2]) if top else None
    fused_late = statistics.mean(r["fused"] for r in top[-2:]) if top else None
    if len(ranked) < 6 or _at_chance(accuracies, c):
        choice = Verdict(NO_SIGNAL, f"{len(ranked)} candidates"
                                    + (" at chance level" if _at_chance(accuracies, c) else
                                       ": too few to read a preference"))
    elif fused_early - fused_late >= 0.5:
        choice = Verdict(AGREES, f"top candidates fuse {fused_early:.0%} of the first two stages, "
                                 f"{fused_late:.0%} of the last two")
    elif fused_late - fused_early >= 0.5:
        choice = Verdict(CONTRADICTS, f"top candidates fuse late stages ({fused_late:.0%}) "
                                      f"more than early ({fused_early:.0%})")
    else:
        choice = Verdict(NO_SIGNAL, f"fused {fused_early:.0%} early vs {fused_late:.0%} late: "
                                    "no clear preference")
    claims = [Claim("nas_choices", "section 3.3",
                    "the search favours Fused-MBConv in the early stages",
                    "EfficientNetV2: fused stages 1-3, expansions 1/4, 3x3 kernels",
                    f"best reward {ranked[0]['reward']:.3g}, "
                    f"accuracies {min(accuracies):.1f}-{max(accuracies):.1f}%" if ranked else "-",
                    _describe(c) + f", {len(ranked)} candidates", na, choice)]
    if result.retrained:
        rho, n = result.proxy_vs_longer_spearman, len(result.retrained)
        longer = [r["longer_accuracy"] for r in result.retrained]
        if n < 4 or rho is None or _at_chance(longer, c):
            proxy = Verdict(NO_SIGNAL, f"{n} retrained candidates"
                                       + (" at chance" if _at_chance(longer, c) else ""))
        else:
            proxy = _rank_verdict(rho, n)
        claims.append(Claim("nas_proxy", "section 3.3",
                            "a short proxy training ranks candidates as a longer one does",
                            "(the method's assumption; no number)",
                            f"Spearman {rho:.2f} ({n} candidates)" if rho is not None else "-",
                            _describe(c), na, proxy))
    return claims


# a rank correlation counts only if chance reaches it this rarely (one-sided): the report's rule
RANK_P_VALUE = P_VALUE_LIMIT


def _rank_verdict(rho: float, n: int) -> Verdict:
    """A proxy ranking's verdict from Spearman's ``rho`` over ``n`` candidates and its one-sided
    permutation p-value (:mod:`.ranktest`, exact for few candidates): no signal when chance reaches
    the correlation more often than :data:`RANK_P_VALUE` (4 candidates: even a perfect ranking has
    p = 1/24); agrees for a significant rho of at least 0.6, contradicts for a significant negative
    one."""
    from .ranktest import EXACT_UP_TO, spearman_p_value

    above, below = spearman_p_value(rho, n, "greater"), spearman_p_value(rho, n, "less")
    test = "one-sided, " + ("exact" if n <= EXACT_UP_TO else "normal approximation")
    said = f"Spearman {rho:.2f} over {n} candidates"
    if above <= RANK_P_VALUE and rho >= 0.6:
        return Verdict(AGREES, f"{said}, p = {above:.3f} ({test})")
    if below <= RANK_P_VALUE and rho < 0:
        return Verdict(CONTRADICTS, f"{said}, p = {below:.3f} ({test})")
    p = above if rho >= 0 else below
    why = f"p = {p:.3f} > {RANK_P_VALUE} ({test})" if p > RANK_P_VALUE else "significant but weak"
    return Verdict(NO_SIGNAL, f"{said}, {why}")


def table5_claim(result) -> Claim:
    """Table 5: the best RandAugment magnitude grows with the image size. Statistic: at each size,
    how much the stronger half of the magnitudes beats the weaker half; the claim says this
    preference grows with size."""
    c = result.conditions
    half = len(result.magnitudes) // 2
    seeds = result.per_seed or [result.top1]

    def preference(grid, i):  # strong minus weak augmentation at size i
        row = grid[i]
        return statistics.mean(row[-half:]) - statistics.mean(row[:half]) if half else 0.0

    small = [preference(g, 0) for g in seeds]
    large = [preference(g, len(result.sizes) - 1) for g in seeds]
    noise = _preference_noise(small, large, result.top1, c.val_images, max(1, half))
    columns = range(len(result.magnitudes))
    best = ", ".join(f"{s} px: {result.magnitudes[max(columns, key=lambda j: result.top1[i][j])]:g}"
                     for i, s in enumerate(result.sizes))
    if _at_chance([v for row in result.top1 for v in row], c):
        verdict = Verdict(NO_SIGNAL, f"every cell is at chance level ({c.chance:.0f}%)")
    else:
        verdict = _compare(statistics.mean(large) - statistics.mean(small), noise,
                           "strong augmentation helps {d:+.1f} points more at the largest size "
                           "than at the smallest (noise {n:.1f})",
                           "strong augmentation helps {d:+.1f} points less at the largest size")
    paper = paper_table("table5")
    paper_best = ", ".join(
        f"{s} px: {paper['magnitudes'][max(range(3), key=lambda j: paper['top1'][j][i])]}"
        for i, s in enumerate(paper["sizes"]))
    return Claim("table5", "Table 5", "the best RandAugment magnitude grows with the image size",
                 f"best magnitude {paper_best}", f"best magnitude {best}",
                 _describe(c) + f", {result.epochs} epochs per cell",
                 comparable(c, PAPER_SETTINGS["table5"]), verdict)


def _preference_noise(small: list[float], large: list[float], top1: list[list[float]],
                      val_images: int | None, half: int) -> float:
    """Twice the standard error of (preference at the largest size - preference at the smallest):
    from the seeds' spread when there are two or more, and never below what the binomial error of
    the cells implies (each preference is a difference of two means of ``half`` cells, so the
    difference of two has variance 4 SE^2 / half)."""
    n = len(small)
    spread = (math.sqrt(statistics.variance(small) / n + statistics.variance(large) / n)
              if n >= 2 else 0.0)
    cell = accuracy_noise(statistics.mean(v for row in top1 for v in row), val_images)
    binomial = cell * math.sqrt(4 / half / n) if cell is not None else (math.inf if n < 2 else 0.0)
    return 2 * max(spread, binomial)


def table6_claim(result) -> Claim:
    """Table 6: the progressive schedule's settings (an input of the experiment, not a result)."""
    stages = result.schedule["stages"]
    model = result.conditions.model
    ranges = paper_table("table6")["ranges"]
    reference = model if model in ranges else "efficientnetv2_s"
    keys = ["image_size", "randaug_magnitude", "mixup_alpha", "dropout"]
    same = (model in ranges and result.schedule.get("source") == "paper Table 6"
            and not result.conditions.rehearsal)
    return Claim("table6", "Table 6", "image size and regularization grow together over the stages",
                 f"{reference}: "
                 + "; ".join(f"{k} {ranges[reference][k][0]}->{ranges[reference][k][1]}"
                             for k in keys),
                 "; ".join(f"{k} {stages[0][k]}->{stages[-1][k]}" for k in keys),
                 f"{model}, {len(stages)} stages",
                 Verdict("yes", "the paper's settings") if same else
                 Verdict("no", "a scaled-down schedule of the same shape"),
                 Verdict(NOT_APPLICABLE, "settings are an input, not a result"))


def _variant_values(rows: list[dict], name: str, key: str = "final_top1") -> list[float]:
    return [r[key] for r in rows if r["variant"] == name and r.get(key) is not None]


def speedup_claim(result) -> Claim:
    """Section 6 (ablations): progressive learning trains faster at equal or better accuracy
    (EfficientNet-B7: 139 h -> 54 h, 84.7% -> 85.0%)."""
    c, claims = result.conditions, paper_table("progressive_claims")
    fixed, prog = (_variant_values(result.rows, "fixed"),
                   _variant_values(result.rows, "progressive"))
    ratios = [r["time_vs_fixed"] for r in result.rows
              if r["variant"] == "progressive" and r.get("time_vs_fixed")]
    hours, top1 = claims["efficientnet_b7_hours"], claims["efficientnet_b7_top1"]
    paper = (f"B7 {hours['fixed']} h -> {hours['progressive']} h, "
             f"{top1['fixed']}% -> {top1['progressive']}%")
    if not fixed or not prog or not ratios:
        return Claim("speedup", "section 6",
                     "progressive learning trains faster at equal or better accuracy", paper, "-",
                     _describe(c), comparable(c, PAPER_SETTINGS["progressive"]),
                     Verdict(NO_SIGNAL, "fixed or progressive missing"))
    ratio, diff = statistics.mean(ratios), statistics.mean(prog) - statistics.mean(fixed)
    noise = difference_noise(prog, fixed, c.val_images)
    if _at_chance(fixed + prog, c):
        verdict = Verdict(NO_SIGNAL, f"both at chance level ({c.chance:.0f}%)")
    elif diff < -noise:
        verdict = Verdict(CONTRADICTS,
                          f"{ratio:.2f}x the time but {diff:+.1f} points (noise {noise:.1f})")
    elif ratio >= 0.95:
        verdict = Verdict(CONTRADICTS if ratio > 1.05 else NO_SIGNAL,
                          f"not faster: {ratio:.2f}x the fixed-size time")
    else:
        verdict = Verdict(AGREES, f"{ratio:.2f}x the time at {diff:+.1f} points "
                                  f"(within or above noise {noise:.1f})")
    ours = (f"{ratio:.2f}x the fixed-size time, "
            f"top-1 {statistics.mean(fixed):.1f}% -> {statistics.mean(prog):.1f}%")
    return Claim("speedup", "section 6",
                 "progressive learning trains faster at equal or better accuracy", paper, ours,
                 _describe(c), comparable(c, PAPER_SETTINGS["progressive"]), verdict)


def explain_speedup(result) -> str:
    """Why a progressive comparison's speed-up is what it is, from its own numbers, as Markdown
    lines: the time and accuracy of progressive learning against fixed-size training (means over
    seeds), and what an image of the first stage cost against one of the last (training time per
    image, from each stage's images/s) beside what counting pixels predicts. Small images save only
    as much as they are cheaper for this model on this machine."""
    fixed, prog = (_variant_values(result.rows, "fixed"),
                   _variant_values(result.rows, "progressive"))
    ratios = [r["time_vs_fixed"] for r in result.rows
              if r["variant"] == "progressive" and r.get("time_vs_fixed")]
    lines = []
    if fixed and prog and ratios:
        lines.append(f"- This run: progressive learning took **{statistics.mean(ratios):.2f}x** "
                     "the fixed-size training time and ended "
                     f"**{statistics.mean(prog) - statistics.mean(fixed):+.1f} points** from it "
                     f"({statistics.mean(fixed):.1f}% -> {statistics.mean(prog):.1f}%, "
                     f"means over {len(ratios)} seed(s)).")
    stages = [s for s in result.per_stage
              if s["variant"] == "progressive" and s.get("images_per_sec")]
    sizes = sorted({s["image_size"] for s in stages})
    if len(sizes) >= 2:
        speed = {size: statistics.mean(s["images_per_sec"] for s in stages
                                       if s["image_size"] == size)
                 for size in sizes}
        small, large = sizes[0], sizes[-1]
        cost, pixels = speed[large] / speed[small], (small / large) ** 2
        reading = ("cost follows pixels, as for the paper's large models on accelerators"
                   if cost <= 1.25 * pixels else
                   "costs that do not shrink with the image (per batch and per layer) take the "
                   "difference")
        lines.append(f"- A {small} px image cost **{cost:.2f}** of a {large} px image's training "
                     f"time; counting pixels predicts {pixels:.2f}: {reading}.")
    return "\n".join(lines) or "- No fixed-size and progressive runs to compare in this result."


def adaptive_claim(result) -> Claim:
    """Section 6 (ablations): adaptive regularization adds 0.7 points over fixed regularization
    under the same progressive schedule."""
    c = result.conditions
    gain = paper_table("progressive_claims")["adaptive_regularization_gain_points"]
    adaptive, fixed_reg = (_variant_values(result.rows, "progressive"),
                           _variant_values(result.rows, "progressive_fixed_reg"))
    if not adaptive or not fixed_reg:
        verdict, ours = Verdict(NO_SIGNAL, "progressive_fixed_reg not run"), "-"
    else:
        diff = statistics.mean(adaptive) - statistics.mean(fixed_reg)
        ours = (f"{diff:+.1f} points "
                f"({statistics.mean(fixed_reg):.1f}% -> {statistics.mean(adaptive):.1f}%)")
        verdict = (Verdict(NO_SIGNAL, "at chance level") if _at_chance(adaptive + fixed_reg, c) else
                   _compare(diff, difference_noise(adaptive, fixed_reg, c.val_images),
                            "adaptive regularization {d:+.1f} points (noise {n:.1f})",
                            "adaptive regularization {d:+.1f} points (noise {n:.1f})"))
    return Claim("adaptive", "section 6",
                 "adaptive regularization beats fixed regularization in a progressive schedule",
                 f"+{gain} points", ours, _describe(c),
                 comparable(c, PAPER_SETTINGS["progressive"]), verdict)


def transfer_claim(result) -> Claim:
    """Table 8 (and the reason to fine-tune at all): starting from pretrained weights beats training
    from scratch with the same steps and images."""
    c = result.conditions
    pre = [r["top1"] for r in result.rows if r["start"] == "pretrained"]
    scratch = [r["top1"] for r in result.rows if r["start"] == "scratch"]
    paired = [r for r in result.rows
              if r["start"] == "pretrained" and r.get("paper_top1") is not None]
    v2s = paper_table("table8")["top1"]["efficientnetv2_s"]
    paper = (f"{paired[0]['model']} on {paired[0]['dataset']}: {paired[0]['paper_top1']}%"
             if paired else
             f"V2-S fine-tuned: CIFAR-10 {v2s['cifar10']}%, CIFAR-100 {v2s['cifar100']}%")
    if not pre or not scratch:
        verdict = Verdict(NO_SIGNAL, "pretrained or scratch run missing")
    elif _at_chance(pre + scratch, c):
        verdict = Verdict(NO_SIGNAL, f"both at chance level ({c.chance:.0f}%)")
    elif _at_chance(scratch, c):
        # a baseline that learned nothing cannot measure pretraining
        verdict = Verdict(NO_SIGNAL, f"the from-scratch baseline is at chance level "
                                     f"({statistics.mean(scratch):.1f}%, chance {c.chance:.0f}%): "
                                     "it learned nothing to compare with")
    else:
        verdict = _compare(statistics.mean(pre) - statistics.mean(scratch),
                           difference_noise(pre, scratch, c.val_images),
                           "fine-tuning beats scratch by {d:+.1f} points (noise {n:.1f})",
                           "fine-tuning is {d:+.1f} points worse than scratch (noise {n:.1f})")
    ours = (f"pretrained {statistics.mean(pre):.1f}% vs scratch {statistics.mean(scratch):.1f}%"
            if pre and scratch else "-")
    return Claim("transfer", "Table 8",
                 "fine-tuning pretrained weights beats training from scratch", paper, ours,
                 _describe(c) + f", {result.steps} steps",
                 comparable(c, PAPER_SETTINGS["transfer"]), verdict)


# ---- faster training, measured (Figure 1a; Tables 7, 10, 11, 12) ---------------------------------

# Table 11: V2 / V1 images/s beyond both timing ranges and 5% (one machine, alternated)
SPEED_MARGIN = 0.05


def time_ratio_verdict(ratios: list[float], drift: float | None) -> str:
    """"faster", "slower" or "unclear": whether the mean of ``ratios`` (one run's time over
    another's, per seed) is below or above 1 by more than its noise: the machine's measured
    ``drift`` or twice the standard error of the seeds' spread, whichever is larger
    (:func:`effnetv2_mini.study.verdict.time_margin`)."""
    mean, margin = statistics.mean(ratios), time_margin(ratios, drift)["margin"]
    return "faster" if mean < 1 - margin else "slower" if mean > 1 + margin else "unclear"


def _timed_training_comparable(conditions) -> Verdict:
    """Trained in the paper's setting (ImageNet, 350 epochs, the paper's recipe) and timed on its
    devices."""
    trained = comparable(conditions, PAPER_SETTINGS["time_to_accuracy"])
    return trained if trained.label == "no" else _timed_like_the_paper(conditions)


def _paper_time_to_accuracy() -> str:
    t10 = {row["model"]: row for row in paper_table("table10")["rows"]}
    v2m, b7 = t10["efficientnetv2_m"], t10["efficientnet_b7"]
    fixed = paper_table("progressive_claims")["efficientnet_b7_hours"]["fixed"]
    return (f"V2-M {v2m['top1']}% in {v2m['train_hours']} h vs B7 {b7['top1']}% in "
            f"{b7['train_hours']} h, both progressive (Table 10); B7 at its fixed size: {fixed} h")


def _comparison_claim(result, key: str, table: str, statement: str, paper: str) -> Claim:
    """One of notebook 07's comparisons (:func:`effnetv2_mini.study.verdict.comparisons`) as a
    claim: its verdict, the accuracy it was measured at, its noise and regime."""
    c, found = result.conditions, comparisons(result).get(key)
    name = key if key != "fig1a" else "time_to_accuracy"
    fit = _timed_training_comparable(c)
    if not found or found["ratio"] is None:
        why = found["why"] if found else "no V2 / V1 pair was trained"
        return Claim(name, table, statement, paper, "-", _describe(c), fit, Verdict(NO_SIGNAL, why))
    learning = " (runs still learning)" if found["regime"]["still_learning"] else ""
    ours = (f"{found['faster']}: {found['ratio']:.2f}x the time of {found['baseline']} to reach "
            f"{found['target_top1']:.1f}% top-1 (the accuracy both reach), noise "
            f"±{found['noise']['margin']:.2f}{learning}")
    return Claim(name, table, statement, paper, ours, _describe(c) + _chosen(c), fit,
                 Verdict(found["verdict"], found["why"]))


def _chosen(c) -> str:
    """The baselines' regularization and how it was chosen
    (``conditions.per_model[model]["regularization"]``)."""
    parts = []
    for model, own in (getattr(c, "per_model", None) or {}).items():
        reg = own.get("regularization")
        if reg:
            v = reg["chosen"]
            parts.append(f"{model}: RandAugment {v['randaug_magnitude']}, dropout {v['dropout']}, "
                         f"mixup {v['mixup_alpha']} ({reg['how']})")
    return "; baselines' regularization: " + "; ".join(parts) if parts else ""


def architecture_alone_claim(result) -> Claim:
    """Tables 3 and 11: the architecture alone (Fused-MBConv in the early stages) makes V2 train
    faster than V1, both at a fixed size. On a CPU it may not: Fused-MBConv's gain is the
    accelerator's."""
    return _comparison_claim(result, "architecture_alone", "Tables 3, 11",
                             "EfficientNetV2 trains faster than EfficientNet, both at a fixed size",
                             "Fused-MBConv in stages 1-3: faster training steps on TPUv3 and V100 "
                             "(Table 3)")


def table10_claim(result) -> Claim:
    """Table 10: with the same progressive learning, V2 still trains faster than V1 (V2-M 13 h,
    B7 54 h)."""
    return _comparison_claim(result, "table10", "Table 10",
                             "EfficientNetV2 trains faster than EfficientNet, both with "
                             "Algorithm 1", _paper_time_to_accuracy())


def time_to_accuracy_claim(result) -> Claim:
    """Figure 1a, Table 7: EfficientNetV2 with progressive learning (Algorithm 1) reaches
    EfficientNet's accuracy (V1 trained at a fixed size) in less training time: V2 + Algorithm 1's
    seconds to the accuracy both reach, over V1's (:mod:`effnetv2_mini.study.verdict`)."""
    return _comparison_claim(result, "fig1a", "Fig. 1a, Table 7",
                             "EfficientNetV2 with progressive learning reaches EfficientNet's "
                             "accuracy in less training time", _paper_time_to_accuracy())


def _speed_by_size(curve: list[dict]) -> dict[int, float]:
    """Mean training images/s per image size over a run's epochs (``curve`` points with
    ``images_per_sec``)."""
    sizes = sorted({p["image_size"] for p in curve if p.get("images_per_sec")})
    return {s: statistics.mean(p["images_per_sec"] for p in curve
                               if p["image_size"] == s and p.get("images_per_sec"))
            for s in sizes}


def explain_time_to_accuracy(result) -> str:
    """Why a time-to-accuracy run's ratios are what they are, from its own numbers, as Markdown
    lines: per network, progressive learning's time against fixed-size training beside what
    counting pixels predicts (the schedule's mean of (size / last size)^2), and the last stage's
    images/s beside the fixed run's at the same size (a last stage slower than the fixed run eats
    the speed-up). Where a V1 target was never reached, says by how much."""
    lines = []
    for model, effect in result.per_model.items():
        rows = {(r["variant"], r["seed"]): r for r in result.rows if r["model"] == model}
        for p in effect["per_seed"]:
            fixed, prog = rows[("fixed", p["seed"])], rows[("progressive", p["seed"])]
            sizes = [q["image_size"] for q in prog["curve"]]
            predicted = statistics.mean((s / max(sizes)) ** 2 for s in sizes) if sizes else None
            speed_p, speed_f = _speed_by_size(prog["curve"]), _speed_by_size(fixed["curve"])
            line = (f"- {model}, seed {p['seed']}: progressive took **{p['time_ratio']:.2f}x** "
                    "the fixed-size time")
            if predicted:
                line += f" (pixels predict {predicted:.2f}x)"
            if p["top1_diff"] is not None:
                line += f" and ended **{p['top1_diff']:+.1f} points** from it"
            last = max(speed_p) if speed_p else None
            if last in speed_f:
                line += (f"; its last stage ({last} px) ran at {speed_p[last]:.0f} images/s "
                         f"against the fixed run's {speed_f[last]:.0f}; "
                         f"its first ({min(speed_p)} px) at {speed_p[min(speed_p)]:.0f}")
            lines.append(line + ".")
    for p in result.v2_progressive_time_to_v1_fixed_accuracy.get("per_seed", []):
        if p["ratio"] is None:
            lines.append(f"- Seed {p['seed']}: V2 with Algorithm 1 ended at "
                         f"{p['v2_progressive_final_top1']:.1f}%, "
                         f"below V1 fixed-size's {p['target_top1']:.1f}%: the headline ratio "
                         "needs more epochs or a stronger V2 run at this scale.")
    return "\n".join(lines) or "- No fixed-size and progressive runs to compare in this result."


def leaderboard_line(result, board: dict) -> str:
    """The best final top-1 of ``result`` beside the leaderboard rows (``board``: a reference table
    of rows with size, epochs, top1) at the nearest size, when the run trained on photos; "" for the
    built-in data set."""
    c = result.conditions
    finals = [r for r in result.rows if r["final_top1"] is not None]
    if not finals or is_built_in(c.dataset) or not board.get("rows"):
        return ""
    best = max(finals, key=lambda r: r["final_top1"])
    size = max(c.image_sizes)
    near = min(board["rows"], key=lambda r: (abs(r["size"] - size), r["epochs"]))
    return (f"- Best run: {best['model']} {best['variant']} (seed {best['seed']}), "
            f"**{best['final_top1']:.1f}%** after {c.epochs} epochs at {size} px on "
            f"{c.device_name}; the Imagenette leaderboard's {near['size']} px, "
            f"{near['epochs']}-epoch row: {near['top1']}% ({near['entry']}, {near['runs']} runs, "
            "on GPUs).")


def progressive_each_claim(result) -> Claim:
    """Section 6.2, Table 12: progressive learning speeds up every network it was tried on
    (ResNets, EfficientNets; 1.4x to 2.8x) and never lowers its accuracy. Per network
    (:func:`effnetv2_mini.study.verdict.compare`): the time to the accuracy both runs reach, and
    the final accuracy difference (labelled still learning while the runs still learn). Agrees only
    if every network agrees; contradicts if any does."""
    c = result.conditions
    rows = paper_table("table12")["rows"]
    gains = [r["progressive_top1"] - r["baseline_top1"] for r in rows]
    paper = (", ".join(f"{r['model']} {r['baseline_hours'] / r['progressive_hours']:.2f}x"
                       for r in rows) + f"; top-1 {min(gains):+.1f} to {max(gains):+.1f} points")
    each = comparisons(result)["table12"]
    per_model = each["per_model"]
    if not per_model:
        verdict = Verdict(NO_SIGNAL, "no network trained")
    else:
        verdict = Verdict(each["verdict"], "; ".join(
            f"{m}: {e['why']}" + (f"; accuracy: {e['accuracy_why']}" if "accuracy_why" in e else "")
            for m, e in per_model.items()))
    ours = ", ".join(f"{m} {e['ratio']:.2f}x the time to {e['target_top1']:.1f}%, "
                     f"{e['top1_diff']:+.1f} points ({e['accuracy_verdict']})"
                     for m, e in per_model.items() if e.get("ratio") is not None) or "-"
    return Claim("progressive_each", "Table 12",
                 "progressive learning speeds up each network at no loss of accuracy", paper, ours,
                 _describe(c) + _chosen(c), _timed_training_comparable(c), verdict)


def _speed_verdict(row: dict, mode: str) -> str:
    """"faster" / "slower" / "unclear" for V2 against V1 in ``mode``: beyond both timing ranges and
    by more than :data:`SPEED_MARGIN`."""
    v2, v1, speedup = row[f"v2_{mode}_range"], row[f"v1_{mode}_range"], row[f"{mode}_speedup"]
    if v2[0] > v1[1] and speedup > 1 + SPEED_MARGIN:
        return "faster"
    if v1[0] > v2[1] and speedup < 1 / (1 + SPEED_MARGIN):
        return "slower"
    return "unclear"


def table11_claim(result) -> Claim:
    """Section 6.1, Table 11: scaled down to V1's sizes, EfficientNetV2 is faster than EfficientNet
    at similar size (V100 inference 2x-3x). Judged on inference images/s per pair (V2-Bx vs V1-Bx),
    beyond the timing spread."""
    c, rows = result.conditions, result.rows
    paper = (", ".join(f"{r['v2_model']} {r['v2_images_per_sec']} "
                       f"vs {r['v1_model']} {r['v1_images_per_sec']}"
                       for r in paper_table("table11")["rows"])
             + " img/s (V100 FP16 inference, batch 128)")
    speeds = [_speed_verdict(r, "eval") for r in rows]
    if not rows:
        verdict = Verdict(NO_SIGNAL, "nothing timed")
    elif "slower" in speeds:
        slow = [r["v2_model"] for r, s in zip(rows, speeds) if s == "slower"]
        verdict = Verdict(CONTRADICTS, "inference slower than V1 beyond the timing spread: "
                                       f"{', '.join(slow)}")
    elif set(speeds) == {"faster"}:
        verdict = Verdict(AGREES, "every V2-Bx infers faster than V1-Bx beyond the timing spread")
    else:
        verdict = Verdict(NO_SIGNAL, "some pairs' timing ranges overlap or differ by under 5%")
    ours = ", ".join(f"{r['v2_model']} / {r['v1_model']}: inference {r['eval_speedup']:.2f}x, "
                     f"training {r['train_speedup']:.2f}x" for r in rows) or "-"
    return Claim("table11", "Table 11",
                 "EfficientNetV2 scaled down to V1's sizes is faster than EfficientNet", paper,
                 ours, _describe(c) + f", batch {result.batch_size}", _timed_like_the_paper(c),
                 verdict)


_CLAIMS = {"ArchitectureResult": [counts_claim], "TrainingResult": [training_claim],
           "Table2Result": [table2_claim], "Table3Result": [table3_claim],
           "PerStageResult": [per_stage_claim], "NasResult": [nas_claims],
           "Table5Result": [table5_claim],
           "ProgressiveResult": [table6_claim, speedup_claim, adaptive_claim],
           "TransferResult": [transfer_claim], "ScalingResult": [],
           "TimeToAccuracyResult": [architecture_alone_claim, table10_claim, time_to_accuracy_claim,
                                    progressive_each_claim], "Table11Result": [table11_claim]}


def claims_for(result) -> list[Claim]:
    """Every claim a result speaks to. A rehearsal's numbers (one or two steps) show only that the
    code runs: its verdicts are "no signal", except the parameter and FLOP counts, which do not
    depend on training."""
    claims = []
    for make in _CLAIMS.get(type(result).__name__, []):
        made = make(result)
        claims += made if isinstance(made, list) else [made]
    if result.conditions.rehearsal:
        claims = [c if c.key == "counts" or c.verdict.label == NOT_APPLICABLE else
                  dataclasses.replace(c, verdict=Verdict(
                      NO_SIGNAL, "a rehearsal: one or two steps show only that it runs"))
                  for c in claims]
    elif len(result.conditions.seeds) < 2:
        claims = [dataclasses.replace(c, verdict=Verdict(c.verdict.label, c.verdict.why + ONE_SEED))
                  if c.key in COMPARED_RUNS and c.verdict.label in (AGREES, CONTRADICTS) else c
                  for c in claims]
    return claims


# Claims decided by comparing trained runs with each other: with one seed, their noise is the
# validation set's sampling error alone, and the run-to-run spread (often larger on small runs) is
# not known.
COMPARED_RUNS = ("table5", "speedup", "adaptive", "transfer", "time_to_accuracy",
                 "progressive_each", "architecture_alone", "table10")


def conclusion(claims: list[Claim]) -> str:
    """The verdicts as a few lines a notebook ends with: what ours says about each claim, and
    whether it was measured in the paper's setting."""
    lines = []
    for c in claims:
        setting = ("in the paper's setting" if c.comparable.label == "yes" else
                   f"not the paper's setting: {c.comparable.why}")
        lines.append(f"- {c.table}: {c.statement}. Ours: {c.ours}. "
                     f"Verdict: {c.verdict.label.upper()} ({c.verdict.why}); {setting}.")
    return "\n".join(lines)
