"""Decoding and augmenting on the training device (effnetv2_mini.data.devicedecode), tested with device="cpu": the same labels,
crop boxes, flips, RandAugment ops and pixels as the CPU path (transforms.train_transform); corrupt files named or
skipped; training through fit with decode_on_device, interrupted and resumed; and, on a GPU machine, CUDA vs CPU.

Tolerances. Measured here (torch 2.15, torchvision 0.29.2, Pillow 13.0, CPU): torchvision.io.decode_jpeg and PIL decode
every JPEG of the trees below to identical pixels (both libjpeg-turbo: same IDCT, same chroma upsampling), and the rest
of the device path calls the CPU path's own functions on the same device, so every augmented image was bit-identical
(largest difference 0 grey levels, every one of the 16 RandAugment ops drawn). The tests allow PIXEL_TOLERANCE = 1 grey
level of mean absolute difference per image, room for another libjpeg build, and show that a wrong flip or a crop a tenth
of the box off exceeds even the CUDA bound (CUDA_TOLERANCE = 3 levels, for nvjpeg and the CUDA resize kernels; chosen,
not measured: no GPU was available).
"""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.data.devicedecode import (
    DevicePipeline,
    Draws,
    EncodedBatch,
    EncodedImages,
    SeededEncoded,
    collate_encoded,
    device_decodable,
    folder_samples,
)
from effnetv2_mini.data.images import CorruptImageError
from effnetv2_mini.data.loaders import Loaders
from effnetv2_mini.data.transforms import train_transform
from effnetv2_mini.engine.checkpoint import load_checkpoint
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.distributed import DistInfo
from effnetv2_mini.engine.loop import fit
from effnetv2_mini.paper import augment
from effnetv2_mini.paper.augment import OPS, apply_op

