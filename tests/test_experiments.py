"""Each paper experiment as a library function: at a tiny scale, its typed result records its own conditions."""

import json

import pytest

from effnetv2_mini import experiments
from effnetv2_mini.study.experiments import load_results, save_results
from effnetv2_mini.study.profiles import notebook_profile

TINY_TRAINING = dict(train_samples=128, batch_size=32)


def assert_conditions(c, **expected):
    assert c.profile == "smoke" and c.rehearsal is False and c.device == "cpu" and c.torch and c.finished_at
    for key, value in expected.items():
        assert getattr(c, key) == value, (key, getattr(c, key), value)


def test_architecture_counts_and_times(tmp_path):
    cfg = notebook_profile("01_architecture", "smoke", models=["efficientnetv2_s", "efficientnet_b0"],
                           throughput_models=["demo_v2_tiny"], throughput_image_size=32, throughput_batch_size=2)
    result = experiments.architecture(cfg)
    assert [m["name"] for m in result.models] == ["efficientnetv2_s", "efficientnet_b0"]
    s = result.models[0]
    assert s["params"] == 21_458_488 and s["reference_params"] == 21_458_488 and s["paper_top1"] == 83.9
    assert len(result.stage_table["rows"]) == 8 and {r["mode"] for r in result.throughput} == {"train", "eval"}
    assert_conditions(result.conditions, model="efficientnetv2_s")
    save_results(tmp_path, "01_architecture", {"architecture": result}, "smoke")
    assert load_results(tmp_path / "01_architecture.json")["architecture"] == result


def test_training_reports_the_final_ema_accuracy(tmp_path):
    cfg = notebook_profile("02_training", "smoke", epochs=2, image_size=32, eval_size=32, ema_decay=0.9, **TINY_TRAINING)
    result = experiments.train_model(cfg, str(tmp_path))
    final = result.history[-1]
    assert result.top1 == final["ema_top1"] and len(result.history) == 2  # final epoch, EMA weights: not the best epoch
    assert_conditions(result.conditions, model="demo_v2_tiny", dataset="synthetic", epochs=2, image_sizes=[32],
                      eval_size=32, schedule=None, recipe="simple", seeds=[0], num_classes=10, val_images=128,
                      accuracy="final epoch, EMA weights")
    assert result.config["recipe"] == "simple" and result.conditions.wall_clock_s > 0


def test_training_with_a_progressive_schedule_records_it(tmp_path):
    cfg = notebook_profile("02_training", "smoke", epochs=2, eval_size=32, progressive="stages=2 size=24:32 randaug=0:5",
                           **TINY_TRAINING)
    result = experiments.train_model(cfg, str(tmp_path))
    assert result.conditions.image_sizes == [24, 32] and result.conditions.schedule.startswith("command line")
    assert [r["image_size"] for r in result.history] == [24, 32] and result.schedule["variant"] == "progressive"


def test_efficiency_tables(tmp_path):
    cfg = notebook_profile("03_training_efficiency", "smoke", table2_sizes=[32, 48], memory_budget_mb=64, max_batch_limit=4,
                           table3_image_size=32, table3_batch_size=2, timing_repeats=1, scaling_image_size=32,
                           scaling_batch_size=2)
    table2 = experiments.table2_memory(cfg)
    assert [r["image_size"] for r in table2.rows] == [32, 48] and table2.memory_budget_bytes == 64 * 2**20
    table3 = experiments.table3_fused_stages(cfg, str(tmp_path))
    assert [r["fused_stages"] for r in table3.rows] == [0, 3, 5, 7] and table3.proxy is None
    assert table3.rows[0]["paper_v100"] == 155
    assert all(low <= r["train_images_per_sec"] <= high for r in table3.rows for low, high in [r["images_per_sec_range"]])
    stages = experiments.per_stage_speed(cfg)
    assert [r["stage"] for r in stages.rows] == list(range(1, 8))
    scaling = experiments.scaling_speed(cfg, models=("efficientnet_b0", "efficientnetv2_b0"))
    assert {r["measured_at"] for r in scaling.rows} == {32} and scaling.rows[0]["paper_top1"] is not None
    for result in (table2, table3, stages, scaling):
        assert_conditions(result.conditions)


def test_nas_search_reports_percent_accuracy_and_its_conditions(tmp_path):
    cfg = notebook_profile("04_nas", "smoke", trials=2, epochs=1, image_size=32, batch_size=32, train_samples=128, retrain_top=2,
                           retrain_epochs=1)
    result = experiments.nas_search(cfg, str(tmp_path))
    assert len(result.ranked) == 2 and all(0 <= r["accuracy"] <= 100 for r in result.ranked)
    assert len(result.retrained) == 2 and result.proxy_vs_longer_spearman in (-1.0, 1.0)
    assert_conditions(result.conditions, dataset="synthetic", epochs=1, image_sizes=[32], eval_size=32, num_classes=4)


def test_table5_grid_and_the_progressive_comparison(tmp_path):
    cfg = notebook_profile("05_progressive_learning", "smoke", grid_sizes=[24, 32], grid_magnitudes=[0.0, 10.0], grid_epochs=1,
                           grid_seeds=[0, 1], epochs=2, stages=2, min_size=24, max_size=32, eval_size=32,
                           variants=["fixed", "progressive"], **TINY_TRAINING)
    table5 = experiments.table5_grid(cfg, str(tmp_path))
    assert len(table5.per_seed) == 2 and len(table5.top1) == 2 and len(table5.top1[0]) == 2
    assert table5.top1[0][0] == pytest.approx((table5.per_seed[0][0][0] + table5.per_seed[1][0][0]) / 2)
    assert_conditions(table5.conditions, seeds=[0, 1], image_sizes=[24, 32])
    comparison = experiments.progressive_comparison(cfg, str(tmp_path))
    assert [r["variant"] for r in comparison.rows] == ["fixed", "progressive"]
    assert comparison.rows[0]["time_vs_fixed"] == 1.0 and comparison.rows[1]["time_vs_fixed"] > 0
    assert {s["image_size"] for s in comparison.per_stage if s["variant"] == "progressive"} == {24, 32}
    assert_conditions(comparison.conditions, epochs=2, image_sizes=[24, 32], eval_size=32, seeds=[0])
    fixed = [json.loads(line)["image_size"] for line in (tmp_path / "05_progressive_runs" / "fixed-s0" / "metrics.jsonl")
             .read_text().splitlines()]
    assert fixed == [32, 32]


def test_transfer_fine_tunes_and_trains_from_scratch(tmp_path):
    cfg = notebook_profile("06_transfer", "smoke", pretrain_epochs=1, steps=4, batch_size=32, image_size=32, train_samples=128)
    result = experiments.transfer(cfg, str(tmp_path))
    assert [(r["start"], r["dataset"]) for r in result.rows] == [("pretrained", "synthetic_b"), ("scratch", "synthetic_b")]
    assert result.pretraining["demo_v2_tiny"]["source"].endswith("last.pt")
    assert_conditions(result.conditions, dataset="synthetic_b", num_classes=4, recipe="finetune paper")
