"""Fine-tuning: exact load reports, refused mismatches, transfer beats scratch, the 21k route."""

import json

import pytest
import torch
import torchvision
from PIL import Image

from effnetv2_mini import build_model
from effnetv2_mini.compat import ArchitectureMismatch, load_pretrained, torchvision_key_map
from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.engine.checkpoint import load_checkpoint
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.finetune import finetune_config, from_21k_to_1k, imagenet21k_config
from effnetv2_mini.engine.loop import fit
from effnetv2_mini.paper.transfer import IMAGENET21K_CLASSES


def test_report_is_exact_for_a_new_head():
    source = build_model("demo_v2_tiny", num_classes=6)
    target = build_model("demo_v2_tiny", num_classes=4)
    report = load_pretrained(target, source)
    n_tensors = len(target.state_dict())
    assert report.initialized == ["classifier.weight", "classifier.bias"]
    assert sorted(report.ignored) == ["classifier.bias", "classifier.weight"]  # the old 6-way head
    assert len(report.loaded) == n_tensors - 2
    assert torch.equal(target.stem.conv.weight, source.stem.conv.weight)
    assert "loaded      " in str(report) and "classifier.weight" in str(report)


def test_checkpoint_with_ddp_and_ema_prefixes_and_extra_tensors():
    source = build_model("demo_v1_tiny")
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    state["n_averaged"] = torch.tensor(5)
    target = build_model("demo_v1_tiny")
    report = load_pretrained(target, {"model": state, "model_name": "demo_v1_tiny"}, keep_head=True)
    assert report.ignored == ["n_averaged"] and report.initialized == []
    assert len(report.loaded) == len(target.state_dict())


def test_torchvision_state_dict_is_mapped():
    tv = torchvision.models.efficientnet_b0()
    target = build_model("efficientnet_b0", num_classes=10)
    report = load_pretrained(target, tv.state_dict())
    assert len(report.loaded) == len(torchvision_key_map(target)) - 2 and report.initialized[0] == "classifier.weight"
    assert report.ignored == ["classifier.weight", "classifier.bias"]  # names after mapping to ours


def test_mismatched_checkpoint_is_refused_naming_the_layer(tmp_path):
    source = build_model("demo_v1_tiny")
    with pytest.raises(ArchitectureMismatch, match=r"layer stages\.2\.0\.depthwise\.conv\.weight differs: \(96, 1, 5, 5\)"):
        load_pretrained(build_model("demo_v2_tiny"), source)
    wider = build_model("demo_v2_tiny", width_mult=2.0)
    with pytest.raises(ArchitectureMismatch) as error:
        load_pretrained(build_model("demo_v2_tiny"), wider)
    assert "stem.conv.weight" in str(error.value) and "(32, 3, 3, 3)" in str(error.value)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """demo_v2_tiny trained on the first six synthetic classes (the second task's four are never shown)."""
    out = tmp_path_factory.mktemp("pretrain")
    fit(TrainConfig(model="demo_v2_tiny", dataset="synthetic", epochs=8, recipe="simple", batch_size=64, workers=0,
                    synthetic={"num_samples": 2000, "num_classes": 6}, image_size=48, out_dir=str(out), quiet=True))
    return out / "best.pt"


def test_finetuning_beats_scratch_with_the_same_budget(pretrained, tmp_path):
    """Measured over two seeds on the second built-in task (chance 25%)."""
    results = {"finetune": [], "scratch": []}
    for seed in (0, 1):
        for name, source in (("finetune", str(pretrained)), ("scratch", None)):
            config = finetune_config("demo_v2_tiny", "synthetic_b", source, steps=60, batch_size=64, lr=0.02,
                                     image_size=48, workers=0, quiet=True, seed=seed, synthetic={"num_samples": 800},
                                     out_dir=str(tmp_path / f"{name}{seed}"))
            results[name].append(fit(config)["top1"])
    assert all(f > s for f, s in zip(results["finetune"], results["scratch"])), results
    report = json.loads((tmp_path / "finetune0" / "init_report.json").read_text())
    assert report["initialized"] == ["classifier.weight", "classifier.bias"]
    assert not (tmp_path / "scratch0" / "init_report.json").exists()


