"""The full plans train as the official code (issue 34): each fine-tuning at a global batch of 512,
Flowers102 on train + val, ImageNet-21k at 4096, 15 epochs on ImageNet, BatchNorm per optimizer step
under accumulation, each network of notebook 07 at its own sizes, the random ablation every 8
epochs, and a rehearsal of the full plans' fine-tunings through the same batch arithmetic.

Official values are literals from google/automl efficientnetv2 at commit 6a54c87 (file:line beside
each)."""

import dataclasses
import json
import math

import pytest
import torch

from effnetv2_mini.data import datasets as datasets_module
from effnetv2_mini.data.datasets import TRAIN_IMAGES, get_dataset
from effnetv2_mini.engine.build import ema_decay_per_step
from effnetv2_mini.engine.config import (
    TrainConfig,
    bn_momentum_per_batch,
    global_batch,
    optimizer_steps_per_epoch,
    split_global_batch,
)
from effnetv2_mini.engine.finetune import finetune_config, imagenet21k_config
from effnetv2_mini.engine.rundir import open_run
from effnetv2_mini.paper.progressive import variant
from effnetv2_mini.paper.transfer import finetune_length
from effnetv2_mini.study.claims import PAPER_SETTINGS, comparable
from effnetv2_mini.study.experiments.common import known_differences
from effnetv2_mini.study.experiments.progressive import comparison_schedule
from effnetv2_mini.study.experiments.results import Conditions
from effnetv2_mini.study.experiments.transfer import finetune_run_config, transfer
from effnetv2_mini.study.profiles import ParameterError, notebook_profile

OFFICIAL_FT_BATCH = 512  # datasets.py:708 (ImagenetFt train.batch_size)
OFFICIAL_FT_LR_BASE = 0.0005  # datasets.py:713, per 256 images (main.py:157: lr_base * batch / 256)
OFFICIAL_MIN_STEPS = 10_000  # datasets.py:718 (main.py:381-383: max(min_steps, epochs * N // B))
OFFICIAL_FT_EPOCHS = 15  # datasets.py:710
OFFICIAL_FT_EMA = 0.9996  # datasets.py:715
OFFICIAL_BATCH = 4096  # hparams.py:262 (ImageNet21k keeps it: datasets.py:666-695 sets none)


def _full_transfer(dataset: str, model: str = "efficientnetv2_s"):
    settings = notebook_profile("06_transfer", "full_transfer")
    return finetune_run_config(model, dataset, "torchvision", settings, "runs/x", settings.nproc,
                               train_size=TRAIN_IMAGES[dataset])


def test_a_global_batch_splits_into_processes_and_accumulated_batches():
    assert split_global_batch(512, 8, 64) == (64, 1)
    assert split_global_batch(4096, 8, 64) == (64, 8)
    assert split_global_batch(512, 1, 64) == (64, 8)
    assert split_global_batch(8, 2, 4) == (4, 1) and split_global_batch(24, 1, 5) == (4, 6)
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        split_global_batch(512, 3, 64)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "flowers102", "stanford_cars"])
def test_full_transfer_fine_tunes_at_the_official_global_batch_and_steps(dataset):
    """Item 1: 512 images per optimizer step over the plan's 8 processes, lr 0.001, 10,000 steps
    (whole epochs add less than one epoch), EMA 0.9996 per step at 512."""
    config = _full_transfer(dataset)
    assert global_batch(config, 8) == OFFICIAL_FT_BATCH
    assert (config.batch_size, config.accumulate) == (64, 1)
    assert config.resolved().base_lr * global_batch(config, 8) / 256 == pytest.approx(0.001)
    assert OFFICIAL_FT_LR_BASE * OFFICIAL_FT_BATCH / 256 == pytest.approx(0.001)
    per_epoch = optimizer_steps_per_epoch(TRAIN_IMAGES[dataset], config.batch_size, 8,
                                          config.accumulate)
    steps = config.epochs * per_epoch
    assert OFFICIAL_MIN_STEPS <= steps < OFFICIAL_MIN_STEPS + per_epoch
    assert ema_decay_per_step(config.resolved(), 8) == pytest.approx(OFFICIAL_FT_EMA)
    resolved = config.resolved()
    # isize 1.0 of V2-S's eval size (effnetv2_configs.py:193)
    assert (resolved.image_size, resolved.eval_size) == (384, 384)


