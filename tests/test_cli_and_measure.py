"""The effnetv2 command and the throughput benchmark."""

import torch

from effnetv2_mini import build_model
from effnetv2_mini.cli import main
from effnetv2_mini.devices import pick_device
from effnetv2_mini.measure import benchmark_throughput


def test_summary_prints_table_4(capsys):
    assert main(["summary", "efficientnetv2_s"]) == 0
    out = capsys.readouterr().out
    assert "Fused-MBConv4, k3x3" in out and "MBConv6, k3x3, SE0.25" in out and "r15_k3_s2_e6_i160_o256_se0.25" in out


def test_unknown_model_exits_2_with_suggestions(capsys):
    assert main(["summary", "efficientnetv2_ss"]) == 2
    assert "Did you mean efficientnetv2_s" in capsys.readouterr().err


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
