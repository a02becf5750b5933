"""Many processes: DistributedDataParallel set-up, metric all-reduce, and the one torchrun launcher.

Under ``torchrun`` every process reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`setup`
joins the process group (NCCL on GPUs, gloo on CPUs) and picks the process's GPU. Only
rank 0 logs and writes files.

:func:`torchrun` is the only launcher: the CLI (``effnetv2 train --nproc 8``), the notebooks and
progressive training all start their processes through it. It runs
``python -m <module> --config <spec.json>`` in ``nproc`` processes on this node; a
:class:`Rendezvous` (nodes, node rank, endpoint) spreads a run across several nodes: start the same
command on every node with its own ``node_rank``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .devices import pick_device

__all__ = ["DistInfo", "Rendezvous", "setup", "all_reduce", "barrier", "torchrun", "read_spec"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place among ``world`` processes (1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Rendezvous:
    """Where the processes of a multi-node run meet (torchrun's ``--nnodes``,
    ``--node_rank``, ``--rdzv_endpoint``)."""

    nnodes: int = 1
    node_rank: int = 0
    endpoint: str | None = None  # "host:port" of node 0; needed when nnodes > 1

    def arguments(self) -> list[str]:
        if self.nnodes < 1 or not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank {self.node_rank} must be in [0, nnodes={self.nnodes})")
        if self.nnodes == 1:
            return ["--standalone"]
        if not self.endpoint:
            raise ValueError("a multi-node run needs a rendezvous endpoint (host:port of node 0), "
                             "e.g. --rdzv-endpoint h0:29500")
        return [f"--nnodes={self.nnodes}", f"--node_rank={self.node_rank}", "--rdzv_backend=c10d",
                f"--rdzv_endpoint={self.endpoint}"]


def setup(requested_device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group if started by torchrun; return this process's place and device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(), pick_device(requested_device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and requested_device in ("auto", "cuda")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return DistInfo(rank, world, local_rank), device


def all_reduce(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sums of ``values`` over all processes (the values themselves when not distributed)."""
    if info.world == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        dist.barrier()


def torchrun(module: str, spec: dict, spec_path: str | os.PathLike, nproc: int,
             rendezvous: Rendezvous | None = None) -> None:
    """Write ``spec`` as JSON to ``spec_path`` and run ``python -m module --config spec_path`` under
    torchrun with ``nproc`` processes on this node. Raises
    ``CalledProcessError`` if any process fails."""
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    spec_path = Path(spec_path)
    spec_path.parent.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(json.dumps(spec, indent=2))
    command = [sys.executable, "-m", "torch.distributed.run",
               *(rendezvous or Rendezvous()).arguments(), f"--nproc_per_node={nproc}", "-m", module,
               "--config", str(spec_path)]
    print("launching:", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def read_spec(argv=None, description: str = "Run one training from a launch spec "
                                            "(used under torchrun).") -> dict:
    """The spec a process started by :func:`torchrun` was given (``--config spec.json``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="the JSON spec written by the launcher")
    return json.loads(Path(parser.parse_args(argv).config).read_text())
