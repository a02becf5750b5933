"""Faster training, measured: time to accuracy (Fig. 1a, Tables 7, 10, 12), Table 11 speed, torchvision's ResNet in
the engine, the claims' verdicts, and the benchmark script. Expected numbers are written out by hand."""

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from PIL import Image

from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.loop import fit
from effnetv2_mini.models import build_model
from effnetv2_mini.paper.progressive import linear_schedule
from effnetv2_mini.study.claims import (
    ONE_SEED,
    claims_for,
    explain_time_to_accuracy,
    leaderboard_line,
    progressive_each_claim,
    table11_claim,
    time_to_accuracy_claim,
)
from effnetv2_mini.study.experiments import Conditions, load_results, save_results
from effnetv2_mini.study.experiments.faster import (
    Table11Result,
    TimeToAccuracyResult,
    common_accuracy_times,
    faster_settings,
    generation,
    pair_times,
    progressive_effect,
    table11_speed,
    time_to_accuracy,
    time_to_reach,
    v2_progressive_time_to_v1_fixed_accuracy,
)
from effnetv2_mini.study.profiles import notebook_profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))


def curve(*points):
    """(seconds, top-1) per epoch -> a run's curve."""
    return [{"epoch": i + 1, "wall_time": s, "top1": t} for i, (s, t) in enumerate(points)]


def run(model, variant, seed, seconds, final, points):
    return {"model": model, "variant": variant, "seed": seed, "train_seconds": seconds, "final_top1": final,
            "curve": curve(*points)}


# Two models, two seeds, three epochs each; top-1 None: an epoch that was not evaluated.
ROWS = [
    run("v1", "fixed", 0, 30.0, 60.0, [(10.0, 40.0), (20.0, 55.0), (30.0, 60.0)]),
    run("v1", "progressive", 0, 18.0, 61.0, [(5.0, 35.0), (11.0, 50.0), (18.0, 61.0)]),
    run("v2", "fixed", 0, 24.0, 66.0, [(8.0, 50.0), (16.0, 60.0), (24.0, 66.0)]),
    run("v2", "progressive", 0, 15.0, 62.0, [(4.0, 45.0), (9.0, None), (15.0, 62.0)]),
    run("v1", "fixed", 1, 30.0, 58.0, [(10.0, 42.0), (20.0, 50.0), (30.0, 58.0)]),
    run("v1", "progressive", 1, 18.0, 57.0, [(6.0, 40.0), (12.0, 52.0), (18.0, 57.0)]),
    run("v2", "fixed", 1, 25.0, 64.0, [(9.0, 48.0), (17.0, 59.0), (25.0, 64.0)]),
    run("v2", "progressive", 1, 16.0, 63.0, [(5.0, 50.0), (10.0, 59.0), (16.0, 63.0)]),
]


# ---- pure functions on literal histories ----------------------------------------------------------------------

def test_time_to_reach_is_the_first_evaluated_epoch_at_or_above_the_target():
    points = curve((4.0, 45.0), (9.0, None), (15.0, 62.0))
    assert time_to_reach(points, 60.0) == 15.0  # epoch 2 was not evaluated: skipped, no interpolation
    assert time_to_reach(points, 45.0) == 4.0  # reaching means >=
    assert time_to_reach(points, 62.5) is None
    assert time_to_reach([], 1.0) is None


def test_progressive_effect_per_model_and_seed():
    effect = progressive_effect(ROWS)
    # v1: 18/30 = 0.6 in both seeds; 61 - 60 = +1, 57 - 58 = -1
    assert effect["v1"]["progressive_time_ratio"] == pytest.approx(0.6)
    assert effect["v1"]["progressive_top1_diff"] == pytest.approx(0.0)
    # v2: 15/24 = 0.625 and 16/25 = 0.64 (mean 0.6325); 62 - 66 = -4 and 63 - 64 = -1 (mean -2.5)
    assert effect["v2"]["progressive_time_ratio"] == pytest.approx(0.6325)
    assert effect["v2"]["progressive_top1_diff"] == pytest.approx(-2.5)
    assert [(p["seed"], p["time_ratio"], p["top1_diff"]) for p in effect["v2"]["per_seed"]] == [
        (0, pytest.approx(0.625), pytest.approx(-4.0)), (1, pytest.approx(0.64), pytest.approx(-1.0))]


