"""The training engine: it learns, resumes exactly, refuses bad states, and runs under DDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effnetv2_mini.engine.checkpoint import load_checkpoint
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.errors import TrainingDiverged
from effnetv2_mini.engine.loop import fit
from effnetv2_mini.paper.optim import RMSpropTF, lr_factor, param_groups
from effnetv2_mini.paper.recipe import RECIPES

TIMING = {"images_per_sec", "epoch_seconds", "wall_time", "peak_memory_mb"}


def tiny_config(out_dir, **overrides):
    values = dict(model="demo_v2_tiny", dataset="synthetic", epochs=3, batch_size=32, image_size=32, recipe="simple",
                  workers=0, synthetic={"num_samples": 256}, quiet=True, out_dir=str(out_dir), seed=3)
    values.update(overrides)
    return TrainConfig(**values)


def read_metrics(out_dir):
    return [json.loads(line) for line in Path(out_dir, "metrics.jsonl").read_text().splitlines()]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def test_a_small_model_learns_the_builtin_set(tmp_path):
    """At least twice chance accuracy (20% for 10 classes) on held-out data within a minute of CPU.

    Measured: 59-62% after these 8 epochs for seeds 0-2, about 15 s on 2 cores."""
    config = tiny_config(tmp_path, epochs=8, batch_size=64, image_size=48, synthetic={"num_samples": 2000}, seed=0)
    summary = fit(config)
    assert summary["top1"] >= 20.0, summary
    rows = read_metrics(tmp_path)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    expected = {"epoch", "train_loss", "val_top1", "val_top5", "lr", "image_size", "dropout", "randaug_magnitude",
                "mixup_alpha", "images_per_sec", "wall_time", "peak_memory_mb", "skipped_images", "stage"}
    assert expected <= set(rows[0])
    config_json = json.loads((tmp_path / "config.json").read_text())
    assert config_json["device"] == "cpu" and config_json["config"]["optimizer"] == "adamw"
    assert "library_version" in config_json and config_json["steps_per_epoch"] == 31 and config_json["peak_lr"] == 0.004


@pytest.mark.parametrize("workers", [0, 2])
def test_interrupted_and_resumed_run_matches_an_uninterrupted_one(tmp_path, workers):
    options = dict(workers=workers, recipe="paper", ema_decay=0.9, randaug_magnitude=5, mixup_alpha=0.2,
                   drop_path_rate=0.1, warmup_epochs=1.0)
    fit(tiny_config(tmp_path / "straight", **options))
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path / "resumed", **options), stop_after_steps=11)  # mid-epoch 2 (8 steps/epoch)
    checkpoint = load_checkpoint(tmp_path / "resumed" / "last.pt")  # weights_only=True
    assert checkpoint["epoch"] == 1 and checkpoint["batches_done"] == 3
    fit(tiny_config(tmp_path / "resumed", **options))
    assert without_timing(read_metrics(tmp_path / "resumed")) == without_timing(read_metrics(tmp_path / "straight"))
    assert len(read_metrics(tmp_path / "straight")) == 3 and "ema_top1" in read_metrics(tmp_path / "straight")[0]


def test_gradient_accumulation_steps_once_per_group_scales_the_lr_and_resumes_exactly(tmp_path):
    """accumulate=2 at batch 32: global batch 64 (lr 0.016 * 64 / 256 = 0.004), 4 optimizer steps
    per epoch of 8 batches; a stop request mid-group stops at the next batch (batch 3 of epoch 2)
    with the group's first batch's gradients in the checkpoint, and the resumed run equals the
    uninterrupted one."""
    options = dict(accumulate=2, ema_decay=0.9, ema_reference_batch=64)
    fit(tiny_config(tmp_path / "straight", **options))
    recorded = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert (recorded["global_batch"], recorded["peak_lr"], recorded["steps_per_epoch"]) == (64, 0.004, 8)
    assert recorded["ema_decay_per_step"] == pytest.approx(0.9)  # 0.9 ** (64 / 64)
    optimizer_state = load_checkpoint(tmp_path / "straight" / "last.pt")["optimizer"]["state"]
    assert {int(state["step"]) for state in optimizer_state.values()} == {12}  # 3 epochs x 4 steps
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path / "resumed", **options), stop_after_steps=11)
    stopped = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert stopped["batches_done"] == 3
    assert {k: stopped["accumulation"][k] for k in ("batches", "accumulate", "kept")} == {
        "batches": 1, "accumulate": 2, "kept": "gradients"}
    fit(tiny_config(tmp_path / "resumed", **options))
    assert without_timing(read_metrics(tmp_path / "resumed")) == without_timing(read_metrics(tmp_path / "straight"))


def test_the_short_recipe_initialises_the_classifier_with_imagenets_range(tmp_path):
    """Official rule: U(+-1/sqrt(classes)), +-0.316 on 10 classes; `short` keeps ImageNet's +-1/sqrt(1000) = 0.0316."""
    from effnetv2_mini.engine.build import build_network
    from effnetv2_mini.engine.distributed import DistInfo

    info = DistInfo(rank=0, world=1, local_rank=0)
    short = TrainConfig(model="efficientnetv2_b0", recipe="short", num_classes=10).resolved()
    paper = TrainConfig(model="efficientnetv2_b0", recipe="paper", num_classes=10).resolved()
    assert (short.head_init_classes, paper.head_init_classes) == (1000, None)
    widest = {name: build_network(config, info, fresh=True).classifier.weight.abs().max().item()
              for name, config in (("short", short), ("paper", paper))}
    assert 0.9 * 0.0316 < widest["short"] <= 0.031623 and 0.9 * 0.3162 < widest["paper"] <= 0.316228


