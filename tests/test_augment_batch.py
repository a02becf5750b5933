"""The batched training augmentation (paper/augment_batch.py, data.transforms.BatchedTrainTransform,
data.loaders.SeededBatches) against the per-image path, which stays the reference
(tests/test_augment.py checks that one against the official code).

Expected pixels always come from the per-image functions of effnetv2_mini.paper.augment, never from
the batched code; every comparison is exact (the batched path runs the same arithmetic, so no
tolerance is allowed).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnetv2_mini.data.loaders import Loaders, batches_augmented
from effnetv2_mini.data.transforms import BatchedTrainTransform, train_transform
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.distributed import DistInfo
from effnetv2_mini.paper import augment, augment_batch
from effnetv2_mini.paper.augment import OPS, SIGNED_OPS

CPU = torch.device("cpu")


def images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random pictures (coarse colours upsampled); from 3 images on, the first three are the
    corner cases of the colour ops: a low-contrast image, a constant channel (AutoContrast and
    Equalize keep it), a constant image."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 6, 6, generator=generator) * 255
    out = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear").to(
        torch.uint8
    )
    if count >= 3:
        out[0] = out[0] // 4 + 100
        out[1, 2] = 37
        out[2] = 200
    return out


def per_image(image: torch.Tensor, op_name: str, argument) -> torch.Tensor:
    """The reference: augment.py's op on one image with a drawn argument."""
    if op_name == "Cutout":
        pad_size, row, column = argument
        return augment.cutout(image, pad_size, center=(row, column))
    return augment._OP_FUNCTIONS[op_name](image, argument)


@pytest.mark.parametrize("op_name", OPS)
@pytest.mark.parametrize("magnitude", [5.0, 10.0, 23.0])
def test_every_op_gives_each_image_of_a_group_the_per_image_pixels(op_name, magnitude):
    batch = images(12, 29, 35, seed=OPS.index(op_name))
    torch.manual_seed(7)
    arguments = [augment.draw_argument(op_name, magnitude, 29, 35) for _ in range(len(batch))]
    expected = torch.stack([per_image(image, op_name, a) for image, a in zip(batch, arguments)])
    out = augment_batch.randaugment_batch(batch, [[(op_name, a)] for a in arguments])
    assert out.dtype == torch.uint8
    assert torch.equal(out, expected)
    assert torch.equal(
        batch, images(12, 29, 35, seed=OPS.index(op_name))
    )  # the input is left alone


def test_two_layers_of_mixed_ops_apply_in_each_images_order():
    batch = images(40, 32, 32, seed=3)
    torch.manual_seed(11)
    ops = [augment_batch.draw_ops(2, 12.0, 32, 32, reference_size=64) for _ in range(len(batch))]
    expected = []
    for image, drawn in zip(batch, ops):
        for op_name, argument in drawn:
            image = per_image(image, op_name, argument)
        expected.append(image)
    assert len({drawn[0][0] for drawn in ops}) > 8  # many groups at the first layer
    assert torch.equal(augment_batch.randaugment_batch(batch, ops), torch.stack(expected))


def test_crop_resize_and_flip_give_the_per_image_pixels():
    sources = [images(1, 40 + 7 * k, 52 - 3 * k, seed=k)[0] for k in range(6)]
    generator = torch.Generator().manual_seed(2)
    boxes = [augment.crop_box(*image.shape[-2:], generator=generator) for image in sources]
    expected = []
    for image, (top, left, height, width) in zip(
        sources, boxes
    ):  # official_train_crop's crop and resize
        expected.append(
            augment._resize(image[:, top : top + height, left : left + width], 24, truncate=True)
        )
    out = augment_batch.crop_resize_batch(sources, boxes, 24)
    assert torch.equal(out, torch.stack(expected))
    flipped = [True, False, True, True, False, False]
    mirrored = torch.stack([e.flip(-1) if f else e for e, f in zip(expected, flipped)])
    assert torch.equal(augment_batch.flip_batch(out, flipped), mirrored)


def seeded_per_image(transform, sources, seeds) -> torch.Tensor:
    """The per-image path as the loop runs it (loaders.SeededDataset): each image under its seed."""
    out = []
    for image, seed in zip(sources, seeds):
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            out.append(transform(image))
    return torch.stack(out)