def test_v2_progressive_time_to_v1_fixed_accuracy():
    head = v2_progressive_time_to_v1_fixed_accuracy(ROWS, "v2", "v1")
    # seed 0: V1's final 60.0 is first reached by V2 at epoch 3, 15 s (epoch 2 unevaluated): 15 / 30 = 0.5
    # seed 1: V1's final 58.0 is reached at epoch 2, 10 s: 10 / 30 = 0.3333; mean 0.41667
    assert [p["ratio"] for p in head["per_seed"]] == [pytest.approx(0.5), pytest.approx(1 / 3)]
    assert [p["v2_progressive_seconds"] for p in head["per_seed"]] == [15.0, 10.0]
    assert head["mean"] == pytest.approx(0.41667, abs=1e-5) and head["reached"] == 2 and head["seeds"] == 2
    higher = [dict(r, final_top1=70.0) if (r["model"], r["variant"], r["seed"]) == ("v1", "fixed", 0) else r for r in ROWS]
    missed = v2_progressive_time_to_v1_fixed_accuracy(higher, "v2", "v1")
    assert missed["per_seed"][0]["ratio"] is None and missed["mean"] is None and missed["reached"] == 1
    assert v2_progressive_time_to_v1_fixed_accuracy(ROWS, "v2", None)["per_seed"] == []


def test_time_to_the_lower_final_accuracy_of_a_pair():
    # V1 fixed (final 60) vs V2 progressive (final 62), seed 0: target 60; 30 s vs 15 s
    assert common_accuracy_times(ROWS[0], ROWS[3]) == {"target_top1": 60.0, "a_seconds": 30.0, "b_seconds": 15.0, "ratio": 0.5}
    # V2 fixed (66) vs V2 progressive (62), seed 0: target 62; fixed reaches it at epoch 3 (24 s), progressive at 15 s
    assert common_accuracy_times(ROWS[2], ROWS[3])["ratio"] == pytest.approx(0.625)
    pairs = pair_times(ROWS, "v2", "v1")
    assert len(pairs) == 6  # 2 seeds x (v1 pair, v2 pair, V1 fixed vs V2 progressive)
    assert [(p["a"], p["b"]) for p in pairs[:3]] == [("v1 fixed", "v1 progressive"), ("v2 fixed", "v2 progressive"),
                                                     ("v1 fixed", "v2 progressive")]
    # seed 1, v1: target min(58, 57) = 57: fixed first reaches it at epoch 3 (30 s), progressive at epoch 3 (18 s)
    assert pairs[3]["target_top1"] == 57.0 and pairs[3]["ratio"] == pytest.approx(0.6)


def test_generation_tells_v2_from_v1_and_others():
    assert generation("efficientnetv2_b0") == "v2" and generation("efficientnet_b3") == "v1"
    assert generation("demo_v2_tiny") == "v2" and generation("demo_v1_tiny") == "v1"  # by their fused stages
    assert generation("resnet50") is None


# ---- the experiment at smoke scale --------------------------------------------------------------------------------

