"""Checkpoints: written atomically, read safely, and only ever holding finite numbers.

- :func:`atomic_save` writes to a temporary file in the same folder and renames it over the target,
  so a crash, Ctrl-C, ``kill -9`` or a full disk in the middle of a write leaves the
  previous checkpoint intact.
- :func:`load_checkpoint` reads with ``torch.load(weights_only=True)`` (a file from the internet
  cannot run code) and turns every way a file can be wrong (missing, truncated, not a checkpoint)
  into one error naming the file.
- :func:`non_finite_tensors` lists the tensors of a state dict holding NaN or infinity: a diverged
  run must not overwrite its last good checkpoint with them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import struct
import tempfile
import zipfile
from pathlib import Path

import torch

from .errors import CheckpointError

__all__ = ["CheckpointError", "TEMP_SUFFIX", "atomic_save", "atomic_write_text",
           "atomic_write_json", "load_checkpoint", "rng_state", "set_rng_state",
           "non_finite_tensors"]


# Our temporary files end with this, so that a clean-up after a crash removes only files this
# program wrote (never a user's ``notes.json.tmp`` in the same folder).
TEMP_SUFFIX = ".effnetv2-partial"


@contextlib.contextmanager
def _replacing(path: str | os.PathLike, binary: bool):
    """A stream to a temporary file beside ``path``: synced and renamed over ``path`` (atomically)
    when the block ends, removed on any failure; a full disk becomes a
    :class:`CheckpointError` naming ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=TEMP_SUFFIX, delete=False)
    handle.close()
    try:
        with open(handle.name, "wb" if binary else "w", buffering=0 if binary else -1) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(handle.name, path)
    except (OSError, RuntimeError) as error:
        if _disk_full(error):
            raise CheckpointError(f"disk full while writing {path}: the previous file is "
                                  "untouched. Free some space and rerun the same command to resume "
                                  "from the last complete checkpoint.") from error
        raise
    finally:
        if os.path.exists(handle.name):
            os.unlink(handle.name)


def atomic_save(payload: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    with _replacing(path, binary=True) as stream:
        torch.save(payload, _WholeWrites(stream))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace the text file ``path`` atomically (a run's config.json and metrics.jsonl): a crash or
    a full disk leaves the previous version, never a truncated one."""
    with _replacing(path, binary=False) as stream:
        stream.write(text)


def atomic_write_json(path: str | os.PathLike, payload, **options) -> None:
    """:func:`atomic_write_text` of ``json.dumps(payload, **options)`` (run files,
    results, a batch's status)."""
    atomic_write_text(path, json.dumps(payload, **options))


def _disk_full(error: BaseException | None) -> bool:
    """ENOSPC or EDQUOT anywhere in the chain: torch's writer reports the OSError of a write only as
    the context of its own RuntimeError."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        error = error.__cause__ or error.__context__
    return False


class _WholeWrites:
    """A file whose ``write`` writes every byte or raises, so that a full disk is an
    ``OSError(ENOSPC)``: given a path, or a file that writes short, ``torch.save`` reports it as an
    opaque ``RuntimeError`` ("unexpected pos")."""

    def __init__(self, raw):
        self.raw, self.name = raw, raw.name

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            done += self.raw.write(view[done:])
        return done

    def flush(self) -> None:
        self.raw.flush()


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint safely (``weights_only=True``); a clear
    :class:`CheckpointError` if it cannot be read."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give a checkpoint file in it "
                              f"(e.g. {path / 'best.pt'})")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refused a class or function: never retry unsafely
        if "Unsupported operand" in str(error):  # not a pickle at all: random or corrupt bytes
            raise CheckpointError(f"{path} is not a readable checkpoint (corrupt or not a PyTorch "
                                  "file). Delete it, or point to another file.") from None
        refused = re.search(r"GLOBAL (\S+)", str(error))
        raise CheckpointError(f"{path} holds objects other than tensors and plain values"
                              f"{f' ({refused.group(1)})' if refused else ''}, which are "
                              "not loaded for safety (a checkpoint can run code when unpickled). "
                              "Use a checkpoint written by this library, or a plain state dict "
                              "saved with torch.save(model.state_dict(), ...).") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, KeyError, IndexError,
            TypeError, AttributeError, struct.error) as error:
        # a text or random file fails in the unpickler in many ways
        detail = (str(error).splitlines() or [""])[0].split(". ")[0][:200]
        raise CheckpointError(f"{path} is not a readable checkpoint (truncated or not "
                              f"a PyTorch file: {type(error).__name__}: {detail}). Delete it, or "
                              "point to another file.") from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path} holds a {type(payload).__name__}, not a "
                              "checkpoint or state dict")
    for key, kind, meaning in _CHECKED_FIELDS:
        value = payload.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointError(f"{path}: its {key!r} is {value!r} ({type(value).__name__}), not "
                                  f"{meaning}: the file was edited or written by another program; "
                                  "use a checkpoint written by effnetv2 train")
    return payload


# Fields of our checkpoints that code reads as numbers or names (a plain
# state dict has none of them).
_CHECKED_FIELDS = (("num_classes", int, "a whole number"), ("epoch", int, "a whole number"),
                   ("batches_done", int, "a whole number"), ("eval_size", int, "a whole number"),
                   ("model_name", str, "a model name"))


def rng_state() -> dict:
    """torch's CPU (and CUDA) random states, to continue a run exactly where it stopped."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def non_finite_tensors(state: dict, prefix: str = "") -> list[str]:
    """Names of floating-point tensors holding NaN or infinity, in a (nested) state dict."""
    bad = []
    for name, value in state.items():
        if isinstance(value, dict):
            bad += non_finite_tensors(value, f"{prefix}{name}.")
        elif (torch.is_tensor(value) and value.is_floating_point()
              and not torch.isfinite(value).all()):
            bad.append(prefix + str(name))
    return bad