def test_finished_run_is_a_noop(tmp_path):
    config = tiny_config(tmp_path, epochs=1)
    first = fit(config)
    stamp = (tmp_path / "last.pt").stat().st_mtime_ns
    assert fit(config) == first
    assert (tmp_path / "last.pt").stat().st_mtime_ns == stamp
    assert (tmp_path / "best.pt").exists()


def test_resuming_with_other_settings_is_refused(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_config(tmp_path), stop_after_steps=2)
    with pytest.raises(ValueError, match="different settings.*batch_size: 32 -> 16"):
        fit(tiny_config(tmp_path, batch_size=16))


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    fit(tiny_config(tmp_path, epochs=1))
    good = (tmp_path / "last.pt").read_bytes()
    path = tmp_path / "diverging"
    with pytest.raises(TrainingDiverged, match="(loss became (nan|inf)|became NaN or infinite).*no checkpoint was written"):
        fit(tiny_config(path, epochs=2, optimizer="sgd", lr=1e30))  # diverges in its first epoch: nothing to keep
    assert (tmp_path / "last.pt").read_bytes() == good
    assert not (path / "last.pt").exists()


def test_lr_schedule_warmup_then_staircase_decay():
    config = TrainConfig(recipe="paper", epochs=350).resolved()
    assert lr_factor(0.0, config) == pytest.approx(0.0, abs=1e-6)
    assert lr_factor(2.5, config) == pytest.approx(0.5)
    assert lr_factor(5.0, config) == pytest.approx(0.97 ** 2)  # decay counted from step 0: floor(5 / 2.4) = 2
    assert lr_factor(24.0, config) == pytest.approx(0.97 ** 10)
    cosine = TrainConfig(recipe="simple", epochs=11).resolved()
    # The official cosine counts from step 0: 0.5 (1 + cos(pi * epoch / epochs)) once the warm-up is over.
    assert lr_factor(0.5, cosine) == pytest.approx(0.5)  # warming up
    assert lr_factor(1.0, cosine) == pytest.approx(0.9797464, abs=1e-6)  # 0.5 (1 + cos(pi / 11))
    assert lr_factor(5.5, cosine) == pytest.approx(0.5) and lr_factor(11.0, cosine) == pytest.approx(0.0, abs=1e-9)
    assert RECIPES["paper"]["base_lr"] == 0.016 and config.weight_decay == 1e-5 and config.ema_decay == 0.9999
    flat = TrainConfig(recipe="short", epochs=8, schedule="flat_cosine").resolved()
    # fastai's fit_flat_cos: the peak until 75% of the run (epoch 6 of 8), then 0.5 (1 + cos(pi * (e - 6) / 2))
    assert lr_factor(0.5, flat) == pytest.approx(0.5) and lr_factor(3.0, flat) == 1.0 and lr_factor(6.0, flat) == 1.0
    assert lr_factor(7.0, flat) == pytest.approx(0.5) and lr_factor(8.0, flat) == pytest.approx(0.0, abs=1e-9)


