"""Notebook 07's four comparisons, each with its own verdict, from the same runs.

The paper's "trains faster" (abstract, Figure 1a) mixes two causes: the architecture
(Fused-MBConv, Tables 3 and 11) and Algorithm 1 (progressive learning, section 4). It makes four
comparisons, kept apart here:

- ``architecture_alone``: V2 against V1, both at a fixed size (Tables 3, 11: V2 trains faster);
- ``table10``: V2 against V1, both with Algorithm 1 (Table 10: V2-M 13 h against B7's 54 h);
- ``fig1a``: V2 with Algorithm 1 against V1 at a fixed size (Figure 1a, Table 7);
- ``table12``: each network, Algorithm 1 against its fixed-size baseline (1.4x-2.8x faster, +0.2
  to +0.3 points; Table 12).

Each compares the **time to an accuracy both runs reach**: the lower of the two runs' final
top-1s, per seed (:func:`time_to_common_accuracy`). The ratio (the run claimed faster over the
other) is judged against a **margin from measurement** (:func:`time_margin`): the machine's drift
during the runs (a speed probe before the first run and after each) and the seeds' spread,
whichever is larger, never below the drift. Each run also records its **regime**
(:func:`regime`): how much its last epoch gained; runs still learning cannot make an accuracy
*difference* agree (Table 12's "accuracy never lower"), while their time to an accuracy stays a
valid measure.

Pure functions of a :class:`~effnetv2_mini.study.experiments.faster.TimeToAccuracyResult` (or its
rows): a reader can check them on numbers of their own.
"""

from __future__ import annotations

import math
import statistics

from .experiments.faster import time_to_reach
from .reference import paper_table

__all__ = ["AGREES", "CONTRADICTS", "NO_SIGNAL", "CHANCE_MARGIN_POINTS", "ONE_SEED",
           "accuracy_noise", "difference_noise", "STILL_LEARNING", "FAR_LARGER", "P_VALUE_LIMIT",
           "ASSUMED_MARGIN", "COMPARISONS", "time_margin", "measured_drift", "last_gain", "regime",
           "time_to_common_accuracy", "compare", "comparisons", "headline", "how_decided"]

AGREES, CONTRADICTS, NO_SIGNAL = "agrees", "contradicts", "no signal"
STILL_LEARNING = "still learning"
# at chance: within twice the binomial noise plus this many points of 100 / classes
CHANCE_MARGIN_POINTS = 1.0
ONE_SEED = ("; one seed: the run-to-run spread is not measured, only the validation set's "
            "sampling error")
FAR_LARGER = 5  # an effect more than 5x the paper's is flagged, with the likely reason
P_VALUE_LIMIT = 0.05  # rank claims over few candidates (notebook 04): above it, no signal
ASSUMED_MARGIN = 0.05  # only for results that recorded no drift (older runs): labelled "assumed"
GAIN_EPOCHS = 1  # the regime: the gain over the last epoch

# name -> (run claimed faster, the other run, the paper's claim); "v2"/"v1" stand for the result's
# pair
COMPARISONS = {
    "architecture_alone": (("v2", "fixed"), ("v1", "fixed"),
                           "V2 trains faster than V1, both at a fixed size "
                           "(Fused-MBConv; Tables 3, 11)"),
    "table10": (("v2", "progressive"), ("v1", "progressive"),
                "V2 trains faster than V1, both with Algorithm 1 (Table 10)"),
    "fig1a": (("v2", "progressive"), ("v1", "fixed"),
              "V2 with Algorithm 1 trains faster than V1 at a fixed size (Figure 1a, Table 7)"),
}


# ---- noise and regime ---------------------------------------------------------------------------

def accuracy_noise(top1: float, val_images: int | None) -> float | None:
    """Binomial standard error (in points) of an accuracy measured on ``val_images`` images."""
    if not val_images:
        return None
    p = min(max(top1 / 100, 0.0), 1.0)
    return 100 * math.sqrt(max(p * (1 - p), 1e-4) / val_images)


