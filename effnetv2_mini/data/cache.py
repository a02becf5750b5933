"""Decoded-image cache: a loader whose cost follows the training image size.

**Why.** Progressive learning (paper section 4, Algorithm 1) trains the early stages on small images
(the demo schedules start at 64-128 px) so that those epochs are cheap: the model's cost falls with
the square of the image size. Decoding does not: a 224 px JPEG costs the same to decode whether the
stage trains at 64 or at 300 px, so at small sizes the loader, not the model, sets the pace (on a
2-core CPU, Imagenette at 64 px trained at 0.72x the speed of in-memory images). Here each image is
decoded once per size, pre-resized to just above that size, and every later epoch, and every later
run, slices it out of one memory-mapped file.

**The size rule.** For training or evaluation at ``S`` px the cache keeps every image with its short
side ``S + 32`` rounded up to a multiple of 32 (:func:`cache_side`: 64 -> 96, 88 -> 128, 128 -> 160;
the stages of a progressive schedule then share a few caches), its natural aspect ratio (never a
crop) and never upsampled (smaller images are kept as they are). The official EfficientNetV2
evaluation keeps a centre square of side ``short_side * S / (S + 32)`` (for S < 320) and resizes it
to S, so a short side of S + 32 serves evaluation at S without upsampling, and serves the
random-resized crops of training at S.

**Decoding.** PIL in JPEG draft mode: libjpeg decodes at 1/2, 1/4 or 1/8 scale straight from the DCT
coefficients when that still gives a short side >= S + 32; then an antialiased resize to exactly
S + 32. Every mode becomes 8-bit RGB; 16-bit images are scaled, not clipped
(:func:`effnetv2_mini.data.images.to_rgb`).

**Storage**, in ``<root>/<key>/<side>/``: ``pixels.u8`` (each image's uint8 pixels, channel-first,
one after another; memory-mapped on read), ``index.npy`` (offset, height, width per image; height 0
marks an unreadable image kept with ``skip_corrupt``) and ``manifest.json`` (images, side, bytes,
source key, library version, build date). ``root`` is ``cache_dir`` if given, else
``$EFFNETV2_CACHE``, else ``~/.cache/effnetv2-mini/decoded``.

**Invalidation.** ``key`` (:func:`source_key`) hashes the sample list: each file's path relative to
the data set's folder, its label, its size and its modification time. A changed, touched, added,
removed or relabelled file gives a new key, hence a new cache; a stale one is never read. Old caches
are not deleted (they may serve another checkout): :func:`list_caches` shows them and their sizes.

**Interruptions and concurrent builds.** A cache is written into a ``.partial-*`` folder beside its
final place and renamed into place once complete (an atomic rename), so an interrupted build
(Ctrl-C, kill -9) never leaves a folder that will be used; the next build deletes the partial
folders of dead processes. Processes building the same cache at once (DDP ranks on one node) take a
file lock: the first one builds, the others wait, then open its cache. Where no lock is to be had,
each builds its own partial folder and the first rename wins (the others discard theirs), so the
cache is never corrupted either way.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from .. import __version__
from .images import CorruptImageError, SafeImageLoader

try:
    import fcntl
except ImportError:  # Windows: no lock; the atomic rename alone keeps caches whole
    fcntl = None

__all__ = [
    "CACHE_ENV",
    "CACHE_MARGIN",
    "CachedImageDataset",
    "DecodedImages",
    "cache_info",
    "cache_side",
    "decode_to_side",
    "default_cache_root",
    "list_caches",
    "open_or_build",
    "process_alive",
    "source_key",
]

CACHE_ENV = "EFFNETV2_CACHE"
CACHE_MARGIN = 32
CACHE_STEP = 32
FORMAT = 1  # bump when the file layout or the decoding changes: it is part of the key
PIXELS, INDEX, MANIFEST = "pixels.u8", "index.npy", "manifest.json"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (signal 0 probes without sending anything);
    True where no safe probe exists (Windows), so that callers keep what a live process may still
    own."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cache_side(size: int, margin: int = CACHE_MARGIN, step: int = CACHE_STEP) -> int:
    """The short side cached for training or evaluation at ``size`` px: ``size + 32`` rounded up to
    a multiple of 32, so that the nearby sizes of a progressive schedule share one cache (see the
    module docstring)."""
    return -(-(size + margin) // step) * step


def default_cache_root() -> Path:
    """``$EFFNETV2_CACHE``, else ``~/.cache/effnetv2-mini/decoded``."""
    return Path(os.environ.get(CACHE_ENV)
                or Path.home() / ".cache" / "effnetv2-mini" / "decoded").expanduser()


def source_key(samples) -> str:
    """16 hex digits hashing each sample's path relative to the data set's folder, label and file
    stamp: size, mtime, inode and ctime. The ctime and inode change whenever a file is replaced or
    rewritten, also by tools that restore the old size and mtime (``cp -p``, ``rsync -a``, archives
    with fixed dates), so the cache never serves a replaced photo's old pixels. A file that cannot
    be stat'ed (a dangling link) enters as missing."""
    paths = [str(path) for path, _ in samples]
    folder = os.path.commonpath(paths) if paths else ""
    digest = hashlib.sha256(f"format {FORMAT}\0{os.path.basename(folder)}\n".encode())
    for path, (_, label) in zip(paths, samples):
        digest.update(f"{os.path.relpath(path, folder)}\0{label}\0{_stamp(path)}\n".encode())
    return digest.hexdigest()[:16]