SIZE = 40
MAGNITUDE = 15.0  # the official default: strong geometric ops, Solarize at 128, Posterize to 6 bits
SEEDS = (0, 1, 7, 1_000_003, 2**40 + 5)
PIXEL_TOLERANCE = 1.0  # grey levels, mean |CPU path - device path| per augmented uint8 image; measured: 0.0
CUDA_TOLERANCE = 3.0  # grey levels, mean |CUDA - CPU| per image (nvjpeg, CUDA kernels); a bound, not measured
TIMING = {"images_per_sec", "epoch_seconds", "wall_time", "peak_memory_mb"}
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def scene(width: int, height: int, shift: int = 0) -> np.ndarray:
    """Smooth, asymmetric RGB (a left-to-right red ramp, a top-to-bottom green ramp, a block near the top left): JPEG
    keeps it well, and a flip or a moved crop changes it a lot."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([230 * x / width, 200 * y / height, 60 + 40 * np.sin((x + shift) / 9.0)], axis=-1)
    rgb[height // 8: height // 3, width // 8: width // 3] = (30, 220, 240)
    return rgb.astype(np.uint8)


def jpeg_bytes(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, **options)
    return buffer.getvalue()


def make_tree(root: Path) -> Path:
    """root/train/<class>/: JPEGs of mixed sizes and aspect ratios (baseline 4:2:0 and 4:4:4, progressive), a grayscale
    and a CMYK JPEG, an 8-bit and a 16-bit PNG, a file that is no image and a truncated JPEG."""
    folder = root / "train"
    for name in ("cat", "dog", "emu"):
        (folder / name).mkdir(parents=True)
    Image.fromarray(scene(300, 200)).save(folder / "cat" / "wide.jpg", quality=92)
    Image.fromarray(scene(120, 160)).save(folder / "cat" / "tall.jpg", quality=92, subsampling=0)
    Image.fromarray(scene(97, 61)).save(folder / "cat" / "odd.jpg", quality=92, progressive=True)
    Image.fromarray(scene(64, 64)).save(folder / "cat" / "small.png")
    Image.fromarray(scene(200, 150)).convert("L").save(folder / "dog" / "gray.jpg", quality=92)
    Image.fromarray(scene(160, 120)).convert("CMYK").save(folder / "dog" / "cmyk.jpg", quality=92)
    ramp16 = (np.mgrid[0:90, 0:110][1] * 600).astype(np.uint16)
    Image.fromarray(ramp16).save(folder / "emu" / "deep16.png")
    (folder / "emu" / "broken.jpg").write_bytes(b"this is not an image")
    whole = jpeg_bytes(Image.fromarray(scene(180, 140)))
    (folder / "emu" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data")


def mean_levels(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().mean())


def cpu_path(dataset, index: int, seed: int, monkeypatch, **options):
    """The CPU path for one sample under ``seed`` (as loaders.SeededDataset runs it): the uint8 image after
    RandAugment, the normalized output, and its draws: the crop box and op names recorded from augment's own
    functions, the flip seen by comparing the image before and after v2.RandomHorizontalFlip."""
    boxes, ops = [], []
    real_box, real_op = augment.crop_box, augment.apply_op
    transform = train_transform(SIZE, **options)
    image, label = dataset[index]
    with monkeypatch.context() as patch, torch.random.fork_rng(devices=[]):
        patch.setattr(augment, "crop_box", lambda *a, **k: boxes.append(real_box(*a, **k)) or boxes[-1])
        patch.setattr(augment, "apply_op", lambda picture, name, *a: ops.append(name) or real_op(picture, name, *a))
        torch.manual_seed(seed)
        out, flipped = image, None
        for step in transform.transforms:  # what v2.Compose does, one step at a time
            if isinstance(step, v2.ToDtype):
                pixels = out.as_subclass(torch.Tensor)
            before, out = out, step(out)
            if isinstance(step, v2.RandomHorizontalFlip):
                flipped = not torch.equal(before, out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        assert torch.equal(transform(image), out)  # stepping through it is what the transform does
    return pixels, out.as_subclass(torch.Tensor), label, Draws(boxes[0] if boxes else None, flipped, tuple(ops))


def device_path(encoded: EncodedImages, index: int, seed: int, pipeline: DevicePipeline):
    """The device path for one sample: (uint8 image after RandAugment, draws), and the label."""
    item, label = encoded[index]
    image = pipeline.decode(EncodedBatch([item], [seed], [encoded.path(index)]))[0]
    pixels, draws = pipeline.augment(image, seed)
    return pixels, draws, label


def readable(dataset) -> list[int]:
    return [i for i in range(len(dataset)) if dataset[i] is not None]


# ------------------------------------------------------------------------------------------------------------
# The workers' side: bytes or CPU-decoded pixels, labels, corrupt files
# ------------------------------------------------------------------------------------------------------------

def test_workers_send_jpeg_bytes_and_decode_the_rest_on_the_cpu(tree):
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    encoded = EncodedImages(folder_samples(dataset), skip_corrupt=True)
    assert [label for _, label in encoded.samples] == [label for _, label in dataset.base.samples]
    kinds = {Path(encoded.path(i)).name: (None if encoded[i] is None else encoded[i][0].ndim) for i in range(len(encoded))}
    assert kinds == {"wide.jpg": 1, "tall.jpg": 1, "odd.jpg": 1, "gray.jpg": 1, "small.png": 3, "cmyk.jpg": 3,
                     "deep16.png": 3, "broken.jpg": None, "truncated.jpg": None}
    for i in readable(encoded):
        item, label = encoded[i]
        assert label == dataset[i][1]
        if item.ndim == 3:  # decoded on the CPU exactly as the CPU path's loader does (to_rgb: CMYK, 16-bit scaled)
            assert torch.equal(item, v2.functional.pil_to_tensor(dataset[i][0]))
        else:
            assert item.dtype == torch.uint8 and item.numel() == Path(encoded.path(i)).stat().st_size


def test_which_jpegs_the_device_decodes():
    picture = Image.fromarray(scene(48, 32))
    assert device_decodable(jpeg_bytes(picture)) and device_decodable(jpeg_bytes(picture, progressive=True))
    assert device_decodable(jpeg_bytes(picture.convert("L")))
    assert not device_decodable(jpeg_bytes(picture.convert("CMYK")))  # 4 components: PIL converts, nvjpeg would not
    assert not device_decodable(jpeg_bytes(picture)[:-40])  # truncated: PIL names it
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    assert not device_decodable(buffer.getvalue()) and not device_decodable(b"") and not device_decodable(b"\xff\xd8")


def test_corrupt_files_are_named_or_skipped_and_counted(tree):
    samples = folder_samples(get_dataset("imagefolder", "train", root=tree, skip_corrupt=True))
    broken = [i for i, (path, _) in enumerate(samples) if Path(path).name in ("broken.jpg", "truncated.jpg")]
    strict = EncodedImages(samples)
    for index in broken:
        with pytest.raises(CorruptImageError, match=Path(samples[index][0]).name):
            strict[index]
    seeded = SeededEncoded(EncodedImages(samples, skip_corrupt=True))
    batch, labels, skipped = collate_encoded([seeded[(11 + i, i)] for i in range(len(samples))])
    assert skipped == 2 and len(batch) == len(labels) == len(samples) - 2
    assert batch.seeds == [11 + i for i in range(len(samples)) if i not in broken]
    assert collate_encoded([seeded[(0, i)] for i in broken]) == (None, None, 2)


def test_a_jpeg_that_only_the_decoder_rejects_is_named(tree):
    data = bytearray(jpeg_bytes(Image.fromarray(scene(48, 32))))
    frame = data.index(b"\xff\xc0")
    data[frame + 7:frame + 9] = b"\x00\x00"  # width 0: the markers look whole, libjpeg refuses the frame
    assert device_decodable(bytes(data))
    good = torch.frombuffer(bytearray(jpeg_bytes(Image.fromarray(scene(48, 32)))), dtype=torch.uint8)
    batch = EncodedBatch([good, torch.frombuffer(data, dtype=torch.uint8)], [1, 2], ["good.jpg", "zero-width.jpg"])
    with pytest.raises(CorruptImageError, match="zero-width.jpg"):
        DevicePipeline(SIZE)(batch)


# ------------------------------------------------------------------------------------------------------------
# Equivalence with the CPU path
# ------------------------------------------------------------------------------------------------------------

def test_same_crops_flips_ops_and_pixels_as_the_cpu_path(tree, monkeypatch):
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    encoded = EncodedImages(folder_samples(dataset), skip_corrupt=True)
    pipeline = DevicePipeline(SIZE, MAGNITUDE)
    worst, flips, ops = 0.0, set(), set()
    for index in readable(dataset):
        for seed in (s * 101 + index for s in SEEDS):  # varied per image: the ops depend on the seed alone
            cpu_pixels, cpu_out, cpu_label, cpu_draws = cpu_path(dataset, index, seed, monkeypatch,
                                                                 randaug_magnitude=MAGNITUDE)
            pixels, draws, label = device_path(encoded, index, seed, pipeline)
            assert label == cpu_label and draws == cpu_draws, (encoded.path(index), seed)
            worst = max(worst, mean_levels(pixels, cpu_pixels))
            flips.add(draws.flipped)
            ops.update(draws.ops)
    assert worst <= PIXEL_TOLERANCE, worst  # measured: 0.0 (bit-identical)
    assert flips == {False, True} and len(ops) >= 14, ops  # both flips and (measured) all 16 ops are drawn


def test_the_batched_call_gives_the_cpu_paths_normalized_batch(tree, monkeypatch):
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    seeded = SeededEncoded(EncodedImages(folder_samples(dataset), skip_corrupt=True))
    keys = [(1_000_003 * 5 + i, i) for i in range(len(dataset))]
    batch, labels, skipped = collate_encoded([seeded[key] for key in keys])
    images = DevicePipeline(SIZE, MAGNITUDE, randaug_reference=224)(batch)
    expected = [cpu_path(dataset, i, seed, monkeypatch, randaug_magnitude=MAGNITUDE, randaug_reference=224)
                for seed, i in keys if dataset[i] is not None]
    assert images.shape == (len(expected), 3, SIZE, SIZE) and images.dtype == torch.float32 and skipped == 2
    assert labels.tolist() == [label for _, _, label, _ in expected]
    levels = (images - torch.stack([out for _, out, _, _ in expected])).abs() * 128  # official: (x - 128) / 128
    assert float(levels.mean()) <= PIXEL_TOLERANCE, float(levels.mean())


def test_finetune_preprocessing_matches_and_torchvision_is_refused(tree, monkeypatch):
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    encoded = EncodedImages(folder_samples(dataset), skip_corrupt=True)
    pipeline = DevicePipeline(SIZE, preprocessing="finetune")
    for index in readable(dataset):
        for seed in SEEDS[:3]:
            _, cpu_out, _, _ = cpu_path(dataset, index, seed, monkeypatch, preprocessing="finetune")
            item, _ = encoded[index]
            out = pipeline(EncodedBatch([item], [seed]))[0]
            assert float((out - cpu_out).abs().mean()) * 127.5 <= PIXEL_TOLERANCE  # (x / 255 - 0.5) / 0.5
    with pytest.raises(NotImplementedError, match="decode_on_device=False"):
        DevicePipeline(SIZE, preprocessing="torchvision")


def test_a_wrong_flip_or_a_moved_crop_exceeds_the_tolerances(tree, monkeypatch):
    """What the tolerances guard against: the device path with the flip undone, or the crop moved by a tenth of the
    box, differs from the CPU path by more than PIXEL_TOLERANCE and CUDA_TOLERANCE (no RandAugment here, so that only
    the crop and the flip are compared). Measured over these images and seeds: right 0.0, wrong flip at least 6.1,
    moved crop at least 5.0 grey levels (the smallest from small crops of smooth regions; most are far larger)."""
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    encoded = EncodedImages(folder_samples(dataset), skip_corrupt=True)
    pipeline = DevicePipeline(SIZE)
    right, wrong_flip, moved_crop = [], [], []
    for index in readable(dataset):
        for seed in SEEDS:
            cpu_pixels = cpu_path(dataset, index, seed, monkeypatch)[0]
            pixels, draws, _ = device_path(encoded, index, seed, pipeline)
            right.append(mean_levels(pixels, cpu_pixels))
            wrong_flip.append(mean_levels(pixels.flip(-1), cpu_pixels))
            image = pipeline.decode(EncodedBatch([encoded[index][0]], [seed]))[0]
            top, left, height, width = draws.box
            top = min(top + max(1, height // 10), image.shape[-2] - height)
            left = min(left + max(1, width // 10), image.shape[-1] - width)
            if (top, left) != draws.box[:2]:  # a box covering the whole image cannot move
                moved = augment._resize(image[:, top:top + height, left:left + width], SIZE, truncate=True)
                moved_crop.append(mean_levels(moved.flip(-1) if draws.flipped else moved, cpu_pixels))
    assert max(right) <= PIXEL_TOLERANCE
    assert min(wrong_flip) > CUDA_TOLERANCE, sorted(wrong_flip)[:3]
    assert min(moved_crop) > CUDA_TOLERANCE, sorted(moved_crop)[:3]


# ------------------------------------------------------------------------------------------------------------
# Training: Loaders and fit with decode_on_device
# ------------------------------------------------------------------------------------------------------------

def make_training_tree(root: Path) -> Path:
    """train: 3 classes x 6 images (JPEGs, a gray JPEG, a PNG), one more JPEG and one corrupt file (20 files: batches
    of 4 use every one in each epoch); val: 3 classes x 2 JPEGs."""
    for split, count in (("train", 6), ("val", 2)):
        for label, name in enumerate(("cat", "dog", "emu")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for k in range(count):
                picture = Image.fromarray(np.roll(scene(60 + 9 * k, 48 + 5 * label, shift=20 * label), 7 * k, axis=0))
                if k == 4:
                    picture.convert("L").save(folder / f"{k}.jpg", quality=90)
                elif k == 5:
                    picture.save(folder / f"{k}.png")
                else:
                    picture.save(folder / f"{k}.jpg", quality=90)
    Image.fromarray(scene(70, 90)).save(root / "train" / "emu" / "extra.jpg", quality=90)
    (root / "train" / "emu" / "broken.jpg").write_bytes(b"not an image")
    return root


def training_config(data: Path, out: Path, **overrides) -> TrainConfig:
    values = dict(model="demo_v2_tiny", dataset="imagefolder", data_root=str(data), epochs=2, batch_size=4, image_size=24,
                  eval_size=24, recipe="simple", workers=0, quiet=True, out_dir=str(out), seed=5, skip_corrupt=True,
                  randaug_magnitude=10.0, decode_on_device=True, warmup_epochs=0.5)
    values.update(overrides)
    return TrainConfig(**values)


def metrics(out: Path) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


def decoders_agree(data: Path) -> bool:
    """True when decode_jpeg and PIL give identical pixels for the tree's JPEGs (as measured here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for path in sorted(data.rglob("*.jpg")):
            if path.name == "broken.jpg":
                continue
            raw = torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)
            pil = v2.functional.pil_to_tensor(Image.open(path).convert("RGB"))
            if not torch.equal(decode_jpeg(raw, mode=ImageReadMode.RGB), pil):
                return False
    return True