def difference_noise(a: list[float], b: list[float], val_images: int | None) -> float:
    """How large a difference of the means of ``a`` and ``b`` (accuracies of several seeds each)
    must be to count: twice its standard error, from the seeds' spread when there are at least
    two of each, else from the binomial error of each accuracy. Infinite when neither is known."""
    if len(a) >= 2 and len(b) >= 2:
        se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
        binomial = [accuracy_noise(x, val_images) for x in (statistics.mean(a), statistics.mean(b))]
        # several seeds that happen to agree closely must not look noiseless
        if None not in binomial:
            se = max(se, math.sqrt(binomial[0] ** 2 / len(a) + binomial[1] ** 2 / len(b)))
        return 2 * se
    errors = [accuracy_noise(statistics.mean(x), val_images) for x in (a, b)]
    if None in errors:
        return math.inf
    return 2 * math.sqrt(errors[0] ** 2 + errors[1] ** 2)



def measured_drift(probes: list[float] | None) -> float | None:
    """How much the machine's speed moved during the runs: (fastest - slowest) / slowest of the
    speed probes (images/s of one fixed small training step, before the first run and after
    each). A time ratio between two runs can be off by this fraction from speed changes alone.
    None with fewer than two probes."""
    probes = [p for p in probes or [] if p]
    if len(probes) < 2:
        return None
    return (max(probes) - min(probes)) / min(probes)


def time_margin(ratios: list[float], drift: float | None) -> dict:
    """The noise of a mean time ratio: ``margin`` = max(``drift``, ``seed_spread``), the seeds'
    spread being twice the standard error of ``ratios`` (two seeds or more, else 0). Never below
    the measured drift. Without a measured drift (older results), :data:`ASSUMED_MARGIN`,
    labelled as assumed."""
    spread = 2 * statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) >= 2 else 0.0
    floor, source = ((drift, "measured drift") if drift is not None
                     else (ASSUMED_MARGIN, "assumed (no drift measured)"))
    margin = max(floor, spread)
    return {"margin": margin, "drift": drift, "seed_spread": spread if len(ratios) >= 2 else None,
            "from": "seed spread" if spread > floor else source}


def last_gain(curve: list[dict], epochs: int = GAIN_EPOCHS) -> float | None:
    """Top-1 points gained over a run's last ``epochs`` evaluated epochs; None with too few."""
    top1 = [p["top1"] for p in curve if p.get("top1") is not None]
    return top1[-1] - top1[-1 - epochs] if len(top1) > epochs else None


def regime(runs: list[dict], val_images: int | None) -> dict:
    """Whether the runs were still learning when they stopped: a run whose last epoch gained more
    than the noise of a difference of two accuracies on ``val_images`` images
    (:func:`~effnetv2_mini.study.claims.difference_noise`) is still learning. ``last_gains``: per
    run, points; ``still_learning``: any run is."""
    gains, learning = {}, False
    for run in runs:
        gain = last_gain(run["curve"])
        key = f"{run['model']} {run['variant']} s{run['seed']}"
        gains[key] = gain
        if gain is not None and run["final_top1"] is not None:
            noise = difference_noise([run["final_top1"]], [run["final_top1"] - gain], val_images)
            learning = learning or gain > noise
    return {"still_learning": learning, "last_gains": gains,
            "rule": f"a run is still learning if its last {GAIN_EPOCHS} epoch(s) gained more than "
                    "the noise of a difference of two accuracies (twice its binomial standard "
                    "error)"}


# ---- one comparison -----------------------------------------------------------------------------

def _run(rows: list[dict], model: str, name: str, seed: int) -> dict | None:
    return next((r for r in rows
                 if r["model"] == model and r["variant"] == name and r["seed"] == seed), None)


