"""The effnetv2 command and the throughput benchmark."""

import json

import pytest
import torch

from effnetv2_mini import build_model
from effnetv2_mini.cli import main
from effnetv2_mini.engine.devices import pick_device
from effnetv2_mini.measure import benchmark_throughput


def test_summary_prints_table_4(capsys):
    assert main(["summary", "efficientnetv2_s"]) == 0
    out = capsys.readouterr().out
    assert "Fused-MBConv4, k3x3" in out and "MBConv6, k3x3, SE0.25" in out and "r15_k3_s2_e6_i160_o256_se0.25" in out


def test_unknown_model_exits_2_with_suggestions(capsys):
    with pytest.raises(SystemExit) as exit:  # refused by the argument's type, before any work
        main(["summary", "efficientnetv2_ss"])
    assert exit.value.code == 2 and "Did you mean efficientnetv2_s" in capsys.readouterr().err


def test_models_lists_demo_family(capsys):
    assert main(["models", "--family", "demo"]) == 0
    assert "demo_v2_tiny" in capsys.readouterr().out


def test_benchmark_reports_images_per_second():
    model = build_model("demo_v2_tiny")
    for mode in ("train", "eval"):
        r = benchmark_throughput(model, 32, 4, mode=mode, warmup=1, repeats=3)
        assert r["images_per_sec"] > 0 and len(r["times"]) == 3 and r["mode"] == mode
        assert r["images_per_sec"] == 4 / sorted(r["times"])[1]


def test_train_benchmark_really_trains():
    model = build_model("demo_v1_tiny")
    before = model.classifier.weight.detach().clone()
    benchmark_throughput(model, 32, 4, mode="train", warmup=1, repeats=1)
    assert not torch.equal(before, model.classifier.weight)


def test_pick_device_auto_and_bad_request():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        try:
            pick_device("cuda")
        except RuntimeError as error:
            assert "--device cpu" in str(error)
        else:
            raise AssertionError("cuda without CUDA must fail clearly")


