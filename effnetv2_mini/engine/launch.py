"""Starting a training: in this process, or under torchrun
(``python -m effnetv2_mini.engine.launch --config SPEC`` is what torchrun runs in each process).

    from effnetv2_mini.engine.launch import launch
    summary = launch(config, nproc=2, schedule=schedule)  # 2 processes on this node;
                                                          # nproc=1: in this process
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..paper.progressive import ProgressiveSchedule
from .config import TrainConfig, config_from_dict
from .distributed import Rendezvous, read_spec, torchrun
from .loop import fit
from .rundir import read_summary

__all__ = ["launch"]


def launch(config: TrainConfig, nproc: int = 1, schedule: ProgressiveSchedule | None = None,
           rendezvous: Rendezvous | None = None) -> dict:
    """Train in this process (``nproc`` 1 on one node), or under torchrun with
    ``nproc`` processes per node.

    The CLI, the notebooks and the experiments all start training through this. The config (and
    schedule) travel as ``<out_dir>/launch.json``; the summary is read back from the run directory.
    """
    if nproc <= 1 and (rendezvous is None or rendezvous.nnodes == 1):
        return fit(config, schedule)
    spec = {"config": dataclasses.asdict(config),
            "schedule": schedule.to_dict() if schedule else None}
    torchrun("effnetv2_mini.engine.launch", spec, Path(config.out_dir) / "launch.json", nproc,
             rendezvous)
    return read_summary(config.out_dir) if (Path(config.out_dir) / "last.pt").exists() else {}


def _main(argv=None) -> None:
    spec = read_spec(argv)
    schedule = ProgressiveSchedule.from_dict(spec["schedule"]) if spec.get("schedule") else None
    fit(config_from_dict(spec["config"]), schedule)


if __name__ == "__main__":
    _main()
