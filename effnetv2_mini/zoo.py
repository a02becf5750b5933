"""The model zoo's counts (parameters, multiply-adds at the eval size), kept as data so that
listing is instant.

``model_counts.json`` holds the counts of every registered model as :func:`compute_counts` measures
them (building the model on the ``meta`` device and counting with ``torch.utils.flop_counter``); a
test recomputes them all, so the file cannot go stale. Regenerate it with
``python -m effnetv2_mini.zoo``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["model_counts", "compute_counts", "write_counts"]

COUNTS_FILE = "model_counts.json"


@lru_cache(maxsize=1)
def _stored() -> dict:
    path = resources.files("effnetv2_mini").joinpath(COUNTS_FILE)
    return json.loads(path.read_text()) if path.is_file() else {}


def model_counts(name: str) -> dict:
    """``{"params", "macs", "eval_size"}`` of a registered model (from the
    stored file, else measured)."""
    from .paper.configs import get_config

    canonical = get_config(name).name
    return dict(_stored().get(canonical) or compute_counts(canonical))


def compute_counts(name: str) -> dict:
    """Count a model's parameters and multiply-adds at its eval size,
    without allocating its weights."""
    import torch

    from .measure import count_macs, count_params
    from .paper.configs import get_config
    from .paper.model import build_model

    config = get_config(name)
    with torch.device("meta"):
        model = build_model(name)
    return {"params": count_params(model), "macs": count_macs(model, config.eval_size),
            "eval_size": config.eval_size}


def write_counts(path: str | Path | None = None) -> Path:
    from .paper.configs import list_models

    path = Path(path) if path else Path(__file__).parent / COUNTS_FILE
    path.write_text(json.dumps({name: compute_counts(name) for name in list_models()}, indent=1,
                               sort_keys=True) + "\n")
    return path


if __name__ == "__main__":
    print(f"wrote {write_counts()}")