def _stamp(path: str) -> str:
    try:
        stat = os.stat(path)
    except OSError:
        return "missing"
    return f"{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}\0{stat.st_ctime_ns}"


# --------------------------------------------------------------------------------------------------
# Decoding and building
# --------------------------------------------------------------------------------------------------


def shrink_to_short_side(image: Image.Image, side: int) -> Image.Image:
    """``image`` resized (antialiased) to short side ``side``, aspect ratio kept; unchanged if
    already smaller."""
    width, height = image.size
    if min(width, height) <= side:
        return image
    if width <= height:
        size = (side, max(1, round(height * side / width)))
    else:
        size = (max(1, round(width * side / height)), side)
    # PIL widens its filters when shrinking: antialiased
    return image.resize(size, Image.Resampling.BICUBIC)


def decode_to_side(path: str, side: int, skip_corrupt: bool = False) -> np.ndarray | None:
    """``path`` as a channel-first uint8 RGB array with short side ``side`` (JPEG draft mode, then a
    resize); None for an unreadable file with ``skip_corrupt``, else :class:`CorruptImageError`
    naming it."""
    image = SafeImageLoader(skip=skip_corrupt, draft_size=side)(path)
    if image is None:
        return None
    return np.ascontiguousarray(np.asarray(shrink_to_short_side(image, side)).transpose(2, 0, 1))


def _pool_worker_signals() -> None:
    """Ctrl-C reaches the parent, which ends the pool; SIGTERM (the pool's own ``terminate``) ends
    the worker even when the parent had installed a handler of its own (a training run defers
    SIGTERM to a batch end: a worker inheriting that handler would ignore ``terminate`` and the
    build would wait for it forever)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _ordered_map(workers: int):
    """A ``map`` that keeps the order: in this process for 0 workers, else a process pool's, a chunk
    at a time.

    Each chunk is wholly received before the caller sees it, so no worker is ever blocked sending a
    result when the caller fails (a full disk): terminating a pool with a worker blocked on its
    result pipe hangs."""
    if workers <= 0:
        yield map
        return
    with multiprocessing.Pool(workers, initializer=_pool_worker_signals) as pool:
        def chunked(function, items):
            for start in range(0, len(items), 64 * workers):
                yield from pool.map(function, items[start:start + 64 * workers], chunksize=16)

        yield chunked


def _write_pixels(paths: list[str], side: int, out_path: Path, workers: int, skip_corrupt: bool,
                  quiet: bool) -> tuple[np.ndarray, list[str]]:
    """Decode every file into ``out_path``; returns the index (offset, height, width) and the files
    skipped."""
    index = np.zeros((len(paths), 3), dtype=np.int64)
    skipped, offset = [], 0
    decode = functools.partial(decode_to_side, side=side, skip_corrupt=skip_corrupt)
    description = f"decoding {len(paths):,} images to {side} px short side"
    with open(out_path, "wb") as out, _ordered_map(workers) as ordered_map, \
            tqdm(total=len(paths), desc=description, unit="img", disable=quiet) as bar:
        for i, pixels in enumerate(ordered_map(decode, paths)):
            if pixels is None:
                skipped.append(paths[i])
                index[i] = offset, 0, 0
            else:
                out.write(pixels.data)
                index[i] = offset, pixels.shape[1], pixels.shape[2]
                offset += pixels.size
            bar.update()
        out.flush()
        os.fsync(out.fileno())  # on disk before the rename makes the cache visible
    return index, skipped


def build_cache(samples, side: int, folder: str | Path, workers: int = 0,
                skip_corrupt: bool = False, quiet: bool = False, key: str = "") -> dict:
    """Decode ``samples`` to short side ``side`` into ``folder``, atomically (see the module
    docstring), and return its manifest. If another process's complete cache lands there first, that
    one is kept."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(folder)
    partial = Path(tempfile.mkdtemp(prefix=_partial_prefix(folder), dir=folder.parent))
    try:
        started = time.perf_counter()
        paths = [str(path) for path, _ in samples]
        try:
            index, skipped = _write_pixels(paths, side, partial / PIXELS, workers, skip_corrupt,
                                           quiet)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = shutil.disk_usage(folder.parent).free / 2**20
            raise OSError(error.errno,
                          f"no space left on the disk of {folder.parent} ({free:,.0f} MiB free) "
                          f"while decoding {len(paths):,} images at {side} px short side into the "
                          f"decoded-image cache: free space there, set {CACHE_ENV} to a folder on "
                          "a larger disk, or train without --cache") from error
        np.save(partial / INDEX, index)
        built = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        manifest = {
            "format": FORMAT, "images": len(paths), "side": side,
            "bytes": (partial / PIXELS).stat().st_size, "source_key": key,
            "source_folder": os.path.commonpath(paths) if paths else "", "skipped": skipped,
            "library_version": __version__, "built": built,
            "build_seconds": round(time.perf_counter() - started, 2),
        }
        # last: its presence marks a whole cache
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _publish(partial, folder)
    finally:
        # gone after a rename; a failed build leaves nothing
        shutil.rmtree(partial, ignore_errors=True)
    return read_manifest(folder)