def test_loaders_yield_encoded_batches_with_the_samplers_seeds_and_workers_change_nothing(tmp_path):
    data = make_training_tree(tmp_path / "data")
    batches = {}
    for workers in (0, 1):
        config = training_config(data, tmp_path / "unused", workers=workers).resolved()
        loaders = Loaders(config, DistInfo(), torch.device("cpu"))
        loader = loaders.train(24, 5.0, epoch=1, skip_batches=1)
        batches[workers] = list(loader)
        pipeline = loaders.pipeline
        assert (pipeline.size, pipeline.randaugment.magnitude) == (24, 5.0)
        loaders.close()
    assert len(batches[0]) == 20 // 4 - 1  # 5 batches per epoch (19 images + 1 corrupt, batch 4), one skipped
    for (batch, labels, skipped), (other, other_labels, other_skipped) in zip(batches[0], batches[1]):
        assert isinstance(batch, EncodedBatch) and batch.seeds == other.seeds and batch.paths == other.paths
        assert torch.equal(labels, other_labels) and skipped == other_skipped
        assert all(torch.equal(a, b) for a, b in zip(batch.items, other.items))
        assert torch.equal(pipeline(batch), pipeline(other))


def test_class_subsets_keep_their_samples_and_labels_and_other_sets_stay_on_the_cpu(tmp_path):
    data = make_training_tree(tmp_path / "data")
    config = training_config(data, tmp_path / "unused", classes=[2, 0], images_per_class=3).resolved()
    loaders = Loaders(config, DistInfo(), torch.device("cpu"))
    samples = loaders._encoded.samples
    assert len(samples) == len(loaders.train_set) == 6
    for index, (path, label) in enumerate(samples):
        item = loaders.train_set[index]  # the CPU path's sample at the same index (None: the corrupt file)
        assert Path(path).parent.name == ("emu", "cat")[label]
        assert item[1] == label if item is not None else Path(path).name == "broken.jpg"
    synthetic = TrainConfig(dataset="synthetic", decode_on_device=True, quiet=True, synthetic={"num_samples": 64})
    assert not Loaders(synthetic.resolved(), DistInfo(), torch.device("cpu")).decodes_on_device


