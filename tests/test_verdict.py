"""Notebook 07's four comparisons (effnetv2_mini.study.verdict) and their claims on hand-made runs:
every verdict (agrees, contradicts, no signal, still learning), the time margin against the
measured drift, the regime, the headline's decomposition, and the photos held out of the training
split. Expected values are worked out by hand in the comments."""

import pytest
import torch
from PIL import Image

from effnetv2_mini.data.holdout import hold_out
from effnetv2_mini.study.claims import (
    architecture_alone_claim,
    claims_for,
    progressive_each_claim,
    table10_claim,
    time_ratio_verdict,
    time_to_accuracy_claim,
)
from effnetv2_mini.study.experiments import Conditions
from effnetv2_mini.study.experiments.faster import TimeToAccuracyResult
from effnetv2_mini.study.verdict import (
    FAR_LARGER,
    STILL_LEARNING,
    compare,
    comparisons,
    headline,
    how_decided,
    last_gain,
    measured_drift,
    regime,
    time_margin,
)


def run(model, variant, seed, points):
    """(cumulative seconds, top-1) per epoch -> a run row (final top-1: the last epoch's)."""
    curve = [{"epoch": i + 1, "wall_time": s, "top1": t} for i, (s, t) in enumerate(points)]
    return {
        "model": model,
        "variant": variant,
        "seed": seed,
        "final_top1": points[-1][1],
        "train_seconds": points[-1][0],
        "curve": curve,
    }


def conditions(**fields):
    values = dict(
        profile="laptop",
        model="v2,v1",
        dataset="imagefolder",
        num_classes=10,
        val_images=4000,
        epochs=3,
        seeds=[0, 1],
        device="cpu",
        device_name="x86_64",
        recipe="short",
    )
    return Conditions(**{**values, **fields})


def result(rows, probes=(100.0, 104.0, 98.0), **fields):
    return TimeToAccuracyResult(
        conditions(**fields),
        models=["v2", "v1"],
        v2_model="v2",
        v1_model="v1",
        rows=rows,
        speed_probes=list(probes),
    )


# Converged runs (last epoch gains 0.5 point at most, below the noise of about 2.2 points on 4000
# images), two
# seeds. Seconds to 60%: V1 fixed 300, V2 fixed 150, V1 progressive 200, V2 progressive 100.
CONVERGED = [
    row
    for seed in (0, 1)
    for row in (
        run("v2", "fixed", seed, [(50.0, 50.0), (100.0, 59.6), (150.0, 60.0)]),
        run("v2", "progressive", seed, [(30.0, 45.0), (60.0, 59.8), (100.0, 60.2)]),
        run("v1", "fixed", seed, [(100.0, 50.0), (200.0, 59.5), (300.0, 60.0)]),
        run("v1", "progressive", seed, [(60.0, 45.0), (130.0, 59.7), (200.0, 60.1)]),
    )
]


# ---- noise: the margin is measured, never below the drift ---------------------------------------


def test_the_time_margin_cannot_fall_below_the_measured_drift():
    # no seed spread: the drift
    assert time_margin([0.5, 0.5], drift=0.3)["margin"] == pytest.approx(0.3)
    # one seed: the drift alone
    assert time_margin([0.5], drift=0.2)["margin"] == pytest.approx(0.2)
    # seeds 0.4 and 0.6: stdev 0.1414, 2 SE = 2 * 0.1414 / sqrt(2) = 0.2 > drift 0.01
    wide = time_margin([0.4, 0.6], drift=0.01)
    assert wide["margin"] == pytest.approx(0.2) and wide["from"] == "seed spread"
    for ratios in ([0.9, 0.91], [1.0], [0.2, 0.3, 0.25], [1.5, 1.5]):
        for drift in (0.0, 0.07, 0.4, 1.2):
            assert time_margin(ratios, drift)["margin"] >= drift
    assumed = time_margin([0.5, 0.5], drift=None)
    assert assumed["margin"] == pytest.approx(0.05) and assumed["from"].startswith("assumed")


