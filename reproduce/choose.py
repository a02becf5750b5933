"""``make reproduce`` without ``PLAN=``: the quick plan where it can really run, otherwise the smoke plan, loudly.

The quick plan needs Imagenette (present under the data folder, or downloadable) and a GPU: on a CPU its
EfficientNetV2-S trainings would take days. Anything missing, and the smoke plan runs instead, with a notice
that says what was missing and how to get the quick plan.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path


def imagenette_source(data_root: str | Path, timeout: float = 5.0) -> str | None:
    """``"present"`` if Imagenette opens from ``data_root``, ``"downloadable"`` if its archive URL answers,
    else ``None``. Nothing is downloaded here (the quick plan's notebooks download it)."""
    from effnetv2_mini.data.datasets import DatasetNotFoundError, get_dataset, imagenette_url

    try:
        get_dataset("imagenette", "train", root=data_root, download=False)
        return "present"
    except DatasetNotFoundError:
        pass
    try:
        with urllib.request.urlopen(urllib.request.Request(imagenette_url(), method="HEAD"), timeout=timeout):
            return "downloadable"
    except (urllib.error.URLError, OSError, ValueError):
        return None


def accelerator() -> str | None:
    """The GPU that ``pick_device("auto")`` would train on, described; ``None`` on a CPU-only machine."""
    import torch

    from effnetv2_mini.engine.devices import pick_device

    device = pick_device("auto")
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return None if device.type == "cpu" else device.type


def choose_plan(data_root: str | Path = "data", imagenette: str | None = None, device: str | None = None,
                probe: bool = True) -> tuple[str, str]:
    """``(plan, why)``. With ``probe`` the data set and the device are looked up; tests pass them instead."""
    if probe:
        imagenette, device = imagenette_source(data_root), accelerator()
    if imagenette and device:
        return "quick", f"Imagenette is {imagenette} (data folder {data_root}) and a GPU is here: {device}."
    missing = []
    if not imagenette:
        missing.append(f"Imagenette is neither in {data_root}/ nor downloadable (offline?)")
    if not device:
        missing.append("no GPU was found (the quick plan trains EfficientNetV2-S; on a CPU that takes days)")
    from effnetv2_mini.data.datasets import loud_notice

    return "smoke", loud_notice(
        f"running the SMOKE plan, not the quick one: {'; '.join(missing)}.\nThe smoke plan checks that every notebook "
        "runs, on built-in data and tiny models; its numbers are NOT a reproduction. Put Imagenette in the data folder "
        "(or go online) on a GPU machine and rerun, or pick a plan: make reproduce PLAN=quick.")