def test_time_to_accuracy_trains_interleaved_pairs_and_records_its_conditions(tmp_path):
    cfg = faster_settings("smoke", models=["demo_v2_tiny", "demo_v1_tiny"], epochs=2, stages=2,
                          min_size=24, max_size=32, eval_size=32, seeds=[0], train_samples=64,
                          batch_size=8,
                          mixup_range=[0.0, 0.0], baseline_grid=[[0.0, 0.05, 0.0], [0.0, 0.3, 0.0]],
                          grid_epochs=1, holdout_per_class=4)
    result = time_to_accuracy(cfg, str(tmp_path))
    c = result.conditions
    assert c.profile == "smoke" and not c.rehearsal and c.device == "cpu" and c.model == "demo_v2_tiny,demo_v1_tiny"
    assert (c.dataset, c.epochs, c.image_sizes, c.eval_size, c.recipe, c.seeds, c.num_classes) == (
        "synthetic", 2, [24, 32], 32, "simple", [0], 4)
    assert c.accuracy == "final epoch, raw weights" and c.wall_clock_s > 0
    assert [(r["order"], r["model"], r["variant"]) for r in result.rows] == [
        (0, "demo_v2_tiny", "fixed"), (1, "demo_v2_tiny", "progressive"), (2, "demo_v1_tiny", "fixed"),
        (3, "demo_v1_tiny", "progressive")]
    for r in result.rows:
        assert len(r["curve"]) == 2 and r["curve"][-1]["wall_time"] == pytest.approx(r["train_seconds"])
        assert r["curve"][-1]["top1"] == r["final_top1"] and r["curve"][0]["wall_time"] < r["train_seconds"]
        sizes = [p["image_size"] for p in r["curve"]]
        assert sizes == ([32, 32] if r["variant"] == "fixed" else [24, 32])
    assert (result.v2_model, result.v1_model) == ("demo_v2_tiny", "demo_v1_tiny")
    assert set(result.per_model) == {"demo_v2_tiny", "demo_v1_tiny"} and len(result.pairs) == 3
    assert result.v2_progressive_time_to_v1_fixed_accuracy["seeds"] == 1
    save_results(tmp_path, "faster", {"time_to_accuracy": result}, "smoke")
    assert load_results(tmp_path / "faster.json")["time_to_accuracy"] == result
    assert {c.key for c in claims_for(result)} == {"architecture_alone", "table10",
                                                   "time_to_accuracy", "progressive_each"}
    # a probe before the first run and after each
    assert len(result.speed_probes) == 5 and all(p > 0 for p in result.speed_probes)
    for model, reg in result.regularization.items():
        # two grid points, each scored on 4 x 4 = 16 held-out training images; the best one is the
        # baselines'
        assert [g["dropout"] for g in reg["grid"]] == [0.05, 0.3]
        assert "held out of the training split" in reg["how"]
        best = max(reg["grid"], key=lambda g: g["holdout_top1"])
        assert reg["chosen"]["dropout"] == best["dropout"]
        last = result.schedules[model]["stages"][-1]
        assert last["dropout"] == best["dropout"] and c.per_model[model]["regularization"] == reg
        grid = tmp_path / "time_to_accuracy_runs" / "baseline_grid"
        grid_config = json.loads((grid / f"{model}-0" / "config.json").read_text())
        assert grid_config["val_images"] == 16 and grid_config["train_images"] == 48
    assert {r["model"] for r in result.rows if "last_gain" in r} == {"demo_v2_tiny", "demo_v1_tiny"}


def test_table11_speed_times_both_generations_beside_the_paper():
    cfg = notebook_profile("03_training_efficiency", "smoke", scaling_image_size=32, scaling_batch_size=2, timing_repeats=1)
    result = table11_speed(cfg, pairs=[("efficientnetv2_b0", "efficientnet_b0")])
    (row,) = result.rows
    assert row["v2_params"] > row["v1_params"] > 0 and row["v2_size"] == row["v1_size"] == 32
    for key in ("eval", "train"):
        assert row[f"v2_{key}_images_per_sec"] > 0 and len(row[f"v1_{key}_range"]) == 2 and row[f"{key}_speedup"] > 0
    assert (row["paper_v2"], row["paper_v1"], row["paper_v2_images_per_sec"]) == ("V2-7M", "efficientnet_b1", 5739)
    assert result.conditions.model == "efficientnetv2_b0,efficientnet_b0" and result.batch_size == 2


# ---- torchvision's ResNet through the engine -----------------------------------------------------------------------