def test_measured_drift_is_the_spread_of_the_speed_probes():
    assert measured_drift([100.0, 80.0, 120.0]) == pytest.approx(0.5)  # (120 - 80) / 80
    assert (
        measured_drift([100.0]) is None
        and measured_drift([]) is None
        and measured_drift(None) is None
    )


def test_time_ratio_verdict_uses_the_drift():
    assert time_ratio_verdict([0.5, 0.4], drift=0.02) == "faster"  # mean 0.45, 2 SE 0.1
    # 20% faster, but the machine drifted 30%
    assert time_ratio_verdict([0.8, 0.8], drift=0.3) == "unclear"
    assert time_ratio_verdict([1.3, 1.4], drift=0.1) == "slower"


# ---- the regime ---------------------------------------------------------------------------------


def test_last_gain_and_still_learning():
    assert last_gain(run("m", "fixed", 0, [(1.0, 40.0), (2.0, 48.0)])["curve"]) == pytest.approx(
        8.0
    )
    assert last_gain(run("m", "fixed", 0, [(1.0, 40.0)])["curve"]) is None
    # gain 8 points at about 48%: the noise of a difference on 4000 images is 2 * sqrt(2) *
    # 0.79 = 2.2 points
    learning = regime([run("m", "fixed", 0, [(1.0, 40.0), (2.0, 48.0)])], 4000)
    assert learning["still_learning"] and learning["last_gains"] == {
        "m fixed s0": pytest.approx(8.0)
    }
    assert not regime([run("m", "fixed", 0, [(1.0, 47.0), (2.0, 48.0)])], 4000)["still_learning"]


# ---- each comparison: agrees, contradicts, no signal --------------------------------------------


def test_the_four_comparisons_on_converged_runs_agree():
    found = comparisons(result(CONVERGED))  # drift (104 - 98) / 98 = 0.061
    assert found["drift"] == pytest.approx(6 / 98)
    # architecture alone: V2 fixed vs V1 fixed at 60.0%: 150 / 300
    arch = found["architecture_alone"]
    assert (arch["ratio"], arch["target_top1"], arch["verdict"]) == (
        pytest.approx(0.5),
        60.0,
        "agrees",
    )
    assert arch["noise"]["margin"] == pytest.approx(6 / 98) and not arch["regime"]["still_learning"]
    # Table 10: V2 progressive vs V1 progressive, at min(60.2, 60.1) = 60.1: V2 reaches it at
    # 100 s, V1 at 200 s
    assert (found["table10"]["ratio"], found["table10"]["target_top1"]) == (
        pytest.approx(0.5),
        60.1,
    )
    # Figure 1a: V2 progressive vs V1 fixed at 60.0: 100 / 300
    assert found["fig1a"]["ratio"] == pytest.approx(1 / 3) and found["fig1a"]["verdict"] == "agrees"
    # Table 12: V2 progressive vs fixed at 60.0: 100 / 150; +0.2 points, converged, within
    # noise and >= 0
    v2 = found["table12"]["per_model"]["v2"]
    assert v2["ratio"] == pytest.approx(2 / 3) and v2["verdict"] == "agrees"
    assert v2["top1_diff"] == pytest.approx(0.2) and v2["accuracy_verdict"] == "agrees"
    assert found["table12"]["verdict"] == "agrees" and set(found["table12"]["ratio"]) == {
        "v2",
        "v1",
    }
    claims = claims_for(result(CONVERGED))
    assert [c.key for c in claims] == [
        "architecture_alone",
        "table10",
        "time_to_accuracy",
        "progressive_each",
    ]
    assert {c.verdict.label for c in claims} == {"agrees"}