@pytest.mark.parametrize(
    "size, magnitude, scale, reference, normalize",
    [
        (24, 15.0, None, None, None),
        (32, 5.0, (0.35, 1.0), 64, None),
        (20, 0.0, None, None, "imagenet"),
        (28, 10.0, None, None, None),
    ],
)
def test_batched_transform_gives_each_image_what_the_per_image_transform_gives_it(
    size, magnitude, scale, reference, normalize
):
    sources = [images(1, 36 + 5 * (k % 4), 30 + 11 * (k % 3), seed=k)[0] for k in range(24)]
    seeds = [1_000 + 37 * k for k in range(len(sources))]
    reference_transform = train_transform(size, magnitude, "official", scale, reference, normalize)
    expected = seeded_per_image(reference_transform, sources, seeds)
    batched = BatchedTrainTransform(size, magnitude, scale, reference, normalize)
    state = torch.random.get_rng_state()
    out = batched(sources, seeds)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left as it was
    assert out.dtype == torch.float32 and out.shape == (len(sources), 3, size, size)
    assert torch.equal(out, expected)


def test_each_image_has_its_own_draw_whatever_the_batch_it_is_in():
    sources = [images(1, 40, 40, seed=k)[0] for k in range(32)]
    seeds = list(range(500, 532))
    transform = BatchedTrainTransform(24, 15.0)
    whole = transform(sources, seeds)
    alone = torch.cat([transform([image], [seed]) for image, seed in zip(sources, seeds)])
    reversed_batch = transform(sources[::-1], seeds[::-1]).flip(0)
    assert torch.equal(whole, alone) and torch.equal(whole, reversed_batch)
    same = [sources[0]] * 32  # one picture 32 times, 32 seeds: 32 different draws
    draws = []
    for seed in seeds:
        torch.random.default_generator.manual_seed(seed)
        draws.append(augment_batch.draw_official(40, 40, 24, 15.0))
    assert len({d.box for d in draws}) == 32
    assert (
        len({tuple(name for name, _ in d.ops) for d in draws}) >= 20
    )  # 256 op pairs: about 30 distinct expected
    assert 6 <= sum(d.flipped for d in draws) <= 26
    crops_only = BatchedTrainTransform(24, 0.0)  # (RandAugment at 15 may leave only the fill value)
    assert len({bytes(image.numpy()) for image in crops_only(same, seeds)}) == 32


def recorded_ops(monkeypatch, sources, seeds) -> list[str]:
    """The ops the per-image training transform's RandAugment applies, image after image, under the
    seeds."""
    names = []
    original = augment.apply_op

    def recording(image, op_name, magnitude, reference_size=None):
        names.append(op_name)
        return original(image, op_name, magnitude, reference_size)

    monkeypatch.setattr(augment, "apply_op", recording)
    seeded_per_image(train_transform(8, 10.0), sources, seeds)
    return names


def test_the_batched_draws_have_the_per_image_distribution_of_ops(monkeypatch):
    draws_per_path = 1_600
    seeds = list(range(draws_per_path))
    small = images(1, 8, 8)[0]
    per_image_ops = recorded_ops(monkeypatch, [small] * len(seeds), seeds)
    batched_draws = []
    for seed in seeds:
        torch.random.default_generator.manual_seed(seed)
        batched_draws.append(augment_batch.draw_official(8, 8, 8, 10.0))
    batched_ops = [name for d in batched_draws for name, _ in d.ops]
    assert (
        batched_ops == per_image_ops
    )  # same seeds: the very same ops, image by image and layer by layer
    draws = len(batched_ops)
    bound = 4.5 * math.sqrt(draws * (1 / 16) * (15 / 16))  # binomial, p = 1/16 (16 ops, uniform)
    counts = Counter(batched_ops)
    assert set(counts) == set(OPS)
    assert all(abs(counts[op] - draws / 16) < bound for op in OPS), counts
    signs = [argument < 0 for d in batched_draws for name, argument in d.ops if name in SIGNED_OPS]
    assert abs(sum(signs) - len(signs) / 2) < 4.5 * math.sqrt(
        len(signs) / 4
    )  # each sign with probability 1/2
    torch.random.default_generator.manual_seed(0)
    batch_of_one_seed = [augment_batch.draw_official(8, 8, 8, 10.0) for _ in range(64)]
    assert len({d.ops for d in batch_of_one_seed}) > 40  # consecutive draws differ too


