"""Training and evaluation transforms (official, torchvision, finetune styles) and the official batch mixing."""

import pytest
import torch
from torchvision.transforms import v2

from effnetv2_mini.data.synthetic import SyntheticShapes
from effnetv2_mini.data.transforms import NoiseCutout, eval_transform, train_transform
from effnetv2_mini.paper.augment import OfficialEvalResize, RandAugment, RandomResizedCropRelative
from effnetv2_mini.paper.mixing import cutmix_masks, make_mixer


def kinds(transform):
    return [type(t).__name__ for t in transform.transforms]


def test_official_training_pipeline_uses_the_ported_pieces():
    transform = train_transform(32, randaug_magnitude=10, randaug_reference=224)
    assert kinds(transform)[:4] == ["ToImage", "RandomResizedCropRelative", "RandomHorizontalFlip", "RandAugment"]
    crop = transform.transforms[1]
    assert isinstance(crop, RandomResizedCropRelative) and crop.scale == (0.05, 1.0)  # official area range
    randaug = transform.transforms[3]
    assert isinstance(randaug, RandAugment) and randaug.magnitude == 10.0 and randaug.reference_size == 224
    image = SyntheticShapes("train", num_samples=2, resolution=40)[0][0]
    torch.manual_seed(0)
    out = transform(image)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert "RandAugment" not in kinds(train_transform(32, 0))


def test_official_normalization_is_x_minus_128_over_128():
    image = torch.tensor([[0, 128], [255, 128]], dtype=torch.uint8).expand(3, 2, 2).clone()
    out = eval_transform(2, crop=False)(image)  # the built-in set's path: no crop, no resampling at the same size
    assert out[0].flatten().tolist() == pytest.approx([-1.0, 0.0, 127 / 128, 0.0], abs=1e-6)


def test_official_evaluation_crops_below_320_and_resizes_the_whole_image_from_320():
    assert isinstance(eval_transform(224).transforms[1], OfficialEvalResize)
    assert kinds(eval_transform(64, crop=False))[1] == "Resize"  # built-in data: rendered at the size already


def test_torchvision_style_is_kept_as_a_labelled_option():
    transform = train_transform(32, randaug_magnitude=9.6, preprocessing="torchvision")
    randaug = next(t for t in transform.transforms if isinstance(t, v2.RandAugment))
    assert randaug.magnitude == 10 and kinds(transform)[1] == "RandomResizedCrop"
    assert kinds(eval_transform(224, preprocessing="torchvision"))[1:3] == ["Resize", "CenterCrop"]
    with pytest.raises(ValueError, match="unknown preprocessing 'tf'"):
        train_transform(32, preprocessing="tf")


def test_finetune_style_resizes_the_whole_image_and_cuts_out_noise():
    transform = train_transform(64, preprocessing="finetune")
    assert kinds(transform) == ["ToImage", "ToDtype", "Resize", "RandomHorizontalFlip", "ToDtype",
                                "Normalize", "NoiseCutout"]
    torch.manual_seed(3)
    flat = torch.full((3, 64, 64), -1.0)  # a black image after (x - 0.5) / 0.5
    out = NoiseCutout(16)(flat)
    noisy = out != -1.0
    assert 0 < noisy[0].sum() <= 32 * 32 and out[noisy].min() >= 0 and out[noisy].max() < 1  # uniform [0, 1) noise


def test_mixup_is_per_example_and_keeps_the_larger_share():
    torch.manual_seed(0)
    mixer = make_mixer(4, mixup_alpha=0.8)
    images = torch.stack([torch.full((3, 4, 4), float(i)) for i in range(4)])
    mixed, targets = mixer(images, torch.tensor([0, 1, 2, 3]))
    own = targets[torch.arange(4), torch.arange(4)]
    assert torch.all(own >= 0.5) and len(set(own.tolist())) > 1  # per-example weights, each keeps the larger share
    partner = targets[torch.arange(4), torch.tensor([3, 2, 1, 0])]  # the mirrored example (batch[::-1])
    assert torch.allclose(own + partner, torch.ones(4))
    assert torch.allclose(mixed[:, 0, 0, 0], own * torch.arange(4.0) + partner * torch.arange(3.0, -1.0, -1.0))


def test_cutmix_label_weight_is_the_mean_box_area_and_both_split_the_batch():
    torch.manual_seed(1)
    masks = cutmix_masks(6, 16, 16, alpha=1.0)
    assert masks.shape == (6, 1, 16, 16) and len({m.sum().item() for m in masks}) > 1  # one box per example
    torch.manual_seed(2)
    mixer = make_mixer(8, mixup_alpha=0.2, cutmix_alpha=0.2)
    _, targets = mixer(torch.rand(8, 3, 16, 16), torch.arange(8))
    weights = {round(targets[i, i].item(), 6) for i in range(4, 8)}  # the second half: CutMix, one label weight
    assert len(weights) == 1 and 0 < weights.pop() < 1
    assert len({round(targets[i, i].item(), 6) for i in range(4)}) > 1  # the first half: mixup, per example
    assert torch.allclose(targets.sum(1), torch.ones(8))
    assert make_mixer(6) is None
    with pytest.raises(ValueError, match=">= 0"):
        make_mixer(6, mixup_alpha=-1)


def test_finetune_resize_is_tf_image_resize_without_antialiasing():
    """Official preprocessing.py:83-85 (preprocess_for_finetune): normalize to floats, then
    tf.image.resize, whose default is bilinear with half-pixel centres and antialias=False. 8 -> 2
    px samples at 1.5 and 5.5: the mean of pixels 1 and 2, and of 5 and 6 (an antialiased resize
    would spread pixel 2 over about four pixels: ~25)."""
    row = torch.tensor([0, 0, 100, 0, 0, 0, 40, 0], dtype=torch.uint8)
    image = row.expand(3, 8, 8).clone()
    out = eval_transform(2, preprocessing="finetune")(image) * 0.5 + 0.5  # back to [0, 1]
    assert out[0, 0].tolist() == pytest.approx([50 / 255, 20 / 255], abs=1e-6)
    train = train_transform(2, preprocessing="finetune").transforms
    assert next(t for t in train if isinstance(t, v2.Resize)).antialias is False