def _partial_prefix(folder: Path) -> str:
    """Names partial folders after their owner (host, pid), so that the next build can delete
    abandoned ones."""
    return f".partial-{folder.name}@{socket.gethostname()}@{os.getpid()}@"


def _publish(partial: Path, folder: Path) -> None:
    """Rename the finished ``partial`` to ``folder``; a complete cache already there wins, a damaged
    one goes."""
    try:
        os.rename(partial, folder)
    except OSError:
        if read_manifest(folder) is not None:
            return  # another process finished first
        _discard(folder)
        os.rename(partial, folder)


def _discard(folder: Path) -> None:
    """Move ``folder`` out of the way in one rename, then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=_partial_prefix(folder), dir=folder.parent))
    os.rename(folder, trash / "old")
    shutil.rmtree(trash, ignore_errors=True)


def _remove_abandoned(folder: Path) -> None:
    """Delete the partial folders for ``folder`` left by dead processes of this host (kill -9, power
    cut)."""
    for partial in folder.parent.glob(f".partial-{folder.name}@*"):
        owner = partial.name.split("@")  # .partial-<side>, host, pid, random
        if len(owner) == 4 and owner[1] == socket.gethostname() and owner[2].isdigit() \
                and not process_alive(int(owner[2])):
            shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _exclusive(folder: Path, quiet: bool):
    """Hold a lock on ``folder``'s lock file: concurrent builders of the same cache wait for the
    first one."""
    if fcntl is None:
        yield
        return
    with open(folder.parent / f".lock-{folder.name}", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"waiting for another process to finish the decoded-image cache {folder} ...",
                      flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass  # no locks on this file system: builds race, the first rename wins
        yield


# --------------------------------------------------------------------------------------------------
# Opening and reading
# --------------------------------------------------------------------------------------------------


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of the complete cache in ``folder``, or None (missing, unfinished or
    damaged)."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        complete = (manifest.get("format") == FORMAT and (folder / INDEX).is_file()
                    and (folder / PIXELS).stat().st_size == manifest["bytes"])
    except (OSError, ValueError, KeyError):
        return None
    return manifest if complete else None


def cache_info(folder: str | Path) -> dict:
    """Where a cache lives and how big it is: its manifest plus ``path`` (for the CLI and the
    docs)."""
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no complete decoded-image cache in {folder}")
    return {"path": str(Path(folder).resolve()), **manifest}


def list_caches(root: str | Path | None = None) -> list[dict]:
    """:func:`cache_info` of every complete cache under ``root`` (default
    :func:`default_cache_root`)."""
    root = Path(root).expanduser() if root else default_cache_root()
    manifests = sorted(root.glob(f"*/*/{MANIFEST}"))
    return [cache_info(m.parent) for m in manifests if read_manifest(m.parent)]


def describe(info: dict) -> str:
    """One line: where a cache lives and how big it is."""
    return (f"decoded-image cache: {info['images']:,} images at {info['side']} px short side, "
            f"{info['bytes'] / 2**20:,.1f} MiB ({info['bytes']:,} bytes) in {info['path']}")


class DecodedImages:
    """A complete cache opened for reading. The pixel file is memory-mapped on first access in each
    process: DataLoader workers map it themselves (pickling leaves the map out)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        if self.manifest is None:
            raise FileNotFoundError(f"no complete decoded-image cache in {self.folder}")
        self.side = self.manifest["side"]
        self.index = np.load(self.folder / INDEX)
        self._pixels = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> torch.Tensor | None:
        """Image ``i`` as a uint8 tensor 3 x H x W (its own memory), or None for a skipped
        unreadable file."""
        offset, height, width = self.index[i].tolist()
        if height == 0:
            return None
        if self._pixels is None:
            self._pixels = np.memmap(self.folder / PIXELS, dtype=np.uint8, mode="r")
        # a copy: tensors own their memory
        pixels = np.array(self._pixels[offset:offset + 3 * height * width])
        return torch.from_numpy(pixels).view(3, height, width)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_pixels": None}


