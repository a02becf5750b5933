"""Rehearsals: every notebook of a plan, through the plan's own code paths, in minutes on a CPU.

``python -m reproduce run PLAN --rehearse`` runs the plan into ``runs/PLAN-rehearsal/`` with ``rehearse=True``
(the profile registry shrinks every setting to one or two steps per stage at tiny image sizes; see
``effnetv2_mini.study.profiles.rehearsal``), and gives the notebooks a data folder made here: miniature trees of the
data sets the plan reads, laid out as the real ones (Imagenette as torchvision unpacks it, ImageNet and
ImageNet-21k as class folders), so that the real loaders run. Data sets that torchvision checks by checksum
(CIFAR, Flowers, Cars) cannot be faked: their notebooks fall back to the built-in set, loudly, as they would
offline. Pretrained torchvision weights become a randomly initialised torchvision model saved as a state dict,
which exercises the same name mapping. The rehearsal's report says it is one, and claims nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["prepare", "rehearsal_parameters"]

IMAGES_PER_CLASS = {"train": 4, "val": 2}


def _write_images(folder: Path, count: int, seed: int, prefix: str = "") -> None:
    """``count`` small JPEGs of mixed sizes and modes (some grayscale), deterministic for ``seed``;
    the first is named ``img0``, the others ``<prefix>img<i>``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    for i in range(count):
        height, width = (48, 64) if i % 2 else (72, 56)
        pixels = torch.randint(0, 256, (height, width, 3), generator=generator, dtype=torch.uint8).numpy()
        image = Image.fromarray(pixels)
        name = f"img{i}.JPEG" if i == 0 else f"{prefix}img{i}.JPEG"
        (image.convert("L") if i % 3 == 2 else image).save(folder / name, quality=85)


def _tree(root: Path, classes: list[str], seed: int) -> None:
    """Class folders of ``IMAGES_PER_CLASS`` images. Read as ImageNet-21k (one file name in several
    class folders is one image of several classes), ``img0`` is one image of every class and the
    others one image each."""
    for split, count in IMAGES_PER_CLASS.items():
        for index, name in enumerate(classes):
            _write_images(root / split / name, count, seed * 1000 + index * 10 + (split == "val"),
                          prefix=f"{name}_")


def prepare(data_root: Path) -> Path:
    """Make the miniature data trees under ``data_root`` (once; reused by later rehearsals)."""
    from torchvision.datasets import Imagenette

    data_root = Path(data_root)
    done = data_root / ".rehearsal-data-2"  # -2: file names apart per class (read by name: 21k)
    if done.exists():
        return data_root
    wnids = sorted(Imagenette._WNID_TO_CLASS)
    for size in ("160", "320"):
        _tree(data_root / f"imagenette2-{size}", wnids, seed=1)
    _tree(data_root / "imagenet", wnids, seed=2)
    _tree(data_root / "imagenet21k", wnids, seed=3)
    _tree(data_root, wnids[:4], seed=4)  # a plain class-per-folder tree at the root (--dataset imagefolder)
    done.write_text("miniature data sets for rehearsals (random pixels, real layouts)\n")
    return data_root


def _torchvision_weights(data_root: Path, model: str) -> str:
    """A state dict in torchvision's layout for ``model`` (random weights): what ``init_from="torchvision"``
    would download, for a rehearsal offline."""
    import torchvision

    from effnetv2_mini.compat import TORCHVISION_NAMES

    path = Path(data_root) / f"torchvision-{model}.pth"
    if not path.exists():
        torch.save(torchvision.models.get_model(TORCHVISION_NAMES[model], weights=None).state_dict(), path)
    return str(path)


def rehearsal_parameters(notebook: str, parameters: dict, data_root: Path) -> dict:
    """The parameters a notebook gets in a rehearsal: ``rehearse``, the miniature data folder, and local weights
    in place of downloads."""
    from effnetv2_mini.study.profiles import notebook_profile

    changed = dict(parameters, rehearse=True, data_root=str(data_root))
    if notebook == "06_transfer":
        given = {k: v for k, v in parameters.items() if k not in ("profile", "output_dir", "rehearse", "data_root")}
        values = notebook_profile(notebook, parameters.get("profile"), rehearse=True, **given)
        if values.init_from == "torchvision":  # a rehearsal fine-tunes one model (see profiles.rehearsal)
            changed["init_from"] = _torchvision_weights(data_root, values.models[0])
    return changed