def test_rmsprop_follows_a_tensorflow_1_trace():
    """Literals from an independent plain-Python trace of TF1's ApplyRMSProp kernel (ms starts at ONE;
    ms += (g^2 - ms)(1 - rho); mom = momentum*mom + lr*g/sqrt(ms + eps); w -= mom), lr 0.1, rho 0.9, momentum 0.9,
    eps 1e-3, gradients 2, -1, 0.5, 3 from w = 1. A zero-initialised accumulator would give w = 0.6842 after step 1."""
    weight = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    optimizer = RMSpropTF([weight], lr=0.1, alpha=0.9, eps=1e-3, momentum=0.9)
    expected = [0.8246558232423198, 0.7555468004239246, 0.6471038965827479, 0.3347919071369042]
    for grad, want in zip([2.0, -1.0, 0.5, 3.0], expected):
        weight.grad = torch.tensor([grad], dtype=torch.float64)
        optimizer.step()
        assert weight.item() == pytest.approx(want, rel=1e-12)
    assert optimizer.state[weight]["square_avg"].item() == pytest.approx(1.9511999999999996, rel=1e-12)


def test_the_ema_decay_is_scaled_to_the_batch_it_was_set_for():
    """0.9999 per step at a global batch of 4096 (the official recipe) is 0.9999 ** (64 / 4096) per step at 64."""
    from effnetv2_mini.engine.build import ema_decay_per_step

    paper = TrainConfig(recipe="paper", batch_size=64).resolved()
    assert ema_decay_per_step(paper) == pytest.approx(0.9999984374, abs=1e-10)
    assert ema_decay_per_step(paper, world=64) == pytest.approx(0.9999)  # 64 processes of 64: the recipe's batch
    assert ema_decay_per_step(TrainConfig(recipe="simple", ema_decay=0.99).resolved()) == 0.99  # no reference: as given


def test_weight_decay_skips_batchnorm_and_bias():
    from effnetv2_mini import build_model

    decay, no_decay = param_groups(build_model("demo_v1_tiny"), 1e-5)
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 1e-5


def test_ddp_two_processes_write_one_set_of_metrics(tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "effnetv2_mini.cli", "train", "--nproc", "2", "--model", "demo_v2_tiny",
               "--dataset", "synthetic", "--train-samples", "256", "--epochs", "2", "--batch-size", "16",
               "--image-size", "32", "--recipe", "simple", "--workers", "0", "--device", "cpu", "--quiet",
               "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = read_metrics(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    config = json.loads((out / "config.json").read_text())
    assert config["world_size"] == 2 and config["steps_per_epoch"] == 8  # 256 images / (16 x 2 processes)
    assert result.stdout.count("final top-1") == 1  # the launching process alone reports


def test_launch_config_round_trips_through_json(tmp_path):
    """What ``launch(nproc > 1)`` hands to torchrun: the config as JSON, read back by
    ``python -m effnetv2_mini.engine.launch``."""
    import dataclasses

    from effnetv2_mini.engine.launch import _main

    config = tiny_config(tmp_path / "run", epochs=1, crop_scale=(0.5, 1.0))
    spec = tmp_path / "launch.json"
    spec.write_text(json.dumps({"config": dataclasses.asdict(config), "schedule": None}))  # what launch() writes
    _main(["--config", str(spec)])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["crop_scale"] == [0.5, 1.0]
    assert len(read_metrics(tmp_path / "run")) == 1