def test_fit_with_decode_on_device_resumes_exactly(tmp_path):
    data = make_training_tree(tmp_path / "data")
    fit(training_config(data, tmp_path / "straight"))
    with pytest.raises(KeyboardInterrupt):
        fit(training_config(data, tmp_path / "resumed"), stop_after_steps=7)  # mid-epoch 2 (5 steps per epoch)
    checkpoint = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["batches_done"] == 2
    fit(training_config(data, tmp_path / "resumed"))
    straight = metrics(tmp_path / "straight")
    assert metrics(tmp_path / "resumed") == straight and len(straight) == 2
    assert [row["skipped_images"] for row in straight] == [1, 1]  # the corrupt file, dropped and counted
    assert json.loads((tmp_path / "straight" / "config.json").read_text())["config"]["decode_on_device"] is True
    with pytest.raises(ValueError, match="decode_on_device"):  # an identity field: a resume cannot switch paths
        fit(training_config(data, tmp_path / "straight", decode_on_device=False))
    config_path = tmp_path / "straight" / "config.json"
    written = json.loads(config_path.read_text())
    del written["config"]["decode_on_device"]  # a run directory from before the field existed: read as the default
    config_path.write_text(json.dumps(written))
    assert fit(training_config(data, tmp_path / "straight", decode_on_device=False))["epochs"] == 2  # finished: a no-op
    if decoders_agree(data):  # then the device path on the CPU trains on the CPU path's very pixels
        fit(training_config(data, tmp_path / "cpu_path", decode_on_device=False))
        assert metrics(tmp_path / "cpu_path") == straight