def test_flowers102_trains_on_train_and_val(monkeypatch, tmp_path):
    """Item 2: official datasets.py:579 trains on tfds_split 'train+validation' and evaluates on
    'test' (:581): 2,040 and 6,149 images (paper Table 9)."""
    made = []

    class FakeFlowers(torch.utils.data.Dataset):
        classes = [f"c{i}" for i in range(102)]

        def __init__(self, root, split, download=False):
            made.append(split)
            count = {"train": 1020, "val": 1020, "test": 6149}[split]
            self._labels = [i % 102 for i in range(count)]

        def __len__(self):
            return len(self._labels)

        def __getitem__(self, index):
            return torch.zeros(3, 8, 8), self._labels[index]

    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, "Flowers102", FakeFlowers)
    train = get_dataset("flowers102", "train", root=tmp_path)
    assert made == ["train", "val"] and len(train) == TRAIN_IMAGES["flowers102"] == 2_040
    assert len(train.base.targets) == 2_040 and train.base.classes == FakeFlowers.classes
    assert len(get_dataset("flowers102", "val", root=tmp_path)) == 6_149 and made[-1] == "test"
    assert datasets_module.DATASETS.count("flowers102") == 1


def test_imagenet21k_pretrains_at_the_official_4096():
    """Item 3: the full_imagenet21k plan pretrains at 64 x 8 GPUs x 8 accumulated = 4096
    (hparams.py:262), lr 0.008 per 256 = 0.128 (datasets.py:683), EMA 0.9999 per step
    (hparams.py:256), 60 epochs (datasets.py:682)."""
    settings = notebook_profile("06_transfer", "full_imagenet21k")
    config = imagenet21k_config("efficientnetv2_s", "data", "runs/x",
                                global_batch=settings.pretrain_global_batch,
                                processes=settings.nproc, batch_size=settings.batch_size)
    assert (config.batch_size, config.accumulate) == (64, 8)
    assert global_batch(config, settings.nproc) == OFFICIAL_BATCH
    resolved = config.resolved()
    assert resolved.base_lr * OFFICIAL_BATCH / 256 == pytest.approx(0.128) and config.epochs == 60
    assert ema_decay_per_step(resolved, 8) == pytest.approx(0.9999)
    one_process = imagenet21k_config("efficientnetv2_s", "data", "x")
    assert one_process.accumulate * one_process.batch_size == OFFICIAL_BATCH