def time_to_common_accuracy(fast: dict, slow: dict) -> dict | None:
    """Per seed: the accuracy both runs reach (the lower final top-1), the seconds each needs to
    first reach it (:func:`~effnetv2_mini.study.experiments.faster.time_to_reach`) and ``ratio``
    = ``fast``'s over ``slow``'s."""
    if fast["final_top1"] is None or slow["final_top1"] is None:
        return None
    target = min(fast["final_top1"], slow["final_top1"])
    fast_s, slow_s = time_to_reach(fast["curve"], target), time_to_reach(slow["curve"], target)
    if not fast_s or not slow_s:
        return None
    return {"seed": fast["seed"], "target_top1": target, "seconds": fast_s,
            "baseline_seconds": slow_s,
            "ratio": fast_s / slow_s, "top1_diff": fast["final_top1"] - slow["final_top1"],
            "final_top1": fast["final_top1"], "baseline_final_top1": slow["final_top1"]}


def compare(rows: list[dict], fast: tuple[str, str], slow: tuple[str, str], *, drift: float | None,
            val_images: int | None, chance: float | None, claim: str,
            paper_top1_gain: float | None = None) -> dict:
    """One comparison: run ``fast`` (model, variant) against ``slow`` per seed, at the accuracy both
    reach. ``verdict``: agrees (ratio below 1 by more than the noise), contradicts (above), no
    signal. With ``paper_top1_gain`` (the paper also claims accuracy not lower, Table 12):
    ``accuracy_verdict`` says contradicts if lower beyond noise, still learning if any run still
    learns, else agrees (not lower beyond noise)."""
    seeds = list(dict.fromkeys(r["seed"] for r in rows))
    runs = [r for s in seeds for r in (_run(rows, *fast, s), _run(rows, *slow, s)) if r is not None]
    pairs = [p for s in seeds if _run(rows, *fast, s) and _run(rows, *slow, s)
             for p in [time_to_common_accuracy(_run(rows, *fast, s), _run(rows, *slow, s))] if p]
    out = {"claim": claim, "faster": " ".join(fast), "baseline": " ".join(slow), "per_seed": pairs,
           "accuracy_rule": "the lower of the two runs' final top-1 (per seed): the accuracy "
                            "both reach",
           "regime": regime(runs, val_images)}
    finals = [r["final_top1"] for r in runs if r["final_top1"] is not None]
    if not pairs:
        return {**out, "ratio": None, "noise": None, "target_top1": None,
                "verdict": NO_SIGNAL, "why": "no pair of finished runs"}
    ratios = [p["ratio"] for p in pairs]
    noise = time_margin(ratios, drift)
    ratio, target = statistics.mean(ratios), statistics.mean(p["target_top1"] for p in pairs)
    out.update(ratio=ratio, noise=noise, target_top1=target)
    if paper_top1_gain is not None:
        out.update(_accuracy_part(pairs, out["regime"], val_images, paper_top1_gain))
    if chance is not None and all(f - chance <= 2 * (accuracy_noise(chance, val_images) or 1.0)
                                  + CHANCE_MARGIN_POINTS for f in finals):
        at_chance = f"both at chance level ({chance:.0f}%)"
        if paper_top1_gain is not None:
            out.update(accuracy_verdict=NO_SIGNAL, accuracy_why=at_chance)
        return {**out, "verdict": NO_SIGNAL, "time_verdict": NO_SIGNAL, "why": at_chance}
    at = (f"to {target:.1f}% top-1 in {ratio:.2f}x the time "
          f"(noise ±{noise['margin']:.2f}, {noise['from']})")
    verdict = (AGREES if ratio < 1 - noise["margin"] else
               CONTRADICTS if ratio > 1 + noise["margin"] else NO_SIGNAL)
    out.update(verdict=verdict, time_verdict=verdict,
               why={AGREES: f"faster {at}", CONTRADICTS: f"slower {at}",
                    NO_SIGNAL: f"within noise of parity: {at}"}[verdict])
    if paper_top1_gain is not None:
        if out["accuracy_verdict"] == CONTRADICTS:
            out.update(verdict=CONTRADICTS, why=out["why"] + "; " + out["accuracy_why"])
    return out


