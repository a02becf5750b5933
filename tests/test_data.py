"""Data: the built-in set, Imagenette/ImageFolder offline against miniature trees, clear errors, transforms."""

import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from effnetv2_mini.data.datasets import DatasetNotFoundError, get_dataset
from effnetv2_mini.data.images import CorruptImageError, collate_skipping
from effnetv2_mini.data.synthetic import SYNTHETIC_CLASSES, SyntheticShapes
from effnetv2_mini.data.transforms import eval_transform

IMAGENETTE_WNIDS = ["n01440764", "n02102040"]  # tench, English springer (torchvision knows these ids)


def write_jpeg(path: Path, color, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


def make_tree(root: Path, classes, per_class=4, ext="JPEG"):
    for split in ("train", "val"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                write_jpeg(root / split / name / f"img{i}.{ext}", (40 * c + 30, 10 * i, 200 - 40 * c))


# -- built-in data set ---------------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_split_dependent():
    a = SyntheticShapes("train", num_samples=30, resolution=32)
    b = SyntheticShapes("train", num_samples=30, resolution=32)
    assert all(torch.equal(a[i][0], b[i][0]) and a[i][1] == b[i][1] for i in range(30))
    other_seed = SyntheticShapes("train", num_samples=30, resolution=32, seed=1)
    val = SyntheticShapes("val", num_samples=30, resolution=32)
    assert not torch.equal(a[0][0], other_seed[0][0]) and not torch.equal(a[0][0], val[0][0])
    assert a[0][0].dtype == torch.uint8 and a[0][0].shape == (3, 32, 32)
    assert len(a.classes) == 10 == len(SYNTHETIC_CLASSES)
    assert sorted(set(a.targets)) == list(range(10))  # balanced labels


def test_synthetic_renders_detail_not_upsampled_blur():
    """At 128 px the stripe classes hold detail that a 32 px rendering, upsampled, does not."""
    hi = SyntheticShapes("val", num_samples=40, resolution=128, difficulty=0.0)
    lo = SyntheticShapes("val", num_samples=40, resolution=32, difficulty=0.0)
    index = hi.targets.index(SYNTHETIC_CLASSES.index("checker"))
    sharp = hi[index][0].float()
    blurred = torch.nn.functional.interpolate(lo[index][0].float()[None], size=128, mode="bilinear")[0]

    def high_frequency_energy(image):
        return (image[:, 1:, :] - image[:, :-1, :]).abs().mean() + (image[:, :, 1:] - image[:, :, :-1]).abs().mean()

    assert high_frequency_energy(sharp) > 1.5 * high_frequency_energy(blurred)
    lo.set_resolution(128)  # re-rendering at 128 gives the sharp image, not an interpolation
    assert torch.equal(lo[index][0], sharp)


def test_synthetic_rejects_bad_options():
    with pytest.raises(ValueError, match="difficulty"):
        SyntheticShapes(difficulty=2.0)
    with pytest.raises(ValueError, match="split"):
        SyntheticShapes(split="dev")


# -- folder data sets, offline -------------------------------------------------------------------------------

def test_imagenette_from_a_miniature_tree(tmp_path):
    make_tree(tmp_path / "imagenette2-320", IMAGENETTE_WNIDS, ext="JPEG")
    train = get_dataset("imagenette", "train", root=tmp_path, transform=eval_transform(24))
    assert len(train) == 8 and train.classes[0][0] == "tench"
    image, label = train[5]
    assert image.shape == (3, 24, 24) and label == 1


def test_imagenette_from_a_miniature_archive(tmp_path):
    tree = tmp_path / "build"
    make_tree(tree / "imagenette2-320", IMAGENETTE_WNIDS)
    archive = tmp_path / "data" / "imagenette2-320.tgz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree / "imagenette2-320", arcname="imagenette2-320")
    val = get_dataset("imagenette", "val", root=tmp_path / "data")
    assert len(val) == 8 and (tmp_path / "data" / "imagenette2-320" / "val").is_dir()


def test_imagefolder_and_imagenet_layouts(tmp_path):
    make_tree(tmp_path / "imagenet", ["n001", "n002", "n003"], per_class=2)
    for root in (tmp_path, tmp_path / "imagenet"):  # the data root or the folder itself
        dataset = get_dataset("imagenet", "val", root=root)
        assert len(dataset) == 6 and dataset.classes == ["n001", "n002", "n003"]
    folder = get_dataset("imagefolder", "train", root=tmp_path / "imagenet")
    assert len(folder) == 6


def test_missing_data_errors_name_the_set_the_path_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFoundError) as error:
        get_dataset("imagenet", "train", root=tmp_path)
    message = str(error.value)
    assert "'imagenet'" in message and str(tmp_path) in message and "train/<class>" in message
    with pytest.raises(DatasetNotFoundError) as error:
        get_dataset("imagenette", "train", root=tmp_path)
    message = str(error.value)
    assert "imagenette2-320.tgz" in message and str(tmp_path) in message and "download" in message
    with pytest.raises(ValueError, match="Did you mean imagenette"):
        get_dataset("imagenete")
    with pytest.raises(ValueError, match="data root"):
        get_dataset("imagenet")


def test_offline_download_fails_clearly(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.utils as utils

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(utils, "download_url", offline)
    monkeypatch.setattr("torchvision.datasets.imagenette.download_and_extract_archive", offline)
    with pytest.raises(DatasetNotFoundError) as error:
        get_dataset("imagenette", "train", root=tmp_path, download=True)
    assert "download failed" in str(error.value) and "imagenette2-320.tgz" in str(error.value)


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    make_tree(tmp_path, ["a", "b"], per_class=2)
    bad = tmp_path / "train" / "b" / "img1.JPEG"
    bad.write_bytes(b"this is not a jpeg")
    dataset = get_dataset("imagefolder", "train", root=tmp_path, transform=eval_transform(16))
    with pytest.raises(CorruptImageError) as error:
        [dataset[i] for i in range(len(dataset))]
    assert str(bad) in str(error.value) and "skip_corrupt" in str(error.value)
    skipping = get_dataset("imagefolder", "train", root=tmp_path, transform=eval_transform(16), skip_corrupt=True)
    images, labels, skipped = collate_skipping([skipping[i] for i in range(len(skipping))])
    assert skipped == 1 and images.shape == (3, 3, 16, 16) and labels.tolist() == [0, 0, 1]


def test_missing_data_falls_back_to_synthetic_loudly(tmp_path):
    from effnetv2_mini.data.datasets import dataset_or_fallback

    name, notice = dataset_or_fallback("imagenette", tmp_path)
    assert name == "synthetic" and "NOT imagenette numbers" in notice and str(tmp_path) in notice
    make_tree(tmp_path / "imagenette2-320", IMAGENETTE_WNIDS)
    assert dataset_or_fallback("imagenette", tmp_path) == ("imagenette", "")
    assert dataset_or_fallback("synthetic", None) == ("synthetic", "")
