"""Training-aware NAS: the space, the reward, and a resumable, shareable Optuna search."""

import os
import subprocess
import sys

import pytest
import torch
from optuna.trial import TrialState

from effnetv2_mini import build_model
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.measure import count_params
from effnetv2_mini.paper.nas import SPACES, reward
from effnetv2_mini.study.nas_driver import load_study, run_search, summarize


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampling_is_deterministic_and_covers_the_space(name):
    space = SPACES[name]
    assert space.sample(7) == space.sample(7)
    samples = [space.sample(seed) for seed in range(400)]
    assert len({tuple(sorted(s.items())) for s in samples}) > 300
    for parameter, choices in space.parameters().items():
        assert {s[parameter] for s in samples} == set(choices), parameter
    assert {"MBConv", "Fused-MBConv"} == set(space.parameters()["s0_op"])
    assert set(space.parameters()["s0_kernel"]) == {3, 5} and set(space.parameters()["s0_expand"]) == {1, 4, 6}


def test_every_sampled_candidate_builds_and_runs():
    space = SPACES["cpu"]
    for seed in range(12):
        choice = space.sample(seed)
        model = build_model(space.base_model, num_classes=10, **space.overrides(space.blocks(choice))).eval()
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        config = space.config(choice)  # an ordinary config of the configs module
        assert count_params(build_model(config, num_classes=10)) == count_params(model)
        fused = [s.fused for s in config.stages()]
        assert fused == [choice[f"s{i}_op"] == "Fused-MBConv" for i in range(len(fused))]
    b4 = SPACES["b4"]
    with torch.device("meta"):
        model = build_model(b4.base_model, **b4.overrides(b4.blocks(b4.sample(0))))
    assert len(model.stages) == 7


def test_reward_is_the_papers_formula():
    assert reward(0.8, 1.0, 1.0) == pytest.approx(0.8)
    assert reward(0.8, 2.0, 1e6) == pytest.approx(0.8 * 2.0**-0.07 * 1e6**-0.05)
    assert reward(0.8, 2.0, 1e6, w=0.0, v=0.0) == pytest.approx(0.8)
    assert reward(0.8, 0.5, 1e6) > reward(0.8, 2.0, 1e6)  # faster is better at equal accuracy
    with pytest.raises(ValueError):
        reward(0.5, 0.0, 10)


def template(**overrides):
    values = dict(dataset="synthetic", epochs=1, batch_size=32, image_size=32, recipe="simple", workers=0,
                  synthetic={"num_samples": 128}, device="cpu")
    values.update(overrides)
    return TrainConfig(**values)


def test_interrupted_search_resumes_to_exactly_n_unique_trials(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path, template(), trials=3, seed=0, interrupt_in_trial=2)
    study = load_study(tmp_path)
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 1 and failed[0].user_attrs["failure"].startswith("interrupted")
    interrupted_dir = tmp_path / "candidates" / failed[0].user_attrs["arch_key"]
    assert (interrupted_dir / "last.pt").exists()  # its training resumes if it is drawn again
    study = run_search(tmp_path, template(), trials=3, seed=1)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 3
    assert len({t.user_attrs["arch_key"] for t in complete}) == 3
    assert not study.get_trials(states=(TrialState.RUNNING,))
    rows = summarize(study, top=0)
    assert [r["reward"] for r in rows] == sorted((r["reward"] for r in rows), reverse=True)
    run_search(tmp_path, template(), trials=3)  # already done: no new trial
    assert len(load_study(tmp_path).get_trials()) == len(study.get_trials())


def test_a_worker_that_loses_the_race_to_create_the_database_tries_again(tmp_path, monkeypatch):
    """Two workers started together both insert the database's version row: the loser's IntegrityError (or a
    "database is locked") is retried; one that never clears ends in the clear --storage error."""
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    from effnetv2_mini.study import nas_driver as nas

    real, calls = optuna.storages.RDBStorage, []

    def racing(url, **kwargs):
        calls.append(url)
        if len(calls) == 1:
            raise IntegrityError("INSERT INTO version_info", {}, Exception("UNIQUE constraint failed"))
        return real(url, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    monkeypatch.setattr(nas.time, "sleep", lambda seconds: None)
    assert isinstance(nas._storage(tmp_path, None), real) and len(calls) == 2

    def locked(url, **kwargs):
        calls.append(url)
        raise OperationalError("CREATE TABLE studies", {}, Exception("database is locked"))

    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", locked)
    with pytest.raises(ValueError, match=r"--storage 'sqlite:///.*nas.db' cannot be opened \(OperationalError"):
        nas._storage(tmp_path, None)
    assert len(calls) == nas.STORAGE_ATTEMPTS == 5


def test_two_workers_share_one_sqlite_study(tmp_path):
    command = [sys.executable, "-m", "effnetv2_mini.cli", "nas", "--out", str(tmp_path), "--trials", "4",
               "--epochs", "1", "--image-size", "32", "--batch-size", "32", "--train-samples", "128", "--device", "cpu"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Both start at once on a fresh database: they race to create it, as workers started together on many
    # machines would.
    first = subprocess.Popen(command + ["--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    second = subprocess.Popen(command + ["--seed", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    outputs = [p.communicate(timeout=300) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    study = load_study(tmp_path)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) >= 4
    assert len({t.user_attrs["arch_key"] for t in complete}) == len(complete)
    assert not study.get_trials(states=(TrialState.FAIL,)) and not study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_of_a_worker_killed_with_kill_9_is_failed_and_its_candidate_queued_again(tmp_path):
    """kill -9 of a worker left its trial RUNNING (Optuna's heartbeat waits a grace period), and a worker restarted
    at once skipped the candidate; now the trial is failed and its parameters queued for the next trial."""
    import socket

    from effnetv2_mini.study.nas_driver import _open_study, retry_trials_of_dead_workers

    study = _open_study(tmp_path, None, "nas", None)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trial = study.ask()
    trial.suggest_categorical("stage1_op", ["fused", "mbconv"])
    trial.set_user_attr("worker", f"{socket.gethostname()}:{int(dead.stdout)}")  # that process has exited
    alive = study.ask()
    alive.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # this one is running: left alone
    assert retry_trials_of_dead_workers(study) == [trial.number]
    states = {t.number: t.state for t in study.get_trials()}
    assert states[trial.number] == TrialState.FAIL and states[alive.number] == TrialState.RUNNING
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 1
    again = study.ask()  # the next trial draws the dead one's candidate
    assert again.suggest_categorical("stage1_op", ["fused", "mbconv"]) == trial.params["stage1_op"]