def _accuracy_part(pairs: list[dict], run_regime: dict, val_images: int | None,
                   paper_gain: float) -> dict:
    """Table 12's second half: the final accuracy is not lower (the paper: ``paper_gain`` points
    higher at most). An effect more than :data:`FAR_LARGER` x the paper's is flagged with its
    likely reason."""
    ours = [p["final_top1"] for p in pairs]
    base = [p["baseline_final_top1"] for p in pairs]
    diff = statistics.mean(ours) - statistics.mean(base)
    noise = difference_noise(ours, base, val_images)
    said = f"{diff:+.1f} points (noise ±{noise:.1f}; the paper: at most {paper_gain:+.1f})"
    if diff < -noise:
        label, why = CONTRADICTS, f"less accurate: {said}"
    elif run_regime["still_learning"]:
        label, why = STILL_LEARNING, (f"{said}, but the runs were still learning: a final-accuracy "
                                      "difference between unfinished runs says little about "
                                      "converged ones")
    else:
        label, why = AGREES, f"not less accurate beyond noise: {said}"
    far = abs(diff) > FAR_LARGER * paper_gain
    if far:
        why += (f"; {abs(diff) / paper_gain:.0f}x the paper's largest gain: short runs from a weak "
                "start, not the paper's converged ImageNet trainings, so this is not the paper's "
                "effect")
    return {"top1_diff": diff, "top1_noise": noise, "accuracy_verdict": label, "accuracy_why": why,
            "far_larger": far}


# ---- the four comparisons and the headline ------------------------------------------------------

def comparisons(result) -> dict:
    """The four comparisons of a time-to-accuracy result (see the module docstring):
    ``architecture_alone``, ``table10``, ``fig1a`` (each a :func:`compare` dict; None without a
    V2 / V1 pair) and ``table12`` (``ratio``, ``noise``, ``regime``: per network; ``verdict``:
    agrees only if every network agrees, contradicts if any does; ``per_model``: each network's
    :func:`compare` dict)."""
    c = result.conditions
    drift = measured_drift(getattr(result, "speed_probes", None))
    common = dict(drift=drift, val_images=c.val_images, chance=c.chance)
    names = {"v2": result.v2_model, "v1": result.v1_model}
    out = {}
    for key, (fast, slow, claim) in COMPARISONS.items():
        pair = result.v2_model and result.v1_model
        out[key] = (compare(result.rows, (names[fast[0]], fast[1]), (names[slow[0]], slow[1]),
                            claim=claim, **common) if pair else None)
    paper_gain = max(r["progressive_top1"] - r["baseline_top1"]
                     for r in paper_table("table12")["rows"])
    each = {m: compare(result.rows, (m, "progressive"), (m, "fixed"), paper_top1_gain=paper_gain,
                       claim=f"{m}: Algorithm 1 trains faster than a fixed size, no less accurate "
                             "(Table 12)",
                       **common) for m in result.models}
    labels = {e["verdict"] for e in each.values()}
    verdict = CONTRADICTS if CONTRADICTS in labels else AGREES if labels == {AGREES} else NO_SIGNAL
    out["table12"] = {"ratio": {m: e.get("ratio") for m, e in each.items()},
                      "noise": {m: e.get("noise") for m, e in each.items()},
                      "regime": {m: e["regime"] for m, e in each.items()},
                      "verdict": verdict,
                      "why": "; ".join(f"{m}: {e['why']}" for m, e in each.items()),
                      "per_model": each}
    out["drift"] = drift
    return out


