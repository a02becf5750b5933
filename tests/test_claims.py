"""Claims: comparability fails closed on the recorded conditions; verdicts respect chance level and noise."""

import dataclasses

import pytest

from effnetv2_mini.study.claims import (
    PAPER_SETTINGS,
    accuracy_noise,
    adaptive_claim,
    claims_for,
    comparable,
    difference_noise,
    explain_speedup,
    speedup_claim,
    table5_claim,
    training_claim,
    transfer_claim,
)
from effnetv2_mini.study.experiments import Conditions, ProgressiveResult, Table5Result, TrainingResult, TransferResult

FULL = Conditions(profile="full", device="cuda", device_name="A100", model="efficientnetv2_s", dataset="imagenet",
                  dataset_requested="imagenet", num_classes=1000, val_images=50_000, epochs=350,
                  image_sizes=[128, 184, 240, 300], eval_size=384, schedule="paper Table 6", recipe="paper", seeds=[0],
                  accuracy="final epoch, EMA weights", global_batch=4096)


def test_the_paper_setting_is_comparable():
    assert comparable(FULL, PAPER_SETTINGS["table7"]).label == "yes"


@pytest.mark.parametrize("change, reason", [
    ({"profile": "laptop"}, "profile laptop"),
    ({"dataset": "imagenette"}, "dataset imagenette"),
    ({"epochs": 60}, "epochs 60"),
    ({"schedule": None}, "schedule not recorded"),  # a fixed-size run is not Table 7's
    ({"eval_size": 300}, "eval_size 300"),
    ({"recipe": "simple"}, "recipe simple"),
    ({"accuracy": "final epoch, raw weights"}, "accuracy"),
    ({"model": None}, "model not recorded"),
    ({"rehearsal": True}, "a rehearsal"),
    ({"steps_per_epoch": 2}, "capped"),
    ({"fallback_notice": "fell back"}, "fell back to the built-in data set"),
    ({"global_batch": 512}, "global_batch 512, the paper's: 4096"),
    ({"crops_from_cache": True}, "decoded-image cache"),
])
def test_anything_missing_or_different_is_not_comparable(change, reason):
    verdict = comparable(dataclasses.replace(FULL, **change), PAPER_SETTINGS["table7"])
    assert verdict.label == "no" and reason in verdict.why


def test_no_conditions_at_all_is_not_comparable():
    assert comparable(None, PAPER_SETTINGS["table7"]).label == "no"


def test_binomial_noise_literals():
    # sqrt(0.8 * 0.2 / 3925) = 0.006385 -> 0.64 points
    assert accuracy_noise(80.0, 3925) == pytest.approx(0.6385, abs=1e-3)
    assert accuracy_noise(80.0, None) is None
    # two seeds each: twice the standard error of the difference of means, sample variances 2 and 0.5
    assert difference_noise([80.0, 82.0], [79.0, 80.0], None) == pytest.approx(2 * ((2 / 2 + 0.5 / 2) ** 0.5))


def small(**fields):
    values = dict(profile="laptop", model="demo_v2_tiny", dataset="imagefolder", num_classes=10, val_images=3925,
                  epochs=12, seeds=[0, 1], device="cpu", device_name="x86_64", accuracy="final epoch, EMA weights")
    values.update(fields)
    return Conditions(**values)


def test_training_far_above_chance_agrees_at_chance_is_no_signal_and_the_paper_setting_is_judged_by_number():
    assert training_claim(TrainingResult(small(recipe="paper"), top1=77.5)).verdict.label == "agrees"
    assert training_claim(TrainingResult(small(recipe="paper"), top1=10.4)).verdict.label == "no signal"
    other_recipe = training_claim(TrainingResult(small(recipe="simple"), top1=77.5)).verdict  # AdamW says nothing of RMSProp
    assert other_recipe.label == "no signal" and "not the paper's" in other_recipe.why
    assert training_claim(TrainingResult(FULL, top1=83.7)).verdict.label == "agrees"
    assert training_claim(TrainingResult(FULL, top1=82.0)).verdict.label == "contradicts"


def comparison(rows):
    return ProgressiveResult(small(), schedule={"stages": [], "source": "x"}, rows=rows)


def row(variant, seed, top1, time_vs_fixed):
    return {"variant": variant, "seed": seed, "final_top1": top1, "time_vs_fixed": time_vs_fixed}


def test_speedup_verdicts():
    faster_same = comparison([row("fixed", 0, 77.5, 1.0), row("fixed", 1, 77.9, 1.0),
                              row("progressive", 0, 77.8, 0.6), row("progressive", 1, 78.0, 0.62)])
    assert speedup_claim(faster_same).verdict.label == "agrees"
    faster_worse = comparison([row("fixed", 0, 36.9, 1.0), row("progressive", 0, 13.4, 0.83)])
    assert speedup_claim(faster_worse).verdict.label == "contradicts"
    at_chance = comparison([row("fixed", 0, 10.2, 1.0), row("progressive", 0, 10.0, 0.8)])
    assert speedup_claim(at_chance).verdict.label == "no signal"


def test_adaptive_regularization_within_noise_is_no_signal():
    result = comparison([row("progressive_fixed_reg", 0, 77.6, 0.6), row("progressive_fixed_reg", 1, 78.2, 0.6),
                         row("progressive", 0, 77.9, 0.6), row("progressive", 1, 78.0, 0.6)])
    verdict = adaptive_claim(result).verdict
    assert verdict.label == "no signal" and "within its noise" in verdict.why