def test_batchnorm_statistics_move_once_per_optimizer_step_under_accumulation(tmp_path):
    """Item 4: the official code updates BN's moving statistics once per step of the global batch
    with decay 0.9 (hparams.py:228; PyTorch momentum 0.1). Under 8 accumulated batches each moves by
    1 - 0.9 ** (1/8), so that after one optimizer step the statistics moved as far as the official
    single update."""
    per_batch = bn_momentum_per_batch(0.1, 8)
    bn = torch.nn.BatchNorm1d(1, momentum=per_batch)
    for _ in range(8):
        bn(torch.full((4, 1), 1.0) + torch.tensor([[-1.0], [1.0], [-1.0], [1.0]]))  # batch mean 1
    assert bn.running_mean.item() == pytest.approx(1 - 0.9)
    assert bn_momentum_per_batch(0.1, 1) == 0.1 and bn_momentum_per_batch(None, 8) is None
    config = TrainConfig(model="demo_v2_tiny", recipe="simple", batch_size=4, accumulate=8,
                         bn_momentum=0.1, epochs=1, workers=0, quiet=True, image_size=32,
                         synthetic={"num_samples": 64}, out_dir=str(tmp_path))
    run = open_run(config)
    try:
        momenta = {m.momentum for m in run.model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
        assert len(momenta) == 1 and momenta.pop() == pytest.approx(per_batch)
        recorded = json.loads((tmp_path / "config.json").read_text())
        assert recorded["bn_momentum_per_batch"] == pytest.approx(per_batch)
    finally:
        run.data.close()
        run.release()


def test_each_network_of_the_full_table10_plan_has_its_own_sizes_and_schedule():
    """Item 5: V2-M with Table 6 (128 -> 380 px, RandAugment 5 -> 20, mixup 0 -> 0.2, dropout 0.1 ->
    0.4) evaluated at 480 (effnetv2_configs.py:195); EfficientNet-B7 at its own 600 px
    (effnetv2_configs.py:113), trained up to 0.8 of it, 480 (:133); ResNet-50 at torchvision's 224
    (Table 12's ResNet50 (224))."""
    settings = notebook_profile("07_faster_training", "full")
    expected = {"efficientnetv2_m": (128, 380, 480, (5, 20), (0.1, 0.4), (0, 0.2)),
                "efficientnet_b7": (128, 480, 600, (5, 20), (0.1, 0.4), (0, 0.2)),
                "resnet50": (128, 224, 224, (5, 15), (0.1, 0.3), (0, 0))}
    for model, (first, last, eval_size, randaug, dropout, mixup) in expected.items():
        stages = comparison_schedule(settings, model=model)
        s0, s1 = stages.stages[0], stages.stages[-1]
        assert (s0.image_size, s1.image_size, stages.eval_size) == (first, last, eval_size), model
        assert (s0.randaug_magnitude, s1.randaug_magnitude) == pytest.approx(randaug), model
        assert (s0.dropout, s1.dropout) == pytest.approx(dropout), model
        assert (s0.mixup_alpha, s1.mixup_alpha) == pytest.approx(mixup), model
    assert comparison_schedule(settings, model="efficientnetv2_m").source == "paper Table 6"
    with pytest.raises(ParameterError, match="per_model"):
        notebook_profile("07_faster_training", "full",
                         per_model={"efficientnet_b0": {"eval_size": 224}})
    with pytest.raises(ParameterError, match="per_model"):
        notebook_profile("07_faster_training", "full", per_model={"resnet50": {"image_size": 224}})


def _full_07_conditions(**per_model) -> Conditions:
    own = {"efficientnetv2_m": {"schedule": "paper Table 6", "eval_size": 480,
                                "image_sizes": [128, 216, 296, 380]},
           "efficientnet_b7": {"schedule": "full profile, Table 6 shape", "eval_size": 600}}
    own.update(per_model)
    return Conditions(profile="full", dataset="imagenet", epochs=350, recipe="paper",
                      global_batch=4096,
                      per_model=own)


def test_the_comparability_check_sees_each_networks_own_settings():
    setting = PAPER_SETTINGS["time_to_accuracy"]
    assert comparable(_full_07_conditions(), setting).label == "yes"
    b7_at_480 = comparable(_full_07_conditions(efficientnet_b7={"eval_size": 480}), setting)
    assert b7_at_480.label == "no" and "efficientnet_b7: eval_size 480" in b7_at_480.why
    missing = dataclasses.replace(_full_07_conditions(), per_model={})
    assert "own settings not recorded" in comparable(missing, setting).why


def test_the_21k_to_1k_fine_tune_is_15_epochs():
    """Item 6: on ImageNet, the paper fine-tunes 15 epochs with cosine decay (section 5.2); weight
    decay 1e-5 as the official code (datasets.py:716; the paper names none for this step); the
    code's recipe: constant lr, max(10,000 steps, 15 epochs) (datasets.py:710, :712, :718). With the
    plan's 512 on 8 processes: 15 epochs."""
    settings = notebook_profile("06_transfer", "full_imagenet21k")
    for recipe, schedule, bn in (("paper", "cosine", 0.01), ("code", "constant", 0.1)):
        chosen = dataclasses.replace(settings, finetune_recipe=recipe)
        config = finetune_run_config("efficientnetv2_s", "imagenet", "x.pt", chosen, "runs/x",
                                     settings.nproc, train_size=TRAIN_IMAGES["imagenet"])
        assert config.epochs == OFFICIAL_FT_EPOCHS and global_batch(config, 8) == OFFICIAL_FT_BATCH
        resolved = config.resolved()
        assert (resolved.schedule, resolved.weight_decay) == (schedule, 1e-5)
        assert resolved.bn_momentum == bn
    code = {"steps": OFFICIAL_MIN_STEPS, "min_epochs": OFFICIAL_FT_EPOCHS}
    assert finetune_length(code, 97) == (104, 10_088)  # CIFAR-10 at 512: 10,000 in whole epochs
    assert finetune_length(code, 2_502) == (15, 37_530)  # ImageNet at 512: 15 epochs
    assert finetune_length({"steps": 0, "min_epochs": 15}, 2_502) == (15, 37_530)


def test_the_random_ablation_redraws_every_8_epochs_in_the_full_plan():
    """Item 7: Table 13's random resizing draws a new size every 8 epochs (docs/paper.md)."""
    settings = notebook_profile("05_progressive_learning", "full")
    assert settings.random_every == 8
    schedule = variant(comparison_schedule(settings), "random", every=settings.random_every, seed=0)
    stages = [schedule.stage_index(e) for e in range(64)]
    assert all(len(set(stages[i:i + 8])) == 1 for i in range(0, 64, 8)) and len(set(stages)) > 1


def test_known_differences_reach_the_comparability_check():
    """Item 8: V2-B0..B3 and V1 trained with no augmentation where the official code uses
    AutoAugment (effnetv2_configs.py:134, :204-210); any known difference makes a result not the
    paper's."""
    plain = TrainConfig(model="efficientnetv2_b0", recipe="paper")
    assert known_differences(plain) == ["efficientnetv2_b0 trained with no augmentation; the "
                                        "official code uses V1's AutoAugment"]
    assert known_differences(dataclasses.replace(plain, randaug_magnitude=10.0)) == []
    assert known_differences(TrainConfig(model="efficientnetv2_s", recipe="paper")) == []
    conditions = Conditions(profile="full_transfer", dataset="cifar10", recipe="finetune paper",
                            global_batch=512,
                            lr=0.001)
    assert comparable(conditions, PAPER_SETTINGS["transfer"]).label == "yes"
    conditions.differences = ["100 fine-tuning steps, the recipe's: 10000"]
    assert "100 fine-tuning steps" in comparable(conditions, PAPER_SETTINGS["transfer"]).why
    at_4096 = Conditions(profile="full_transfer", dataset="cifar10", recipe="finetune paper",
                         global_batch=4096,
                         lr=0.008)
    assert "global_batch 4096" in comparable(at_4096, PAPER_SETTINGS["transfer"]).why


def test_the_cli_fine_tunes_with_table_8_when_asked():
    """Item 8: `effnetv2 train --init-from X --finetune-recipe paper` is Table 8's recipe: global
    batch 512 (here 64 per process x 8 accumulated), the eval size, cosine, no weight decay."""
    from effnetv2_mini.cli import _finetune_config, build_parser

    args = build_parser().parse_args(["train", "--model", "efficientnetv2_s", "--dataset",
                                      "synthetic_b", "--out", "runs/x", "--init-from",
                                      "torchvision", "--finetune-recipe", "paper",
                                      "--train-samples", "4096"])
    fields = {k: v for k, v in vars(args).items()
              if k in TrainConfig.__dataclass_fields__ and v is not None}
    config = _finetune_config(args, fields, {"num_samples": 4096})
    assert (config.batch_size, config.accumulate) == (64, 8)
    assert (config.schedule, config.weight_decay, config.recipe) == ("cosine", 0.0, "paper")
    assert config.epochs == math.ceil(10_000 / 8)  # 4096 images: 8 steps of 512 per epoch


@pytest.mark.parametrize("plan, sets", [("full_transfer", ["flowers102"]),
                                        ("full_imagenet21k", ["imagenet"])])
def test_rehearsal_of_the_full_plans_fine_tuning(plan, sets, tmp_path):
    """The full plans' fine-tunings (and the ImageNet-21k pretraining) at a miniature scale: global
    batches / 64 (512 -> 8, 4096 -> 64), the first run through torchrun on 2 processes, the others
    in one process with accumulation, the same global batch throughout; Flowers102's stand-in as
    many global batches long as Flowers102 (2,040 / 512 ~ 4: 32 images at 8)."""
    from reproduce.rehearse import prepare, rehearsal_parameters

    data = prepare(tmp_path / "data")
    given = rehearsal_parameters("06_transfer", {"profile": plan}, data)
    given = {k: v for k, v in given.items() if k not in ("profile", "rehearse")}
    settings = notebook_profile("06_transfer", plan, rehearse=True, **given, transfer_sets=sets,
                                workers=0)
    result = transfer(settings, str(tmp_path / "out"))
    arithmetic = [(r["processes"], r["batch_size"], r["accumulate"]) for r in result.rows]
    assert arithmetic == [(2, 4, 1), (1, 4, 2)]
    assert {r["global_batch"] for r in result.rows} == {8}
    assert {r["optimizer_steps"] for r in result.rows} == {2}
    assert all(r["lr"] == pytest.approx(OFFICIAL_FT_LR_BASE * 8 / 256) for r in result.rows)
    c = result.conditions
    assert (c.global_batch, c.optimizer_steps) == (8, 2)
    assert c.rehearsal and not c.crops_from_cache
    assert comparable(c, PAPER_SETTINGS["transfer"]).label == "no"
    if plan == "full_transfer":
        # Flowers102's stand-in
        assert result.rows[0]["train_images"] == math.ceil(2_040 / 64) == 32
        assert c.fallback_notice and result.rows[0]["requested"] == "flowers102"
    else:
        pre = result.pretraining["efficientnetv2_s"]
        assert (pre["global_batch"], pre["processes"]) == (64, 2)
        assert (pre["batch_size"], pre["accumulate"]) == (4, 8)
        assert pre["lr"] == pytest.approx(0.008 * 64 / 256) and pre["num_classes"] == 21_841


def test_a_data_set_smaller_than_the_global_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one global batch of 512"):
        finetune_config("efficientnetv2_s", "flowers102", None, train_size=500, processes=8)


def test_the_plans_table_in_docs_is_the_generated_one():
    """docs/paper.md's table of every quick and full plan training (global batch, lr, steps, sizes,
    schedule beside the official values) is what reproduce.plan_table computes from the profiles
    now."""
    from reproduce.plan_table import DOC, END, START, markdown, plan_rows

    table = DOC.read_text().split(START)[1].split(END)[0].strip()
    assert table == markdown().strip(), "stale: run python -m reproduce.plan_table --write"
    rows = {(r["plan"], r["run"], r["data"]): r for r in plan_rows("full_transfer")}
    flowers = rows[("full_transfer", "efficientnetv2_s fine-tuned (x2)", "flowers102")]
    assert (flowers["global batch"], flowers["steps"]) == (512, 10_002)
    assert flowers["official"]["steps"] == 10_000
    table7 = next(r for r in plan_rows("full") if r["nb"] == "02")
    assert (table7["global batch"], table7["lr"]) == (OFFICIAL_BATCH, 0.256)
    assert table7["per process"] == "64 x 8 x 8"


def test_cached_crops_are_recorded_by_the_search_and_the_transfer(tmp_path, monkeypatch):
    """Item 8: notebooks 04 and 06 record crops cut from the decoded-image cache, as 02, 05 and 07
    do (a result with them is not the paper's setting)."""
    from effnetv2_mini.study.experiments.search import nas_search
    from effnetv2_mini.study.experiments.transfer import _conditions
    from reproduce.rehearse import prepare

    monkeypatch.setenv("EFFNETV2_CACHE", str(tmp_path / "cache"))
    data = prepare(tmp_path / "data")
    settings = notebook_profile("04_nas", "smoke", dataset="imagefolder", data_root=str(data),
                                cache=True, trials=1, epochs=1, image_size=32, batch_size=4)
    conditions = nas_search(settings, str(tmp_path / "nas")).conditions
    assert conditions.crops_from_cache and conditions.global_batch == 4
    assert "decoded-image cache" in comparable(conditions, {}).why
    row = {"processes": 1, "global_batch": 8, "optimizer_steps": 2, "lr": 0.001,
           "lr_schedule": "cosine", "num_classes": 5, "val_images": 10, "accuracy": "x"}
    six = notebook_profile("06_transfer", "laptop", cache=True)
    photos = _conditions(six, "cpu", [dict(row, dataset="imagenette")], [], 1.0)
    torchvision_sets = _conditions(six, "cpu", [dict(row, dataset="cifar10")], [], 1.0)
    assert photos.crops_from_cache and not torchvision_sets.crops_from_cache