def headline(result, found: dict | None = None) -> str:
    """One sentence: which part of V2 + Algorithm 1's speed-up over V1 at a fixed size comes from
    the architecture and which from Algorithm 1 on the machine at hand (total = architecture x
    Algorithm 1 on V2, each at the accuracy its own pair reaches)."""
    found = found or comparisons(result)
    total, arch = found.get("fig1a"), found.get("architecture_alone")
    alg = found["table12"]["per_model"].get(result.v2_model or "")
    machine = result.conditions.device_name or result.conditions.device or "this machine"
    if not total or not arch or not alg or None in (total.get("ratio"), arch.get("ratio"),
                                                     alg.get("ratio")):
        return (f"On {machine}: no V2 / V1 pair with finished runs, so no decomposition of the "
                "speed-up.")
    parts = {"the architecture": arch, "Algorithm 1": alg}
    helped = [name for name, p in parts.items() if p["time_verdict"] == AGREES]
    hurt = [name for name, p in parts.items() if p["time_verdict"] == CONTRADICTS]
    source = (" and ".join(helped) + (" (both)" if len(helped) == 2 else "")
              if helped else "neither part")
    sentence = (f"On {machine}, {result.v2_model} with Algorithm 1 took {total['ratio']:.2f}x the "
                f"time of {result.v1_model} at a fixed size to reach {total['target_top1']:.1f}% "
                f"top-1 ({total['verdict']}); the architecture alone: {arch['ratio']:.2f}x "
                f"({arch['verdict']}), Algorithm 1 on {result.v2_model}: {alg['ratio']:.2f}x "
                f"({alg['time_verdict']}); their product {arch['ratio'] * alg['ratio']:.2f}x, each "
                f"at its own pair's accuracy. The speed-up comes from {source}")
    if hurt:
        sentence += "; " + " and ".join(hurt) + " made training slower here"
    return sentence + "."


def how_decided() -> list[str]:
    """The rules every verdict of the report follows, one Markdown list item each (without its
    bullet), from this module's own constants."""
    return [
        "**Noise of an accuracy**: twice the binomial standard error of an accuracy measured on "
        "the validation images; with two seeds or more, twice the standard error of the seeds' "
        "spread, never below the binomial one. A difference inside its noise is **no signal**.",
        "**Noise of a time ratio**: the larger of the machine's measured drift during the runs "
        "(a speed probe before the first run and after each: (fastest - slowest) / slowest) and "
        "twice the standard error of the seeds' ratios; never below the measured drift. Results "
        f"without a probe use {ASSUMED_MARGIN:.0%}, labelled assumed. A ratio within it of 1 is "
        "**no signal**.",
        "**Time to an accuracy**: the lower of the two runs' final top-1 (the accuracy both "
        "reach), the first epoch end at or above it; the ratio is the run the paper calls faster "
        "over the other.",
        "**Chance**: a claim whose accuracies all lie within twice the binomial noise plus "
        f"{CHANCE_MARGIN_POINTS:g} point of chance (100 / classes) is **no signal**: nothing was "
        "learnt to compare.",
        f"**Still learning**: a run whose last {GAIN_EPOCHS} epoch(s) gained more than the noise "
        "of a difference of two accuracies is still learning; a final-accuracy *difference* "
        f"between such runs is labelled **{STILL_LEARNING}** and never agrees; times to an "
        "accuracy stay valid and name that accuracy.",
        f"**Far larger than the paper's**: an effect more than {FAR_LARGER}x the paper's is "
        "flagged, with the likely reason (short runs, a different start), as not the paper's "
        "effect.",
        f"**Rank claims over few candidates**: a p-value above {P_VALUE_LIMIT} is **no signal**.",
        f"**One seed**: the verdict says so ({ONE_SEED.strip('; ')}).",
        "**Comparable**: only a run in the paper's setting (data set, epochs, recipe, batch, "
        "device) can reproduce the paper's number; every other verdict is about the claim at our "
        "scale.",
    ]
