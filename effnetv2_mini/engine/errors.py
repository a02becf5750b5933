"""Errors every part of the library raises for the user to read (kept free of heavy imports, so that
the command line can catch them without importing torch)."""

from __future__ import annotations

__all__ = ["CheckpointError", "TrainingDiverged"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file and what to do."""


class TrainingDiverged(RuntimeError):
    """The loss (or a weight) became NaN or infinite; the message says which checkpoint is kept."""