def open_or_build(samples, side: int, folder: str | Path, workers: int | None = None,
                  skip_corrupt: bool = False, quiet: bool = False, key: str = "") -> DecodedImages:
    """The cache in ``folder``, built first if there is none (one builder at a time); prints where
    it lives and how big it is unless ``quiet``. ``workers``: decoding processes (None: one per CPU
    core, none for fewer than 256 images; 0: in this process)."""
    folder, started, built = Path(folder), time.perf_counter(), False
    if read_manifest(folder) is None:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with _exclusive(folder, quiet):
            if read_manifest(folder) is None:  # nobody built it while this process waited
                if workers is None:
                    workers = min(os.cpu_count() or 1, len(samples) // 256)
                build_cache(samples, side, folder, workers, skip_corrupt, quiet, key)
                built = True
    images = DecodedImages(folder)
    if images.manifest["skipped"] and not skip_corrupt:
        skipped = images.manifest["skipped"]
        raise CorruptImageError(
            f"cannot read image {skipped[0]} ({len(skipped)} unreadable in all; the cache {folder} "
            "was built with skip_corrupt=True). Delete or replace the files (that makes a new "
            "cache), or pass skip_corrupt=True (CLI: --skip-corrupt) to drop unreadable images "
            "and count them in the metrics.")
    if not quiet:
        how = f"built in {time.perf_counter() - started:.1f} s" if built else "reused"
        print(f"{describe(cache_info(folder))} ({how})", flush=True)
    return images


class CachedImageDataset(Dataset):
    """Folder images served from the decoded-image cache of the current size (see the module
    docstring).

    ``samples``: ``[(path, label), ...]`` (ImageFolder's ``samples``); ``classes`` and
    ``class_to_idx`` as the source data set has them. :meth:`set_resolution` opens, building once if
    needed, the cache for a size. Items are ``(uint8 tensor 3 x H x W, label)`` passed through
    ``transform`` (torchvision v2 transforms take uint8 tensors and draw from torch's global RNG, so
    the training loop's per-sample seeding holds), or None for an unreadable image with
    ``skip_corrupt`` (:func:`effnetv2_mini.data.images.collate_skipping` drops it).

    ``cache_dir``: the cache root (caches in ``cache_dir/<key>/<side>/``), default
    :func:`default_cache_root`. ``workers``: decoding processes for a build (None: one per CPU core;
    0: in this process). ``margin``: cached short side = size + margin. ``resolution``: a size to
    open right away."""

    def __init__(self, samples, classes, class_to_idx: dict | None = None, transform=None,
                 cache_dir: str | Path | None = None, resolution: int | None = None,
                 skip_corrupt: bool = False, workers: int | None = None, margin: int = CACHE_MARGIN,
                 quiet: bool = False):
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]
        self.classes = classes
        if class_to_idx is None:
            class_to_idx = {c: i for i, c in enumerate(classes)}
        self.class_to_idx = class_to_idx
        self.transform = transform
        self.cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_root()
        self.skip_corrupt, self.workers = skip_corrupt, workers
        self.margin, self.quiet = margin, quiet
        self.resolution: int | None = None
        self._key: str | None = None
        self._images: DecodedImages | None = None
        if resolution:
            self.set_resolution(resolution)

    @property
    def key(self) -> str:
        """:func:`source_key` of the samples (computed once: it reads every file's size and
        mtime)."""
        if self._key is None:
            self._key = source_key(self.samples)
        return self._key

    def cache_folder(self, size: int) -> Path:
        """Where the cache for training or evaluation at ``size`` px lives."""
        return self.cache_root / self.key / str(cache_side(size, self.margin))

    def set_resolution(self, size: int) -> None:
        """Serve images for ``size`` px: open that size's cache, building it first if there is
        none."""
        folder = self.cache_folder(size)
        if self._images is None or self._images.folder != folder:
            self._images = open_or_build(self.samples, cache_side(size, self.margin), folder,
                                         self.workers, self.skip_corrupt, self.quiet, self.key)
        self.resolution = size

    def describe(self) -> str:
        """Where the current cache lives and how big it is."""
        if self._images is None:
            return f"decoded-image cache: none open yet (root {self.cache_root})"
        return describe(cache_info(self._images.folder))

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        if self._images is None:
            raise RuntimeError("CachedImageDataset has no image size yet: call "
                               "set_resolution(size) first (the training loop does at every "
                               "stage), or pass decode_size=SIZE to get_dataset")
        image = self._images[index]
        if image is None:
            return None
        return (self.transform(image) if self.transform is not None else image), self.targets[index]
