"""Decoded-image cache (effnetv2_mini.data.cache): same labels as ImageFolder, same pixels as a full decode,
16-bit and CMYK images, corrupt files, interrupted and concurrent builds, invalidation, DataLoader workers."""

import errno
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.datasets import ImageFolder

from effnetv2_mini.data import cache as imagecache
from effnetv2_mini.data.cache import CachedImageDataset, cache_info, cache_side, list_caches, source_key
from effnetv2_mini.data.datasets import get_dataset
from effnetv2_mini.data.images import CorruptImageError, SafeImageLoader, collate_skipping
from effnetv2_mini.data.transforms import eval_transform

SIZE = 40  # cached short side 96 (40 + 32, rounded up to 32): the 300x200 JPEG decodes in draft mode at 1/2 scale
MAX_MEAN_ABS_DIFF = 3.0  # grey levels; a flipped, channel-swapped or cropped image is far beyond (checked below)


def scene(width: int, height: int) -> np.ndarray:
    """Smooth and asymmetric (a left-to-right red ramp, a top-to-bottom green ramp, a block near the top left):
    JPEG keeps it well, and a flip, a channel swap or a crop changes it a lot."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([230 * x / width, 200 * y / height, 60 + 40 * np.sin(x / 9.0)], axis=-1)
    rgb[height // 8: height // 3, width // 8: width // 3] = (30, 220, 240)
    return rgb.astype(np.uint8)


def make_tree(root):
    """root/train/<class>/...: mixed sizes, aspect ratios, modes and formats, and one corrupt file."""
    for name in ("cat", "dog", "emu"):
        (root / "train" / name).mkdir(parents=True)
    train = root / "train"
    Image.fromarray(scene(300, 200)).save(train / "cat" / "wide.jpg", quality=95)
    Image.fromarray(scene(120, 160)).save(train / "cat" / "tall.jpg", quality=95)
    Image.fromarray(scene(64, 64)).save(train / "cat" / "small.png")
    Image.fromarray(scene(200, 150)).convert("L").save(train / "dog" / "gray.jpg", quality=95)
    Image.fromarray(scene(160, 120)).convert("CMYK").save(train / "dog" / "cmyk.jpg", quality=95)
    Image.fromarray(np.full((100, 80), 32768, np.uint16)).save(train / "emu" / "deep16.png")  # 16-bit mid-grey
    Image.fromarray(scene(90, 90)).convert("P").save(train / "emu" / "palette.png")
    (train / "emu" / "broken.jpg").write_bytes(b"this is not an image")
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "data")


def cached(tree, tmp_path, **kwargs):
    kwargs = {"skip_corrupt": True, "cache": tmp_path / "cache", "decode_size": SIZE, **kwargs}
    return get_dataset("imagefolder", "train", root=tree, **kwargs)


def mean_abs_diff(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


def test_labels_are_imagefolders(tree, tmp_path):
    dataset, reference = cached(tree, tmp_path), ImageFolder(str(tree / "train"))
    assert isinstance(dataset.base, CachedImageDataset)
    assert dataset.classes == reference.classes == ["cat", "dog", "emu"]
    assert dataset.base.class_to_idx == reference.class_to_idx
    assert dataset.base.samples == reference.samples and dataset.base.targets == reference.targets
    labels = [item[1] for item in (dataset[i] for i in range(len(dataset))) if item is not None]
    assert labels == [t for (path, t) in reference.samples if "broken" not in path]


def test_imagenette_labels_are_torchvisions(tmp_path):
    from torchvision.datasets import Imagenette

    for i, wnid in enumerate(["n02102040", "n01440764"]):  # English springer, tench
        folder = tmp_path / "imagenette2-320" / "val" / wnid
        folder.mkdir(parents=True)
        for j in range(2):
            Image.fromarray(scene(60 + 10 * j, 50)).save(folder / f"img{i}{j}.JPEG")
    dataset = get_dataset("imagenette", "val", root=tmp_path, cache=tmp_path / "cache", decode_size=SIZE)
    reference = Imagenette(str(tmp_path), split="val", size="320px")
    assert dataset.classes == reference.classes and dataset.classes[0][0] == "tench"
    assert dataset.base.samples == reference._samples and dataset.base.class_to_idx == reference.class_to_idx
    assert [dataset[i][1] for i in range(4)] == [0, 0, 1, 1]


def test_cached_pixels_match_a_full_decode_and_every_mode_becomes_rgb(tree, tmp_path):
    dataset = cached(tree, tmp_path)
    for i, (path, _) in enumerate(dataset.base.samples):
        if "broken" in path or "deep16" in path:
            continue
        image, _ = dataset[i]
        assert image.dtype == torch.uint8 and image.shape[0] == 3
        full = Image.open(path).convert("RGB")  # the reference path: torchvision's loader, full size
        short = min(full.size)
        assert min(image.shape[1:]) == min(short, cache_side(SIZE))  # never upsampled, never cropped
        assert abs(image.shape[2] / image.shape[1] - full.size[0] / full.size[1]) < 0.02
        reference = np.asarray(full.resize((image.shape[2], image.shape[1]), Image.Resampling.BICUBIC))
        ours = image.permute(1, 2, 0).numpy()
        assert mean_abs_diff(ours, reference) < MAX_MEAN_ABS_DIFF, path
        assert mean_abs_diff(ours[:, ::-1], reference) > 4 * MAX_MEAN_ABS_DIFF  # a flip would be caught
        assert mean_abs_diff(ours[..., ::-1], reference) > 4 * MAX_MEAN_ABS_DIFF or "gray" in path  # so would BGR
        width, height = full.size
        cropped = full.crop((width // 10, height // 10, width - width // 10, height - height // 10))
        cropped = np.asarray(cropped.resize((image.shape[2], image.shape[1]), Image.Resampling.BICUBIC))
        assert mean_abs_diff(ours, cropped) > 2 * MAX_MEAN_ABS_DIFF  # and so would a crop (10% off each side)
    deep = dataset[[p for p, _ in dataset.base.samples].index(str(tree / "train" / "emu" / "deep16.png"))][0]
    assert deep.shape == (3, 100, 80)  # 80 x 100: smaller than 96, kept as it is
    assert abs(deep.float().mean().item() - 127.5) < 1.0  # mid-grey, not clipped to white


def test_draft_mode_loader_decodes_smaller_and_scales_16_bit(tree):
    wide, deep = str(tree / "train" / "cat" / "wide.jpg"), str(tree / "train" / "emu" / "deep16.png")
    assert SafeImageLoader()(wide).size == (300, 200)
    assert SafeImageLoader(draft_size=72)(wide).size == (150, 100)  # 1/2 scale: short side still >= 72
    assert SafeImageLoader(draft_size=40)(wide).size == (75, 50)  # 1/4 scale
    assert np.asarray(SafeImageLoader()(deep)).mean() == pytest.approx(127.5, abs=1)
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True, decode_size=SIZE)
    assert dataset.resolution == SIZE and dataset[2][0].size == (150, 100)  # samples: cat/small, cat/tall, cat/wide
    dataset.set_resolution(16)  # cached side 16 + 32 -> 64: 1/4 scale (50 px) would be too small, 1/2 it stays
    assert dataset.resolution == 16 and dataset[2][0].size == (150, 100)


def test_corrupt_file_is_named_or_skipped(tree, tmp_path):
    with pytest.raises(CorruptImageError) as error:
        cached(tree, tmp_path, skip_corrupt=False)
    assert "broken.jpg" in str(error.value) and "skip_corrupt" in str(error.value)
    assert list_caches(tmp_path / "cache") == []  # the failed build left nothing
    dataset = cached(tree, tmp_path)
    items = [dataset[i] for i in range(len(dataset))]
    images, labels, skipped = collate_skipping([(eval_transform(16)(i[0]), i[1]) if i else None for i in items])
    assert skipped == 1 and images.shape == (7, 3, 16, 16)
    with pytest.raises(CorruptImageError, match="broken.jpg"):  # the same cache, opened without skip_corrupt
        cached(tree, tmp_path, skip_corrupt=False)


def test_interrupted_build_is_never_used_and_the_next_call_rebuilds(tree, tmp_path, monkeypatch):
    decode, calls = imagecache.decode_to_side, []

    def interrupted(path, **kwargs):  # Ctrl-C after three images
        calls.append(path)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return decode(path, **kwargs)

    monkeypatch.setattr(imagecache, "decode_to_side", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cached(tree, tmp_path)
    key_folder = next((tmp_path / "cache").iterdir())
    assert list_caches(tmp_path / "cache") == [] and not list(key_folder.glob(".partial-*"))
    calls.clear()
    monkeypatch.setattr(imagecache, "decode_to_side", lambda path, **kw: calls.append(path) or decode(path, **kw))
    dataset = cached(tree, tmp_path)
    assert len(calls) == len(dataset) == 8 and dataset[0] is not None


def test_a_killed_build_leaves_a_partial_folder_that_is_ignored_and_removed(tree, tmp_path):
    script = textwrap.dedent(f"""
        import time
        from effnetv2_mini.data import cache as imagecache
        from effnetv2_mini.data.datasets import get_dataset
        decode = imagecache.decode_to_side
        def slow(path, **kwargs):
            time.sleep(0.3)
            return decode(path, **kwargs)
        imagecache.decode_to_side = slow
        get_dataset("imagefolder", "train", root={str(tree)!r}, cache={str(tmp_path / "cache")!r}, decode_size={SIZE},
                    skip_corrupt=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while not list((tmp_path / "cache").glob("*/.partial-*/pixels.u8")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # a few images written
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert list((tmp_path / "cache").glob("*/.partial-*")) and list_caches(tmp_path / "cache") == []
    dataset = cached(tree, tmp_path)
    assert dataset[0] is not None and not list((tmp_path / "cache").glob("*/.partial-*"))
    assert len(list_caches(tmp_path / "cache")) == 1


def test_a_changed_file_gives_a_new_cache(tree, tmp_path):
    first = cached(tree, tmp_path).base
    key = first.key
    wide = tree / "train" / "cat" / "wide.jpg"
    os.utime(wide, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched
    touched = cached(tree, tmp_path).base
    assert touched.key != key
    Image.fromarray(scene(300, 200)[::-1].copy()).save(wide, quality=95)  # replaced
    replaced = cached(tree, tmp_path).base
    assert len({key, touched.key, replaced.key}) == 3 and len(list_caches(tmp_path / "cache")) == 3
    assert source_key(replaced.samples) == replaced.key
    index = [p for p, _ in replaced.samples].index(str(wide))
    assert mean_abs_diff(replaced[index][0], first[index][0]) > 20  # the new pixels, not the stale ones


def test_set_resolution_switches_caches_and_a_second_run_reuses_them(tree, tmp_path, monkeypatch):
    dataset = cached(tree, tmp_path).base
    assert dataset[0][0].shape == (3, 64, 64)  # cat/small.png: smaller than 96, kept as it is
    dataset.set_resolution(16)
    assert dataset.resolution == 16 and dataset[1][0].shape == (3, 85, 64)  # cat/tall.jpg 120x160 -> 64 x 85
    info = cache_info(dataset.cache_folder(16))
    assert info["side"] == 64 and info["images"] == 8 and info["bytes"] > 0 and "64 px" in dataset.describe()
    monkeypatch.setattr(imagecache, "decode_to_side", None)  # a second run must not decode anything
    again = cached(tree, tmp_path).base
    again.set_resolution(16)
    assert torch.equal(again[1][0], dataset[1][0])


def test_default_location_is_the_environment_variable(tree, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EFFNETV2_CACHE", str(tmp_path / "env"))
    dataset = get_dataset("imagefolder", "train", root=tree, skip_corrupt=True, cache=True, decode_size=SIZE)
    assert dataset.base.cache_folder(SIZE) == tmp_path / "env" / dataset.base.key / "96"
    assert "8 images at 96 px short side" in capsys.readouterr().out


def test_dataloader_workers_and_per_sample_seeding(tree, tmp_path):
    from effnetv2_mini.data.transforms import train_transform

    dataset = cached(tree, tmp_path)
    assert len(pickle.dumps(dataset)) < 20_000  # no pixels, no open map
    dataset.transform = eval_transform(SIZE)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate_skipping)
    images = torch.cat([batch[0] for batch in loader])
    expected = torch.stack([item[0] for item in (dataset[i] for i in range(len(dataset))) if item is not None])
    assert torch.equal(images, expected)
    dataset.transform = train_transform(SIZE, randaug_magnitude=9)
    draws = []
    for _ in range(2):
        torch.manual_seed(7)
        draws.append(dataset[2][0])
    assert torch.equal(*draws)


def test_concurrent_builders_decode_once(tree, tmp_path, monkeypatch):
    decode, calls = imagecache.decode_to_side, []

    def slow(path, **kwargs):  # long enough for the second builder to arrive while the first one decodes
        calls.append(path)
        time.sleep(0.05)
        return decode(path, **kwargs)

    monkeypatch.setattr(imagecache, "decode_to_side", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cached(tree, tmp_path).base[0][0])) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 2 and torch.equal(*results) and len(calls) == 8
    folder = cached(tree, tmp_path).base.cache_folder(SIZE)  # without a lock the first rename wins: a late
    first = (folder / "pixels.u8").stat().st_ino  # builder (build_cache takes no lock) decodes, then keeps it
    imagecache.build_cache(ImageFolder(str(tree / "train")).samples, 72, folder, skip_corrupt=True, quiet=True)
    assert len(calls) == 16 and (folder / "pixels.u8").stat().st_ino == first
    assert not list(folder.parent.glob(".partial-*"))


def test_cache_sides_are_shared_by_nearby_sizes():
    """S + 32 rounded up to a multiple of 32: a progressive schedule's sizes 88, 104, 112 and 128 use two caches."""
    assert [cache_side(s) for s in (16, 40, 64, 88, 96, 104, 112, 128, 300)] == [64, 96, 96, 128, 128, 160, 160, 160, 352]


def test_a_photo_replaced_with_the_same_size_and_mtime_is_decoded_anew(tree, tmp_path):
    """``cp -p`` / ``rsync -a`` / fixed-date archives restore size and mtime: the cache must still see the new photo."""
    photo = tree / "train" / "cat" / "wide.jpg"
    first = cached(tree, tmp_path)
    index = [i for i, (path, _) in enumerate(first.base.samples) if path.endswith("wide.jpg")][0]
    before = first.base[index][0]
    stat = photo.stat()
    replacement, mirrored = tmp_path / "replacement.jpg", Image.fromarray(np.ascontiguousarray(scene(300, 200)[:, ::-1]))
    for quality in range(90, 10, -10):  # a JPEG no larger than the original, padded after its end marker
        mirrored.save(replacement, quality=quality)
        if replacement.stat().st_size <= stat.st_size:
            break
    replacement.write_bytes(replacement.read_bytes().ljust(stat.st_size, b"\0"))
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    shutil.copy2(replacement, photo)  # same bytes count and mtime as the original
    assert photo.stat().st_size == stat.st_size and photo.stat().st_mtime_ns == stat.st_mtime_ns
    after = cached(tree, tmp_path).base[index][0]
    assert mean_abs_diff(after.numpy(), before.numpy()) > 20  # the mirrored photo, not the stale pixels


def test_a_full_disk_during_the_build_is_a_clear_error_and_leaves_no_partial_folder(tree, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(imagecache, "_write_pixels", full)
    with pytest.raises(OSError, match="no space left on the disk of .* set EFFNETV2_CACHE to a folder on a larger disk, "
                                      "or train without --cache"):
        cached(tree, tmp_path)
    assert not list((tmp_path / "cache").rglob(".partial-*"))


def test_the_pool_hands_over_whole_chunks_in_order(tmp_path):
    """The cache build's worker pool: results in input order, across several chunks (two workers: 128 per chunk)."""
    with imagecache._ordered_map(2) as ordered_map:
        assert list(ordered_map(abs, list(range(-300, 0)))) == list(range(300, 0, -1))


def _sigterm_is_default(_) -> bool:
    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_pools_workers_die_on_sigterm_when_the_parent_defers_it_as_a_training_run_does():
    """A training run installs a SIGTERM handler (stop at a batch end) before it builds its caches. Workers that
    inherited it ignored the pool's terminate, and a build hung at its end on a worker blocked on the pool's queue
    lock (seen on Imagenette: 'decoding 9,469 images ... 100%', then nothing)."""
    previous = signal.signal(signal.SIGTERM, lambda *args: None)
    try:
        with imagecache._ordered_map(2) as ordered_map:
            assert all(ordered_map(_sigterm_is_default, list(range(64))))
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_dangling_link_with_cache_and_skip_corrupt_is_skipped_and_named_without_it(tree, tmp_path):
    (tree / "train" / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    dataset = cached(tree, tmp_path)  # skip_corrupt=True: dropped and counted, no raw ENOENT
    assert sum(item is None for item in (dataset[i] for i in range(len(dataset)))) == 2  # broken.jpg and gone.jpg
    with pytest.raises(CorruptImageError, match=r"gone\.jpg: no such file \(a dangling link\?\)"):
        cached(tree, tmp_path / "other", skip_corrupt=False)
