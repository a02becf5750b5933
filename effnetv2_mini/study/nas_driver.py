"""The neural architecture search's driver (paper section 3.3's search, run with Optuna): what is
machinery, not the paper's idea (the space, the sampler and the reward are
:mod:`effnetv2_mini.paper.nas`).

One trial per candidate, random sampling (the paper's baseline) or TPE, results and architecture as
trial attributes. Storage defaults to ``<out>/nas.db`` (SQLite): a crashed or interrupted search
resumes with the same command, and an interrupted candidate's training resumes from its run
directory (``<out>/candidates/<architecture hash>``) when it is drawn again. Any database URL Optuna
accepts lets workers on many machines share one study. A duplicate architecture is pruned, not
trained twice; a candidate that runs out of memory or diverges is recorded as a
failed trial with the reason.

    study = run_search("runs/nas", TrainConfig(dataset="synthetic", epochs=3, recipe="simple"),
                       trials=20)
    summarize(study, top=5)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from pathlib import Path

import torch

from ..data.cache import process_alive
from ..engine.config import TrainConfig
from ..engine.devices import OUT_OF_MEMORY, pick_device
from ..engine.errors import TrainingDiverged
from ..engine.loop import fit
from ..measure import benchmark_throughput, count_params
from ..paper.model import build_model
from ..paper.nas import SPACES, SearchSpace, candidate_key, reward

__all__ = ["run_search", "summarize", "failures", "load_study", "step_time",
           "retry_trials_of_dead_workers"]


def step_time(space: SearchSpace, blocks, image_size: int, batch_size: int, device,
              num_classes: int = 10) -> float:
    """Median seconds of one training step (forward, loss, backward, SGD step) of
    the architecture ``blocks``."""
    model = build_model(space.base_model, num_classes=num_classes,
                        **space.overrides(tuple(blocks))).to(device)
    cuda = torch.device(device).type == "cuda"
    result = benchmark_throughput(model, image_size, batch_size, mode="train", warmup=2, repeats=5,
                                  amp=cuda, channels_last=cuda)
    return result["seconds_per_step"]


STORAGE_ATTEMPTS = 5  # opening the study's database: workers that start together race to create it


def _storage(out_dir: Path, url: str | None):
    import warnings

    import optuna

    # heartbeats (stable since 2.9)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    url = url or f"sqlite:///{(out_dir / 'nas.db').resolve()}"
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    for attempt in range(STORAGE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=5,
                                              grace_period=20)
        except (IntegrityError, OperationalError) as error:
            # workers started together race to create the tables and the version row (UNIQUE
            # failed, locked): the loser tries again
            if attempt + 1 < STORAGE_ATTEMPTS:
                time.sleep(0.5 * (attempt + 1))
                continue
            raise _storage_error(url, error) from None
        except (ImportError, ValueError, SQLAlchemyError) as error:
            # a malformed URL, a missing driver, no server
            raise _storage_error(url, error) from None


def _storage_error(url: str, error: Exception) -> ValueError:
    return ValueError(f"--storage {url!r} cannot be opened ({type(error).__name__}: "
                      f"{str(error).splitlines()[0]}): give a database URL such as "
                      "sqlite:////abs/path/nas.db or postgresql://user@host/db, or leave --storage "
                      "out to keep the search in OUT/nas.db")


def run_search(out_dir: str | Path, train: TrainConfig, trials: int,
               space: str | SearchSpace = "cpu", storage: str | None = None,
               study_name: str = "nas", sampler: str = "random", seed: int | None = None,
               w: float = -0.07, v: float = -0.05, interrupt_in_trial: int | None = None):
    """Run (or resume, or join) a search until ``trials`` candidates have completed; return the
    Optuna study. With several workers, each stops once it sees ``trials`` complete, so up to one
    extra trial per worker may finish.

    ``train`` is the proxy-training template (data set, epochs, image size, batch size, device...);
    each candidate trains in ``<out_dir>/candidates/<hash>``. ``interrupt_in_trial`` simulates
    Ctrl-C inside the n-th trial this call starts (tests).
    """
    import optuna
    from optuna.trial import TrialState

    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    space = SPACES[space] if isinstance(space, str) else space
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"the search directory {out} (--out) is a file: give a directory (it "
                         "holds nas.db and candidates/)")
    (out / "candidates").mkdir(parents=True, exist_ok=True)
    samplers = {"random": optuna.samplers.RandomSampler, "tpe": optuna.samplers.TPESampler}
    if sampler not in samplers:
        raise ValueError(f"unknown sampler {sampler!r}; choose random or tpe")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = _open_study(out, storage, study_name, samplers[sampler](seed=seed))
    optuna.storages.fail_stale_trials(study)
    retry_trials_of_dead_workers(study)
    for key, value in (("space", space.name), ("w", w), ("v", v)):
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    objective = _Objective(study, space, train, out, pick_device(train.device), w, v,
                           interrupt_in_trial)
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < trials:
        try:
            study.optimize(objective, n_trials=10 * trials,
                           callbacks=[optuna.study.MaxTrialsCallback(trials,
                                                                     states=(TrialState.COMPLETE,)),
                                      objective.release],
                           catch=(TrainingDiverged, *OUT_OF_MEMORY))
        except KeyboardInterrupt:
            for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if trial.user_attrs.get("failure", "").startswith("interrupted"):
                    study.tell(trial.number, state=TrialState.FAIL)
            raise
    return study


class _Objective:
    """One trial: draw a candidate, claim it (no two workers train one architecture at once), train
    it briefly, time it beside the reference model, and score it."""

    def __init__(self, study, space: SearchSpace, train: TrainConfig, out: Path, device, w: float,
                 v: float, interrupt_in_trial: int | None):
        self.study, self.space, self.train, self.out, self.device = study, space, train, out, device
        self.w, self.v, self.interrupt_in_trial, self.started = w, v, interrupt_in_trial, 0

    def __call__(self, trial) -> float:
        import optuna

        self.started += 1
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        blocks = self.space.blocks(self.space.suggest(trial))
        key = candidate_key(blocks)
        trial.set_user_attr("blocks", " ".join(blocks))
        trial.set_user_attr("arch_key", key)
        holder = _claim(self.study, self.out / "candidates" / f"{key}.claim", trial.number, key)
        if holder is not None:
            raise optuna.TrialPruned(holder)
        try:
            # the claim is released once Optuna has recorded the result
            return self._evaluate(trial, blocks, key)
        except BaseException:
            _release(self.out / "candidates" / f"{key}.claim", trial.number)
            raise

    def release(self, study, trial) -> None:
        """Optuna callback, after the trial's state is stored: release its claim. Released any
        earlier, another worker could claim the candidate before it shows as complete, and train it
        a second time."""
        if trial.user_attrs.get("arch_key"):
            _release(self.out / "candidates" / f"{trial.user_attrs['arch_key']}.claim",
                     trial.number)

    def _evaluate(self, trial, blocks: tuple[str, ...], key: str) -> float:
        config = dataclasses.replace(self.train, model=self.space.base_model,
                                     model_overrides=self.space.overrides(blocks),
                                     out_dir=str(self.out / "candidates" / key), quiet=True)
        stop = (3 if self.interrupt_in_trial is not None and self.started == self.interrupt_in_trial
                else None)
        size = config.image_size or 64
        try:
            summary = fit(config, stop_after_steps=stop)
            with torch.device("meta"):
                params = count_params(build_model(self.space.base_model, num_classes=10,
                                                  **self.space.overrides(blocks)))
            seconds = step_time(self.space, blocks, size, config.batch_size, self.device)
            # The reference is timed right beside the candidate, so machine load affects both alike.
            reference_now = step_time(self.space, self.space.reference, size, config.batch_size,
                                      self.device)
        except (TrainingDiverged, *OUT_OF_MEMORY) as error:
            trial.set_user_attr("failure", f"{type(error).__name__}: {error}")
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("failure", "interrupted; its training resumes if the architecture "
                                           "is drawn again")
            raise
        # percent, the final epoch's (never the best epoch chosen on validation)
        accuracy = summary["top1"]
        for name, value in (("accuracy", accuracy), ("step_time", seconds),
                            ("reference_step_time", reference_now),
                            ("normalized_step_time", seconds / reference_now), ("params", params),
                            ("train_seconds", summary["wall_time"])):
            trial.set_user_attr(name, value)
        score = reward(accuracy, seconds / reference_now, params, self.w, self.v)
        print(f"trial {trial.number}: top-1 {accuracy:.1f}%, step time "
              f"x{seconds / reference_now:.2f} of the reference, {params:,} params, reward "
              f"{score:.3g}  ({' '.join(blocks)})", flush=True)
        return score


def retry_trials_of_dead_workers(study) -> list[int]:
    """Trials left RUNNING by a worker of this machine that is gone (kill -9, a crash) are failed at
    once, and their candidate is queued again, so that the next trial draws it and resumes its
    training (its run directory keeps the epochs done). Optuna's own heartbeat check waits a grace
    period first, and a worker restarted at once skipped the candidate. Returns the
    numbers of the trials failed."""
    from optuna.trial import TrialState

    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        host, _, pid = trial.user_attrs.get("worker", "").rpartition(":")
        if host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid)):
            study.tell(trial.number, state=TrialState.FAIL)
            study.enqueue_trial(trial.params)
            failed.append(trial.number)
            print(f"trial {trial.number}: its worker (pid {pid}) is gone; its candidate is queued "
                  "again and resumes", flush=True)
    return failed


def _claim(study, path: Path, number: int, key: str) -> str | None:
    """Claim the candidate ``key`` for trial ``number`` by creating ``path`` (atomically, O_EXCL):
    None if claimed, else why not (a completed duplicate, or another worker's running trial). A
    claim left by a trial that is no longer running (a crashed worker) is taken over."""
    from optuna.trial import TrialState

    def completed_by() -> int | None:
        return next((t.number for t in study.get_trials(deepcopy=False,
                                                        states=(TrialState.COMPLETE,))
                     if t.user_attrs.get("arch_key") == key), None)

    if (done := completed_by()) is not None:
        return f"duplicate of trial {done}"
    draft = path.with_name(f"{path.name}.{number}.tmp")
    draft.write_text(str(number))
    try:
        for _ in range(3):
            try:
                # atomic, and the claim holds its trial number from the first instant
                os.link(draft, path)
            except FileExistsError:
                try:
                    holder = int(path.read_text())
                except FileNotFoundError:  # released this instant: try again
                    continue
                running = {t.number for t in study.get_trials(deepcopy=False,
                                                              states=(TrialState.RUNNING,))}
                if holder in running and holder != number:
                    return f"being trained by trial {holder} (another worker)"
                if (done := completed_by()) is not None:  # completed, its claim not yet released
                    return f"duplicate of trial {done}"
                path.unlink(missing_ok=True)  # a stale claim
                continue
            # completed (and released) since the first look
            if (done := completed_by()) is not None:
                path.unlink(missing_ok=True)
                return f"duplicate of trial {done}"
            return None
        return "could not claim the candidate"
    finally:
        draft.unlink(missing_ok=True)


def _release(path: Path, number: int) -> None:
    """Remove the claim ``path`` if trial ``number`` holds it (a pruned trial must
    not release its holder's)."""
    try:
        if int(path.read_text()) == number:
            path.unlink(missing_ok=True)
    except (FileNotFoundError, ValueError):
        pass


def _open_study(out: Path, storage: str | None, study_name: str, sampler, attempts: int = 10):
    """Create or join the study. Workers started together race to create the tables and the study;
    the loser of that race gets a database error and simply tries again to join."""
    import time

    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            return optuna.create_study(study_name=study_name, storage=_storage(out, storage),
                                       direction="maximize", sampler=sampler, load_if_exists=True)
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.DuplicatedStudyError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.5 * (attempt + 1))


def summarize(study, top: int = 5, w: float | None = None, v: float | None = None) -> list[dict]:
    """The completed candidates ranked by reward (recomputed with ``w``,
    ``v`` if given: sensitivity)."""
    from optuna.trial import TrialState

    w = study.user_attrs.get("w", -0.07) if w is None else w
    v = study.user_attrs.get("v", -0.05) if v is None else v
    rows = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        a = trial.user_attrs
        rows.append({"trial": trial.number, "blocks": a["blocks"], "accuracy": a["accuracy"],
                     "normalized_step_time": a["normalized_step_time"], "params": a["params"],
                     "reward": reward(a["accuracy"], a["normalized_step_time"], a["params"], w, v),
                     **{k: trial.params[k] for k in trial.params}})
    rows.sort(key=lambda r: r["reward"], reverse=True)
    return rows[:top] if top else rows


def failures(study) -> list[dict]:
    from optuna.trial import TrialState

    return [{"trial": t.number, "blocks": t.user_attrs.get("blocks"),
             "reason": t.user_attrs.get("failure", "unknown")}
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))]


def load_study(out_dir: str | Path, storage: str | None = None, study_name: str = "nas"):
    """The search stored in ``out_dir/nas.db`` (or ``storage``); a clear error if there is none."""
    import optuna

    if storage is None and not (Path(out_dir) / "nas.db").is_file():
        raise FileNotFoundError(f"no search in {out_dir} (no nas.db there): run `effnetv2 nas "
                                f"--out {out_dir} ...` first, or pass --storage URL for a "
                                "study kept elsewhere")
    try:
        return optuna.load_study(study_name=study_name, storage=_storage(Path(out_dir), storage))
    except KeyError:
        raise ValueError(f"the storage of {out_dir} has no study named "
                         f"{study_name!r} (--study)") from None