# ------------------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ------------------------------------------------------------------------------------------------------------

@cuda
def test_every_augment_op_runs_on_cuda_like_on_the_cpu():
    image = torch.from_numpy(scene(70, 50)).permute(2, 0, 1).contiguous()
    for name in OPS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            on_cpu = apply_op(image, name, MAGNITUDE)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            on_cuda = apply_op(image.cuda(), name, MAGNITUDE)
        assert on_cuda.is_cuda and on_cuda.dtype == torch.uint8
        assert mean_levels(on_cuda.cpu(), on_cpu) <= 1.0, name


@cuda
def test_the_pipeline_on_cuda_matches_the_cpu(tree):
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True)
    seeded = SeededEncoded(EncodedImages(folder_samples(dataset), skip_corrupt=True))
    batch, labels, _ = collate_encoded([seeded[(1234 + i, i)] for i in range(len(dataset))])
    batch = batch.pin_memory()  # what the DataLoader's pin-memory thread calls
    for preprocessing in ("official", "finetune"):
        on_cpu = DevicePipeline(SIZE, MAGNITUDE, preprocessing=preprocessing, device="cpu")
        on_cuda = DevicePipeline(SIZE, MAGNITUDE, preprocessing=preprocessing, device="cuda")
        cpu_images, cuda_images = on_cpu.decode(batch), on_cuda.decode(batch)
        for image, gpu_image, seed in zip(cpu_images, cuda_images, batch.seeds):
            assert gpu_image.is_cuda and gpu_image.shape == image.shape
            assert mean_levels(gpu_image.cpu(), image) <= CUDA_TOLERANCE  # nvjpeg vs libjpeg-turbo
            pixels, draws = on_cpu.augment(image, seed)
            gpu_pixels, gpu_draws = on_cuda.augment(gpu_image, seed)
            assert gpu_draws == draws  # the draws come from the CPU generator and the image shape only
            scale = 255 * 0.5 if preprocessing == "finetune" else 1
            assert mean_levels(gpu_pixels.cpu(), pixels) * scale <= CUDA_TOLERANCE
        out = on_cuda(batch)
        assert out.is_cuda and out.shape == (len(batch), 3, SIZE, SIZE) and out.dtype == torch.float32