def test_table5_at_chance_is_no_signal_and_a_growing_preference_agrees():
    chance = Table5Result(small(), sizes=[32, 48, 64], magnitudes=[0, 5, 10], epochs=2,
                          top1=[[9.8, 9.9, 10.0], [10.0, 10.6, 10.1], [10.0, 10.0, 10.0]], per_seed=[])
    chance.per_seed = [chance.top1]
    assert table5_claim(chance).verdict.label == "no signal"
    grows = [[[70.0, 68.0, 64.0], [74.0, 74.0, 73.0], [75.0, 77.0, 79.0]],
             [[70.5, 67.0, 65.0], [74.5, 73.5, 73.5], [75.5, 77.5, 79.5]]]
    mean = [[sum(s[i][j] for s in grows) / 2 for j in range(3)] for i in range(3)]
    result = Table5Result(small(), sizes=[64, 96, 128], magnitudes=[0, 5, 10], epochs=4, top1=mean, per_seed=grows)
    assert table5_claim(result).verdict.label == "agrees"
    shrinks = [[list(reversed(r)) for r in g] for g in grows]
    mean = [[sum(s[i][j] for s in shrinks) / 2 for j in range(3)] for i in range(3)]
    assert table5_claim(dataclasses.replace(result, top1=mean, per_seed=shrinks)).verdict.label == "contradicts"


def test_transfer_verdict_and_rehearsals_claim_nothing():
    rows = [{"model": "m", "dataset": "d", "start": "pretrained", "top1": 60.0},
            {"model": "m", "dataset": "d", "start": "scratch", "top1": 35.0}]
    result = TransferResult(small(num_classes=5, val_images=1900, seeds=[0]), finetune_recipe="paper", steps=60, rows=rows)
    assert transfer_claim(result).verdict.label == "agrees"
    rehearsal = dataclasses.replace(result, conditions=dataclasses.replace(result.conditions, rehearsal=True))
    assert [c.verdict.label for c in claims_for(rehearsal)] == ["no signal"]
    assert all(c.comparable.label == "no" for c in claims_for(rehearsal))


def test_one_seed_comparisons_say_that_the_run_to_run_spread_is_unknown():
    rows = [{"model": "demo_v2_tiny", "dataset": "imagefolder", "start": start, "top1": top1}
            for start, top1 in (("pretrained", 70.0), ("scratch", 40.0))]
    one = claims_for(TransferResult(small(num_classes=5, val_images=1900, seeds=[0]), finetune_recipe="paper", steps=60,
                                    rows=rows))
    two = claims_for(TransferResult(small(num_classes=5, val_images=1900, seeds=[0, 1]), finetune_recipe="paper", steps=60,
                                    rows=rows))
    assert one[0].verdict.label == two[0].verdict.label == "agrees"
    assert "one seed" in one[0].verdict.why and "one seed" not in two[0].verdict.why


def test_the_speedup_is_explained_from_the_runs_own_stage_costs():
    result = comparison([row("fixed", 0, 40.0, 1.0), row("progressive", 0, 38.0, 0.8)])
    result.per_stage = [{"variant": "fixed", "seed": 0, "stage": 1, "image_size": 96, "images_per_sec": 200.0},
                        {"variant": "progressive", "seed": 0, "stage": 1, "image_size": 48, "images_per_sec": 400.0},
                        {"variant": "progressive", "seed": 0, "stage": 2, "image_size": 96, "images_per_sec": 200.0}]
    text = explain_speedup(result)
    assert "**0.80x** the fixed-size" in text and "**-2.0 points**" in text
    assert "A 48 px image cost **0.50** of a 96 px image's" in text and "predicts 0.25" in text and "do not shrink" in text
    assert explain_speedup(comparison([])).startswith("- No fixed-size")


def test_the_four_time_to_accuracy_claims_claim_nothing_in_a_rehearsal_and_name_the_chosen_baselines():
    from effnetv2_mini.study.experiments.faster import TimeToAccuracyResult

    def run(model, variant, seconds):  # two epochs; V2 twice as fast as V1, Algorithm 1 twice again
        return {"model": model, "variant": variant, "seed": 0, "final_top1": 60.0, "train_seconds": seconds,
                "curve": [{"epoch": 1, "wall_time": seconds / 2, "top1": 59.8},
                          {"epoch": 2, "wall_time": seconds, "top1": 60.0}]}

    rows = [run("v2", "fixed", 100.0), run("v2", "progressive", 50.0), run("v1", "fixed", 200.0),
            run("v1", "progressive", 100.0)]
    chosen = {"chosen": {"randaug_magnitude": 0.0, "dropout": 0.05, "mixup_alpha": 0.0},
              "how": "the best of 3 points"}
    c = small(num_classes=10, val_images=4000, seeds=[0, 1], per_model={"v2": {"regularization": chosen}})
    result = TimeToAccuracyResult(c, models=["v2", "v1"], v2_model="v2", v1_model="v1", rows=rows,
                                  speed_probes=[100.0, 101.0])
    claims = claims_for(result)
    assert [x.verdict.label for x in claims] == ["agrees"] * 4
    assert "v2: RandAugment 0.0, dropout 0.05, mixup 0.0 (the best of 3 points)" in claims[0].conditions
    rehearsal = dataclasses.replace(result, conditions=dataclasses.replace(c, rehearsal=True))
    assert [x.verdict.label for x in claims_for(rehearsal)] == ["no signal"] * 4
