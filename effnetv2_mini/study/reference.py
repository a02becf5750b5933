"""The paper's reference numbers (``study/paper_numbers.yaml``), each with its source."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import yaml

__all__ = ["paper_numbers", "paper_value", "paper_table"]


@lru_cache(maxsize=1)
def paper_numbers() -> dict:
    text = resources.files("effnetv2_mini").joinpath("study/paper_numbers.yaml").read_text()
    return yaml.safe_load(text)


def paper_value(model: str, key: str):
    """``(value, source)`` of one reference number, or ``(None, None)`` if the paper gives none."""
    entry = paper_numbers()["models"].get(model, {}).get(key)
    if entry is None:
        return None, None
    return entry["value"], entry["source"]


def paper_table(name: str) -> dict:
    """A whole reference table (e.g. ``table5``) with its ``source``."""
    return paper_numbers()["tables"][name]