def test_magnitude_zero_draws_no_ops_as_the_per_image_transform():
    torch.random.default_generator.manual_seed(3)
    draws = augment_batch.draw_official(30, 40, 16, 0.0)
    after = torch.rand(1)
    torch.random.default_generator.manual_seed(3)
    augment.crop_box(30, 40)
    torch.rand(1)  # the flip
    assert draws.ops == () and torch.equal(torch.rand(1), after)


# --------------------------------------------------------------------------------------------------
# The loader: SeededBatches against SeededDataset, the choice of path
# --------------------------------------------------------------------------------------------------


def photo_tree(root: Path) -> Path:
    """train and val: 2 classes x 5 photos of various sizes (JPEG, PNG), one unreadable file in
    train."""
    if root.exists():
        return root
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label, name in enumerate(("ant", "bee")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(5):
                pixels = rng.integers(
                    0, 256, (40 + 6 * k, 56 - 4 * k + 3 * label, 3), dtype=np.uint8
                )
                Image.fromarray(pixels).save(folder / f"{k}.{'png' if k == 2 else 'jpg'}")
    (root / "train" / "bee" / "broken.jpg").write_bytes(b"no image")
    return root


def config_for(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        model="demo_v2_tiny",
        dataset="imagefolder",
        data_root=str(photo_tree(tmp_path / "data")),
        cache=str(tmp_path / "cache"),
        batch_size=4,
        image_size=24,
        eval_size=24,
        recipe="simple",
        randaug_magnitude=12.0,
        workers=0,
        quiet=True,
        seed=3,
        skip_corrupt=True,
        out_dir=str(tmp_path / "run"),
    )
    values.update(overrides)
    return TrainConfig(**values).resolved()


def batches(config: TrainConfig) -> list:
    loaders = Loaders(config, DistInfo(), CPU)
    try:
        return [
            list(loaders.train(24, 12.0, epoch=epoch, skip_batches=0)) for epoch in (1, 2)
        ], loaders
    finally:
        loaders.close()


def test_batched_loader_gives_the_per_image_loaders_batches_with_any_workers(tmp_path):
    per_image, loaders = batches(config_for(tmp_path, batch_augment=False))
    assert not loaders.batch_augment
    for workers in (0, 1):
        batched, loaders = batches(config_for(tmp_path, batch_augment=None, workers=workers))
        assert loaders.batch_augment  # the CPU default with the cache
        assert len(batched[0]) == len(per_image[0]) == 11 // 4
        for epoch_a, epoch_b in zip(per_image, batched):
            for (images_a, labels_a, skipped_a), (images_b, labels_b, skipped_b) in zip(
                epoch_a, epoch_b
            ):
                assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)
                assert skipped_a == skipped_b
    assert (
        sum(skipped for epoch in per_image for _, _, skipped in epoch) >= 1
    )  # the broken file, counted


def test_the_batched_path_is_the_cpu_default_only_where_it_applies(tmp_path):
    def config(**overrides):
        values = dict(
            dataset="imagefolder",
            data_root="data",
            cache=True,
            preprocessing="official",
            decode_on_device=False,
            batch_augment=None,
        )
        values.update(overrides)
        return TrainConfig(**values)

    assert batches_augmented(config(), CPU)
    assert batches_augmented(config(dataset="synthetic", cache=None), CPU)
    assert not batches_augmented(config(), torch.device("cuda"))
    assert not batches_augmented(config(cache=None), CPU)  # PIL images: the per-image path
    assert not batches_augmented(config(preprocessing="torchvision"), CPU)
    assert not batches_augmented(config(batch_augment=False), CPU)
    assert batches_augmented(config(batch_augment=True), torch.device("cuda"))
    with pytest.raises(ValueError, match="batch_augment needs the official preprocessing"):
        batches_augmented(config(preprocessing="finetune", batch_augment=True), CPU)