def test_the_architecture_alone_contradicts_while_algorithm_1_agrees():
    """The laptop run's shape (issue 33): at a fixed size V2 is slower than V1; Algorithm 1 makes up
    for it."""
    rows = [
        row
        for seed in (0, 1)
        for row in (
            run("v2", "fixed", seed, [(300.0, 50.0), (650.0, 59.8), (1000.0, 60.0)]),
            run("v2", "progressive", seed, [(100.0, 45.0), (200.0, 59.8), (360.0, 60.0)]),
            run("v1", "fixed", seed, [(300.0, 50.0), (600.0, 59.8), (950.0, 60.0)]),
            run("v1", "progressive", seed, [(80.0, 45.0), (150.0, 59.9), (230.0, 60.0)]),
        )
    ]
    r = result(rows, probes=(100.0, 101.0))  # drift 0.01
    found = comparisons(r)
    assert found["architecture_alone"]["verdict"] == "contradicts"  # 1000 / 950 = 1.053 > 1.01
    assert found["table10"]["verdict"] == "contradicts"  # 360 / 230 = 1.57
    assert found["fig1a"]["verdict"] == "agrees"  # 360 / 950 = 0.38
    assert found["table12"]["per_model"]["v2"]["verdict"] == "agrees"  # 360 / 1000
    assert architecture_alone_claim(r).verdict.label == "contradicts"
    assert (
        table10_claim(r).verdict.label == "contradicts"
        and time_to_accuracy_claim(r).verdict.label == "agrees"
    )
    sentence = headline(r, found)
    assert "0.38x" in sentence and "architecture alone: 1.05x (contradicts)" in sentence
    assert "Algorithm 1 on v2: 0.36x (agrees)" in sentence
    assert "their product 0.38x" in sentence  # 1000 / 950 x 360 / 1000 = 0.379
    assert (
        "comes from Algorithm 1" in sentence
        and "the architecture made training slower here" in sentence
    )


def test_parity_within_the_drift_is_no_signal():
    rows = [
        run("v2", "fixed", 0, [(50.0, 55.0), (100.0, 60.0)]),
        run("v1", "fixed", 0, [(55.0, 55.0), (105.0, 60.0)]),
    ]
    found = compare(
        rows, ("v2", "fixed"), ("v1", "fixed"), drift=0.08, val_images=4000, chance=10.0, claim="x"
    )
    # 100 / 105 = 0.952: faster by 4.8%, inside the measured drift of 8%
    assert found["ratio"] == pytest.approx(100 / 105) and found["verdict"] == "no signal"
    sharper = compare(
        rows, ("v2", "fixed"), ("v1", "fixed"), drift=0.02, val_images=4000, chance=10.0, claim="x"
    )
    assert sharper["verdict"] == "agrees"


def test_runs_at_chance_are_no_signal():
    rows = [
        run("v2", "fixed", 0, [(50.0, 10.0), (100.0, 10.5)]),
        run("v1", "fixed", 0, [(90.0, 9.8), (200.0, 10.2)]),
    ]
    found = compare(
        rows, ("v2", "fixed"), ("v1", "fixed"), drift=0.01, val_images=4000, chance=10.0, claim="x"
    )
    assert (
        found["ratio"] == pytest.approx(0.5)
        and found["verdict"] == "no signal"
        and "chance" in found["why"]
    )


def test_no_finished_pair_is_no_signal():
    found = comparisons(result([run("v2", "fixed", 0, [(50.0, 60.0)])]))
    assert (
        found["architecture_alone"]["verdict"] == "no signal"
        and found["architecture_alone"]["ratio"] is None
    )
    assert architecture_alone_claim(result([])).verdict.label == "no signal"


# ---- Table 12: the accuracy half and its regime -------------------------------------------------


def test_an_accuracy_gain_of_runs_still_learning_is_labelled_and_flagged_as_far_larger():
    """Issue 33's laptop numbers: progressive +8 points, both runs still climbing several points an
    epoch."""
    rows = [
        run("v2", "fixed", 0, [(300.0, 30.0), (600.0, 38.0), (900.0, 45.0)]),
        run("v2", "progressive", 0, [(100.0, 35.0), (200.0, 46.0), (350.0, 53.0)]),
    ]
    found = compare(
        rows,
        ("v2", "progressive"),
        ("v2", "fixed"),
        drift=0.05,
        val_images=4000,
        chance=10.0,
        claim="x",
        paper_top1_gain=0.5,
    )
    # time to 45%: progressive first reaches it at 200 s (46%), fixed at 900 s: 0.22x, agrees
    assert found["ratio"] == pytest.approx(200 / 900) and found["verdict"] == "agrees"
    assert found["regime"]["still_learning"] and found["top1_diff"] == pytest.approx(8.0)
    assert found["accuracy_verdict"] == STILL_LEARNING != "agrees"
    # 8 points is 16x the paper's largest Table 12 gain (+0.5, ResNet-152), more than
    # FAR_LARGER (5) times it
    assert found["far_larger"] and FAR_LARGER == 5 and "16x the paper's" in found["accuracy_why"]
    claim = progressive_each_claim(
        TimeToAccuracyResult(conditions(), models=["v2"], rows=rows, speed_probes=[100.0, 105.0])
    )
    assert claim.verdict.label == "agrees" and STILL_LEARNING in claim.verdict.why