def test_train_progressive_paper_trains_table_6_end_to_end(tmp_path, capsys):
    """``effnetv2 train --progressive paper``: Algorithm 1 with Table 6's EfficientNetV2-S ranges (image size
    128 -> 300, RandAugment 5 -> 15, dropout 0.1 -> 0.3), one epoch per stage; the built-in set evaluates at 64 px
    unless told, so at 300 here."""
    out = tmp_path / "run"
    assert main(["train", "--model", "efficientnetv2_s", "--dataset", "synthetic", "--recipe", "simple",
                 "--epochs", "4", "--progressive", "paper", "--eval-size", "300", "--train-samples", "8",
                 "--batch-size", "4", "--max-steps-per-epoch", "1", "--workers", "0", "--device", "cpu",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [0, 1, 2, 3]
    assert (rows[0]["image_size"], rows[-1]["image_size"]) == (128, 300)
    assert (rows[0]["randaug_magnitude"], rows[-1]["randaug_magnitude"]) == (5.0, 15.0)
    assert (rows[0]["dropout"], rows[-1]["dropout"]) == (0.1, 0.3)
    assert all(a["image_size"] < b["image_size"] and a["dropout"] < b["dropout"]
               and a["randaug_magnitude"] < b["randaug_magnitude"]
               for a, b in zip(rows, rows[1:]))
    assert json.loads((out / "config.json").read_text())["progressive"]["source"] == "paper Table 6"
    assert "final top-1" in capsys.readouterr().out


def test_the_papers_recipe_at_a_fixed_size_trains_with_its_last_stages_regularization(tmp_path, capsys):
    """``effnetv2 train --recipe paper`` without ``--progressive`` on V2-S: Table 6's last stage (RandAugment 15,
    mixup 0, dropout 0.3), printed and recorded in config.json; a value given on the command line wins, and a
    recipe of ours keeps RandAugment off."""
    common = ["--model", "efficientnetv2_s", "--dataset", "synthetic", "--epochs", "1", "--train-samples", "4",
              "--image-size", "32", "--batch-size", "4", "--max-steps-per-epoch", "1", "--workers", "0", "--device", "cpu"]
    runs = {"paper": ["--recipe", "paper"], "given": ["--recipe", "paper", "--randaug-magnitude", "7"],
            "simple": ["--recipe", "simple"]}
    for name, extra in runs.items():
        assert main(["train", *common, *extra, "--out", str(tmp_path / name)]) == 0
    config = {name: json.loads((tmp_path / name / "config.json").read_text())["config"] for name in runs}
    assert (config["paper"]["randaug_magnitude"], config["paper"]["mixup_alpha"], config["paper"]["dropout"]) == (15.0, 0.0, 0.3)
    assert (config["given"]["randaug_magnitude"], config["given"]["dropout"]) == (7.0, 0.3)
    assert (config["simple"]["randaug_magnitude"], config["simple"]["dropout"]) == (0.0, None)
    assert "recipe paper at a fixed size: randaug magnitude 15, mixup alpha 0, dropout 0.3 from the last stage of paper " \
           "Table 6" in capsys.readouterr().out


def test_the_command_line_and_the_library_train_the_same_run_from_the_same_settings(tmp_path):
    """One place (engine.build) applies every recipe rule: `effnetv2 train` and `fit(TrainConfig(...))` given the
    same settings write the same config.json (the fixed-size rule's RandAugment 15 and dropout 0.3 included) and
    train the same first step (same loss to the last bit)."""
    from effnetv2_mini.engine.config import TrainConfig
    from effnetv2_mini.engine.loop import fit

    settings = dict(model="efficientnetv2_s", dataset="synthetic", epochs=1, image_size=32, batch_size=4,
                    max_steps_per_epoch=1, workers=0, device="cpu", recipe="paper", seed=3)
    options = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    assert main(["train", *options, "--train-samples", "4", "--out", str(tmp_path / "cli")]) == 0
    fit(TrainConfig(**settings, synthetic={"num_samples": 4}, out_dir=str(tmp_path / "library")))
    recorded = {name: json.loads((tmp_path / name / "config.json").read_text()) for name in ("cli", "library")}
    for record in recorded.values():
        record["config"].pop("out_dir")
    assert recorded["cli"] == recorded["library"]
    assert recorded["cli"]["config"]["randaug_magnitude"] == 15.0 and recorded["cli"]["config"]["dropout"] == 0.3
    assert recorded["cli"]["fixed_size_regularization"]["source"] == "the last stage of paper Table 6"
    losses = [json.loads((tmp_path / name / "metrics.jsonl").read_text())["train_loss"] for name in ("cli", "library")]
    assert losses[0] == losses[1]


def test_bench_vs_torchvision_times_ours_with_its_defaults_beside_torchvisions_eager_model(tmp_path):
    """--ours-defaults and --candidates add entries timed in the same rounds; the JSON carries both ratios."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_vs_torchvision

    out = tmp_path / "tv.json"
    summary = bench_vs_torchvision.main(["--model", "efficientnet_b0", "--image-size", "32", "--batch-size", "2",
                                         "--rounds", "2", "--repeats", "1", "--warmup", "1", "--modes", "train",
                                         "--ours-defaults", "--candidates", "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary))
    train = summary["results"]["train"]
    assert set(train) == {"ours", "torchvision", "ours (defaults)", *bench_vs_torchvision.CANDIDATES}
    assert all(len(r["per_round_ratios"]) == 2 and r["images_per_sec"] > 0 for r in train.values())
    assert summary["defaults"] == {"amp": False, "channels_last": True}  # a CPU: see speed_defaults
    assert summary["ratio_defaults_vs_torchvision_eager"] == train["ours (defaults)"]["ratio_to_torchvision"]
    with pytest.raises(SystemExit, match="no twin of 'efficientnetv2_b0'"):
        bench_vs_torchvision.main(["--model", "efficientnetv2_b0"])


def test_bench_vs_torchvision_compile_break_even_counts_images_until_the_compile_time_is_won_back():
    """10 s of compiling, steps at 10 img/s eager and 20 img/s compiled: 0.05 s saved per image, so 200 images."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import bench_vs_torchvision

    assert bench_vs_torchvision.break_even_images(10.0, compiled_rate=20.0, eager_rate=10.0) == pytest.approx(200.0)
    assert bench_vs_torchvision.break_even_images(10.0, compiled_rate=9.0, eager_rate=10.0) is None  # never
    assert bench_vs_torchvision.break_even_images(10.0, compiled_rate=10.0, eager_rate=10.0) is None