def test_finetune_recipes_follow_the_official_ft_config_and_the_paper():
    """Literals from the official datasets.py ImagenetFt (rmsprop, lr_base 0.0005 per 256 = 0.001 at 512, 1 warm-up
    epoch, EMA 0.9996, weight decay 1e-5, dropout ~0, survival 0.8, constant lr, >= 15 epochs, augname 'ft',
    ft_init_ema) and the paper (cosine, 10,000 steps, no weight decay)."""
    paper = finetune_config("efficientnetv2_s", "cifar10", "torchvision", train_size=50_000)
    # the recipe's global batch of 512 (datasets.py:708): 64 per process and batch, 8 accumulated
    assert (paper.batch_size, paper.accumulate) == (64, 8)
    assert (paper.base_lr, paper.optimizer, paper.schedule, paper.weight_decay) == (
        0.0005, "rmsprop", "cosine", 0.0)
    assert (paper.warmup_epochs, paper.ema_decay, paper.dropout, paper.drop_path_rate, paper.label_smoothing) == (
        1.0, 0.9996, 0.0, 0.2, 0.1)
    # 50,000 // 64 = 781 batches, 98 steps of 8 per epoch: ceil(10,000 / 98) = 103 epochs
    assert paper.epochs == 103 and paper.preprocessing == "finetune" and paper.init_from_ema
    assert paper.normalize == "imagenet"  # torchvision's weights were trained on ImageNet-normalized inputs
    code = finetune_config("efficientnetv2_s", "cifar10", "torchvision", finetune_recipe="code", train_size=50_000)
    assert (code.schedule, code.weight_decay, code.epochs) == ("constant", 1e-5, 103)
    # the official ft preprocessing (isize=1.0) trains and evaluates at the eval size, 384 px for V2-S
    for config in (paper, code):
        resolved = config.resolved()
        assert (resolved.image_size, resolved.eval_size) == (384, 384)
        assert resolved.ema_reference_batch == 512  # 0.9996 per step at the recipe's own batch, not rescaled to 4096
    assert (paper.resolved().bn_momentum, code.resolved().bn_momentum) == (0.01, 0.1)  # TF decay 0.99 (paper), 0.9 (code)
    # max(10,000 steps, 15 epochs) (datasets.py:710, :718): Flowers102's 2,040 images on 8
    # processes make 3 steps of 512 per epoch, 3,334 epochs; a million images: 15 epochs
    flowers = finetune_config("efficientnetv2_s", "flowers102", None, finetune_recipe="code",
                              train_size=2040, processes=8)
    assert (flowers.batch_size, flowers.accumulate, flowers.epochs) == (64, 1, 3334)
    assert finetune_config("efficientnetv2_s", "cifar10", None, finetune_recipe="code", train_size=10**6).epochs == 15
    ours = finetune_config("efficientnetv2_s", "cifar10", "runs/x/last.pt", train_size=50_000)
    assert ours.normalize is None  # our checkpoints: the recipe's own (official fine-tuning) normalization
    other = finetune_config("efficientnetv2_s", "cifar10", None, train_size=50_000, image_size=224, freeze_backbone=True)
    assert other.image_size == 224 and other.freeze_backbone
    with pytest.raises(ValueError, match="recipes"):
        finetune_config("efficientnetv2_s", "cifar10", None, finetune_recipe="tf", train_size=10)


def test_frozen_backbone_trains_only_the_head(pretrained, tmp_path):
    config = finetune_config("demo_v2_tiny", "synthetic_b", str(pretrained), steps=6, batch_size=32, lr=0.05,
                             image_size=32, workers=0, quiet=True, synthetic={"num_samples": 64}, freeze_backbone=True,
                             out_dir=str(tmp_path))
    fit(config)
    before = load_checkpoint(pretrained)["model"]
    after = load_checkpoint(tmp_path / "last.pt")["model"]
    assert torch.equal(before["stem.conv.weight"], after["stem.conv.weight"])
    assert torch.equal(before["stages.3.1.project.conv.weight"], after["stages.3.1.project.conv.weight"])
    assert after["classifier.weight"].shape == (4, 256)
    optimizer = load_checkpoint(tmp_path / "last.pt")["optimizer"]
    assert sum(len(group["params"]) for group in optimizer["param_groups"]) == 2  # classifier weight and bias only


def test_imagenet21k_preset_and_the_swap_to_1k(tmp_path):
    config = imagenet21k_config("demo_v2_tiny", data_root=str(tmp_path), out_dir=str(tmp_path / "run"))
    # Literals from the official datasets.py ImageNet21k config: 60 epochs, lr_base 0.008, 1 warm-up epoch, cosine,
    # no label smoothing, survival_prob 1.0, dropout ~0, isize 224, augname None (crop and flip only), no mixup.
    assert (config.epochs, config.schedule, config.randaug_magnitude, config.mixup_alpha) == (60, "cosine", 0.0, 0.0)
    assert (config.base_lr, config.warmup_epochs, config.label_smoothing, config.drop_path_rate, config.dropout) == (
        0.008, 1.0, 0.0, 0.0, 0.0)
    assert (config.image_size, config.eval_size, config.cutmix_alpha) == (224, 224, 0.0)
    assert config.num_classes == IMAGENET21K_CLASSES == 21_841
    model_21k = build_model("demo_v2_tiny", num_classes=config.num_classes)
    assert model_21k.classifier.out_features == 21_841
    model_1k, report = from_21k_to_1k(model_21k)
    assert model_1k.classifier.out_features == 1000
    assert report.initialized == ["classifier.weight", "classifier.bias"]
    assert sorted(report.ignored) == ["classifier.bias", "classifier.weight"]


def test_imagenet21k_labels_are_normalized_over_several_classes(tmp_path):
    for split in ("train", "val"):
        for cls in ("n01", "n02", "n03"):
            (tmp_path / split / cls).mkdir(parents=True)
        for cls, files in {"n01": ["a", "b"], "n02": ["b", "c"], "n03": ["b"]}.items():
            for f in files:
                Image.new("RGB", (8, 8)).save(tmp_path / split / cls / f"{f}.JPEG")
    dataset = get_dataset("imagenet21k", "train", root=tmp_path, num_classes=5)
    targets = {sample[0].rsplit("/", 1)[1]: dataset.base.samples.index(sample) for sample in dataset.base.samples}
    _, b_target = dataset[targets["b.JPEG"]]
    assert b_target.tolist() == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0, 0])
    _, a_target = dataset[targets["a.JPEG"]]
    assert a_target.tolist() == [1.0, 0, 0, 0, 0] and len(dataset) == 3