def test_a_converged_accuracy_loss_beyond_noise_contradicts_table_12():
    rows = [
        run("v2", "fixed", 0, [(300.0, 69.5), (600.0, 70.0)]),
        run("v2", "progressive", 0, [(100.0, 64.5), (200.0, 65.0)]),
    ]
    found = compare(
        rows,
        ("v2", "progressive"),
        ("v2", "fixed"),
        drift=0.05,
        val_images=4000,
        chance=10.0,
        claim="x",
        paper_top1_gain=0.5,
    )
    # faster to 65% (200 s against 300 s), but 5 points lower, noise 2 * sqrt(0.72^2 + 0.75^2) = 2.1
    assert found["time_verdict"] == "agrees" and found["accuracy_verdict"] == "contradicts"
    assert found["verdict"] == "contradicts" and found["top1_diff"] == pytest.approx(-5.0)


def test_how_a_verdict_is_decided_names_every_rule_from_the_constants():
    text = "\n".join(how_decided())
    for words in ("drift", "seed", "chance", STILL_LEARNING, f"{FAR_LARGER}x", "0.05", "binomial"):
        assert words in text


# ---- photos held out of the training split ------------------------------------------------------


def test_hold_out_is_stratified_disjoint_and_covers_the_split():
    labels = [0] * 10 + [1] * 6 + [2] * 2
    kept, held = hold_out(labels, 3)
    assert sorted(kept + held) == list(range(18)) and not set(kept) & set(held)
    # class 2 keeps one to train on
    assert [sum(labels[i] == c for i in held) for c in (0, 1, 2)] == [3, 3, 1]
    assert hold_out(labels, 3) == (kept, held)  # the same photos for every run
    with pytest.raises(ValueError, match="holdout_per_class"):
        hold_out(labels, 0)


def test_the_loaders_evaluate_on_training_photos_held_out_never_on_validation_photos(tmp_path):
    from effnetv2_mini.data.loaders import Loaders
    from effnetv2_mini.engine.config import TrainConfig
    from effnetv2_mini.engine.distributed import DistInfo

    for split, count in (("train", 6), ("val", 2)):
        for k, name in enumerate(("cat", "dog")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40 + 7 * i, 30 + 5 * k), (90 * k, 20 * i, 50)).save(
                    tmp_path / split / name / f"{i}.jpg"
                )
    config = TrainConfig(
        model="demo_v2_tiny",
        dataset="imagefolder",
        data_root=str(tmp_path),
        batch_size=2,
        workers=0,
        device="cpu",
        holdout_per_class=2,
    ).resolved()
    loaders = Loaders(config, DistInfo(), torch.device("cpu"))
    held = [loaders.val_set.base.base.samples[i][0] for i in loaders.val_set.indices]
    kept = [loaders.train_set.base.base.samples[i][0] for i in loaders.train_set.indices]
    assert len(held) == 4 and len(kept) == 8 and not set(held) & set(kept)
    assert all("/train/" in p for p in held + kept)  # no validation photo anywhere
    assert sorted(loaders.val_set.targets) == [0, 0, 1, 1]
    batch = next(iter(loaders.val(32)))  # evaluated with the evaluation transform
    assert tuple(batch[0].shape[1:]) == (3, 32, 32) and len(batch[1]) == 2
