"""bench/bench_loop.py, run tiny on the built-in set: the loop against the model, per model and size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_loop  # noqa: E402

TINY = ["--dataset", "synthetic", "--models", "demo_v2_tiny", "--sizes", "56", "--batch", "4",
        "--steps", "2", "--warmup", "1", "--rounds", "2"]


def test_bench_loop_reports_the_ratio_of_the_loop_to_the_model_and_the_split_of_a_step(tmp_path):
    out = tmp_path / "loop.json"
    summary = bench_loop.main([*TINY, "--augment", "per-image", "batched", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    assert summary["command"].startswith("python bench/bench_loop.py --dataset synthetic")
    machine = summary["machine"]
    assert {"cpu", "threads", "torch"} <= set(machine) and machine["threads"] >= 1
    (row,) = summary["results"]
    assert (row["model"], row["image_size"], row["randaug_magnitude"]) == ("demo_v2_tiny", 56, 0.0)
    assert row["model_images_per_s"] > 0 and len(row["model_images_per_s_rounds"]) == 2
    assert set(row["variants"]) == {"per-image", "batched"}
    assert [v["batched_augmentation"] for v in row["variants"].values()] == [False, True]
    assert row["variant"] == "per-image" and row["workers"] == 0  # the first fills the top level
    assert row["loop_images_per_s"] == row["variants"]["per-image"]["loop_images_per_s"]
    for variant in row["variants"].values():
        assert variant["loop_images_per_s"] > 0 and variant["loop_to_model_ratio"] > 0
        ratios = [loop / alone for loop, alone in zip(variant["loop_images_per_s_rounds"],
                                                      row["model_images_per_s_rounds"])]
        assert variant["loop_to_model_ratio_rounds"] == pytest.approx(ratios)
        split = variant["split"]
        assert {"read", "crop_resize", "flip", "normalize", "collate", "step"} <= set(split)
        assert all(seconds >= 0 for seconds in split.values()) and split["step"] > 0
        assert variant["bottleneck"] in split and variant["bottleneck"] not in ("step", "ema")
    # magnitude 0 at 56 px in the laptop plan: the per-image transform has no RandAugment step
    assert "randaugment" not in row["variants"]["per-image"]["split"]


def test_the_default_magnitudes_are_the_laptop_plans_and_magnitude_fixes_one():
    assert bench_loop.plan_magnitude(56) == 0.0 and bench_loop.plan_magnitude(128) == 10.0
    assert bench_loop.plan_magnitude(92) == pytest.approx(5.0)
    summary = bench_loop.main([*TINY, "--rounds", "1", "--magnitude", "15"])
    (row,) = summary["results"]
    assert row["randaug_magnitude"] == 15.0 and row["split"]["randaugment"] > 0
    assert row["batched_augmentation"] is True  # the engine's CPU default on the built-in set


def test_workers_make_loops_of_their_own_in_the_same_rounds():
    summary = bench_loop.main([*TINY, "--rounds", "1", "--augment", "batched",
                               "--workers", "0", "1"])
    (row,) = summary["results"]
    assert set(row["variants"]) == {"batched, workers 0", "batched, workers 1"}
    assert [v["workers"] for v in row["variants"].values()] == [0, 1]
    assert all(v["loop_to_model_ratio"] > 0 for v in row["variants"].values())