def test_resnet18_trains_a_step_per_stage_with_a_progressive_schedule(tmp_path):
    schedule = linear_schedule(2, 2, (24, 32), 32, dropout=(0.1, 0.3), source="test")
    seen = []
    with pytest.warns(UserWarning, match="no stochastic depth"):  # the paper recipe's drop_path_rate 0.2
        summary = fit(TrainConfig(model="resnet18", dataset="synthetic", recipe="paper", ema_decay=0.0, batch_size=8,
                                  max_steps_per_epoch=1, synthetic={"num_samples": 32, "num_classes": 4}, workers=0,
                                  device="cpu", out_dir=str(tmp_path), quiet=True), schedule,
                      on_epoch_start=lambda epoch, model, loader, mixer: seen.append((type(model).__name__, model.dropout.p)))
    assert seen == [("TorchvisionResNet", 0.1), ("TorchvisionResNet", 0.3)]
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(m["image_size"], m["dropout"]) for m in lines] == [(24, 0.1), (32, 0.3)] and summary["top1"] is not None


def test_resnet_is_torchvisions_with_a_head_dropout_and_the_recipes_bn_momentum():
    import torchvision

    model = build_model("resnet50", num_classes=10, bn_momentum=0.01, dropout=0.2)
    reference = torchvision.models.resnet50(num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
    assert model.dropout.p == 0.2 and model.classifier.out_features == 10 and model.config.eval_size == 224
    assert {m.momentum for m in model.modules() if type(m).__name__ == "BatchNorm2d"} == {0.01}
    model.set_dropout(0.4)
    assert model.dropout.p == 0.4
    with pytest.raises(TypeError, match="width_mult"):
        build_model("resnet18", width_mult=0.5)
    config = TrainConfig(model="resnet18", dataset="imagefolder", recipe="short").resolved()
    assert (config.image_size, config.eval_size) == (224, 224)  # torchvision's size when a run gives none


def test_torchvision_weights_are_refused_for_a_resnet_with_a_clear_message():
    from effnetv2_mini.compat import load_torchvision_pretrained

    with pytest.raises(ValueError, match="train it from scratch"):
        load_torchvision_pretrained("resnet18")


# ---- the claims on hand-made results --------------------------------------------------------------------------------

def small(**fields):
    values = dict(profile="laptop", model="efficientnetv2_b0,efficientnet_b0", dataset="imagefolder", num_classes=10,
                  val_images=3925, epochs=10, seeds=[0, 1], device="cpu", device_name="x86_64", recipe="short",
                  accuracy="final epoch, raw weights")
    values.update(fields)
    return Conditions(**values)


def test_one_seed_says_so_in_the_comparisons_verdicts():
    v2, v1 = "efficientnetv2_b0", "efficientnet_b0"
    rows = [{"model": m, "variant": v, "seed": 0, "final_top1": final, "train_seconds": t,
             "curve": [{"epoch": 1, "wall_time": t / 2, "top1": final - 0.3},
                       {"epoch": 2, "wall_time": t, "top1": final}]}
            for m, v, t, final in ((v2, "fixed", 100.0, 60.0), (v2, "progressive", 50.0, 60.1),
                                   (v1, "fixed", 200.0, 60.0), (v1, "progressive", 90.0, 60.0))]
    result = TimeToAccuracyResult(small(seeds=[0]), models=[v2, v1], v2_model=v2, v1_model=v1,
                                  rows=rows, speed_probes=[100.0, 102.0, 101.0, 100.5, 101.5])
    claim = {c.key: c for c in claims_for(result)}["time_to_accuracy"]
    # V2 + Algorithm 1 reaches 60.0% at 50 s, V1 fixed at 200 s: 0.25x, beyond the drift of 2%
    assert claim.verdict.label == "agrees" and claim.verdict.why.endswith(ONE_SEED)
    assert "0.25x" in claim.ours and claim.comparable.label == "no"
    assert time_to_accuracy_claim(TimeToAccuracyResult(small())).verdict.label == "no signal"
    assert progressive_each_claim(TimeToAccuracyResult(small())).verdict.label == "no signal"


def speed_row(v2_range, v1_range, speedup):
    return {"v2_model": "efficientnetv2_b0", "v1_model": "efficientnet_b0", "v2_eval_range": v2_range,
            "v1_eval_range": v1_range, "eval_speedup": speedup, "train_speedup": 1.5}


@pytest.mark.parametrize("row, label", [
    (speed_row([900.0, 1000.0], [400.0, 500.0], 2.1), "agrees"),
    (speed_row([300.0, 350.0], [400.0, 500.0], 0.7), "contradicts"),
    (speed_row([450.0, 520.0], [400.0, 500.0], 1.08), "no signal"),  # the ranges overlap
])
def test_table11_claim(row, label):
    faster = speed_row([900.0, 1000.0], [400.0, 500.0], 2.1)
    result = Table11Result(Conditions(profile="laptop", device="cpu", device_name="x86_64"), 32, [faster, row])
    claim = table11_claim(result)
    assert claim.verdict.label == label and claim.comparable.label == "no"  # not timed on a V100
    on_v100 = dataclasses.replace(result, conditions=Conditions(profile="full", device="cuda", device_name="Tesla V100"))
    assert table11_claim(on_v100).comparable.label == "yes"


# ---- the benchmark script ------------------------------------------------------------------------------------------

def _photos(root: Path) -> None:
    """A class-per-folder tree of photos of natural, unequal sizes and shapes."""
    sizes = [(50, 37), (23, 61), (120, 80), (64, 64), (41, 90)]
    for split, count in (("train", 4), ("val", 2)):
        for k, name in enumerate(("cat", "dog")):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                color = (200 * k, 30 * i, 255 - 200 * k)
                Image.new("RGB", sizes[(i + k) % len(sizes)], color).save(root / split / name / f"{i}.jpg")


def _bench(argv):
    import bench_time_to_accuracy

    bench_time_to_accuracy.main(argv)


TINY = ["--epochs", "2", "--stages", "2", "--min-size", "24", "--size", "32", "--seeds", "0", "--batch-size", "8",
        "--device", "cpu", "--workers", "0", "--grid-epochs", "1", "--holdout-per-class", "2"]


def test_the_benchmark_runs_on_the_synthetic_set_and_writes_the_keys(tmp_path):
    out = tmp_path / "tta.json"
    _bench([*TINY, "--train-samples", "32", "--out", str(tmp_path / "runs"), "--json", str(out)])
    summary = json.loads(out.read_text())
    assert set(summary["progressive_time_ratio"]) == set(summary["progressive_top1_diff"]) == {"demo_v2_tiny", "demo_v1_tiny"}
    assert "v2_progressive_time_to_v1_fixed_accuracy" in summary and summary["headline"]["seeds"] == 1
    assert len(summary["rows"]) == 4 and all(len(r["curve"]) == 2 and "train_seconds" in r for r in summary["rows"])
    assert {c["key"] for c in summary["claims"]} == {"architecture_alone", "table10",
                                                     "time_to_accuracy", "progressive_each"}
    for key in ("architecture_alone", "table10", "fig1a"):
        assert {"ratio", "noise", "verdict", "regime"} <= set(summary[key])
    both = {"demo_v2_tiny", "demo_v1_tiny"}
    assert set(summary["table12"]["ratio"]) == set(summary["table12"]["regime"]) == both
    assert summary["table12"]["verdict"] in ("agrees", "contradicts", "no signal")
    assert set(summary["baselines_regularization"]) == {"demo_v2_tiny", "demo_v1_tiny"}
    assert len(summary["baselines_regularization"]["demo_v2_tiny"]["grid"]) == 2


def test_the_benchmark_trains_a_resnet_on_photos_of_any_size(tmp_path):
    _photos(tmp_path / "photos")
    out = tmp_path / "tta.json"
    _bench([*TINY, "--dataset", "imagefolder", "--data-root", str(tmp_path / "photos"), "--models", "demo_v2_tiny",
            "resnet18", "--recipe", "short", "--out", str(tmp_path / "runs"), "--json", str(out),
            "--holdout-per-class", "1", "--batch-size", "2"])
    summary = json.loads(out.read_text())
    assert summary["result"]["conditions"]["dataset"] == "imagefolder" and summary["result"]["conditions"]["num_classes"] == 2
    assert set(summary["progressive_time_ratio"]) == {"demo_v2_tiny", "resnet18"}
    assert summary["v2_progressive_time_to_v1_fixed_accuracy"] is None  # no V1 network among the models
    assert summary["fig1a"] is None
    assert set(summary["table12"]["per_model"]) == {"demo_v2_tiny", "resnet18"}
    assert summary["baselines_regularization"]["resnet18"]["chosen"]["randaug_magnitude"] == 0.0


# ---- what the notebook prints beside the verdicts ----------------------------------------------------------------

def sized(model, variant, seed, seconds, final, points):
    """(image size, images/s, cumulative seconds, top-1) per epoch -> a run."""
    return {"model": model, "variant": variant, "seed": seed, "train_seconds": seconds, "final_top1": final,
            "curve": [{"epoch": i + 1, "image_size": s, "images_per_sec": v, "wall_time": t, "top1": a}
                      for i, (s, v, t, a) in enumerate(points)]}


def test_explanation_sets_the_time_ratio_beside_pixels_and_the_last_stage_beside_the_fixed_run():
    rows = [sized("m", "fixed", 0, 40.0, 70.0, [(128, 50.0, 20.0, 60.0), (128, 50.0, 40.0, 70.0)]),
            sized("m", "progressive", 0, 30.0, 69.0, [(64, 200.0, 10.0, 55.0), (128, 40.0, 30.0, 69.0)])]
    result = TimeToAccuracyResult(small(), models=["m"], rows=rows, per_model=progressive_effect(rows),
                                  v2_progressive_time_to_v1_fixed_accuracy={"per_seed": [
                                      {"seed": 0, "ratio": None, "v2_progressive_final_top1": 69.0, "target_top1": 71.5}]})
    text = explain_time_to_accuracy(result)
    # 30 / 40 = 0.75x; pixels: mean of (64/128)^2 = 0.25 and 1 -> 0.625; -1.0 points
    assert "**0.75x** the fixed-size time (pixels predict 0.62x)" in text and "**-1.0 points**" in text
    assert "its last stage (128 px) ran at 40 images/s against the fixed run's 50; its first (64 px) at 200" in text
    assert "ended at 69.0%, below V1 fixed-size's 71.5%" in text


def test_leaderboard_line_only_for_photos_and_at_the_nearest_size():
    board = {"rows": [{"size": 128, "epochs": 5, "top1": 85.77, "runs": "5, mean", "entry": "a"},
                      {"size": 192, "epochs": 5, "top1": 86.76, "runs": "5, mean", "entry": "b"}]}
    rows = [sized("m", "fixed", 0, 40.0, 70.0, []), sized("m", "progressive", 1, 30.0, 72.5, [])]
    result = TimeToAccuracyResult(small(image_sizes=[56, 128], epochs=5), rows=rows)
    line = leaderboard_line(result, board)
    assert "m progressive (seed 1), **72.5%** after 5 epochs at 128 px" in line and "128 px, 5-epoch row: 85.77%" in line
    assert leaderboard_line(TimeToAccuracyResult(small(dataset="synthetic", image_sizes=[32]), rows=rows), board) == ""


def test_notebook_07_profiles_train_the_papers_pairs():
    laptop = notebook_profile("07_faster_training", "laptop")
    assert (laptop.models, laptop.recipe, laptop.min_size, laptop.max_size, laptop.seeds) == (
        ["efficientnetv2_b0", "efficientnet_b0"], "short", 56, 128, [0, 1])
    assert len(laptop.baseline_grid) == 3 and laptop.holdout_per_class == 50
    assert laptop.dataset == "imagenette" and laptop.train_samples is None and laptop.images_per_class is None
    assert notebook_profile("07_faster_training", "quick").models == ["efficientnetv2_s", "efficientnet_b4", "resnet50"]
    full = notebook_profile("07_faster_training", "full")
    assert (full.models, full.epochs, full.nproc) == (["efficientnetv2_m", "efficientnet_b7", "resnet50"], 350, 8)
    rehearsal = notebook_profile("07_faster_training", "laptop", rehearse=True)
    assert (rehearsal.epochs, rehearsal.stages, rehearsal.max_steps_per_epoch, rehearsal.models) == (
        2, 2, 2, laptop.models)
