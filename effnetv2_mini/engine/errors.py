"""Errors every part of the library raises for the user to read (kept free of heavy imports, so that the command
line can catch them without importing torch)."""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the file and what to do."""
