"""Progressive learning (Algorithm 1): presets, stage boundaries, variants, and the loop really switching stages."""

import json

import pytest

from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.launch import launch
from effnetv2_mini.engine.loop import fit
from effnetv2_mini.paper.progressive import (
    PAPER_TABLE_6,
    ProgressiveSchedule,
    linear_schedule,
    schedule_preset,
    variant,
)


@pytest.mark.parametrize("model", sorted(PAPER_TABLE_6))
def test_paper_presets_reproduce_table_6(model):
    schedule = schedule_preset(model, "paper", epochs=350, stages=4)
    first, last = schedule.stages[0], schedule.stages[-1]
    table = PAPER_TABLE_6[model]
    assert (first.image_size, last.image_size) == table["image_size"]
    assert (first.randaug_magnitude, last.randaug_magnitude) == table["randaug_magnitude"]
    assert (first.mixup_alpha, last.mixup_alpha) == table["mixup_alpha"]
    assert (first.dropout, last.dropout) == table["dropout"]
    assert [s.epochs for s in schedule.stages] == [87, 88, 87, 88] and schedule.total_epochs == 350
    sizes = [s.image_size for s in schedule.stages]
    assert sizes == sorted(sizes) and all(size % 8 == 0 for size in sizes[1:-1])
    assert schedule.source == "paper Table 6"


def test_table_6_is_the_one_the_report_compares_with():
    """paper/progressive.py trains with Table 6; the report reads it from study/paper_numbers.yaml: the same numbers."""
    from effnetv2_mini.study.reference import paper_table

    recorded = paper_table("table6")["ranges"]
    assert PAPER_TABLE_6 == {model: {key: tuple(bounds) for key, bounds in ranges.items()} for model, ranges in recorded.items()}


def test_paper_values_for_v2_s_in_detail():
    schedule = schedule_preset("efficientnetv2_s", "paper")
    assert [s.image_size for s in schedule.stages] == [128, 184, 240, 300]  # 185.3 and 242.7 rounded to 8
    assert [s.randaug_magnitude for s in schedule.stages] == pytest.approx([5, 25 / 3, 35 / 3, 15], abs=1e-6)
    assert [s.dropout for s in schedule.stages] == pytest.approx([0.1, 0.1 + 0.2 / 3, 0.1 + 0.4 / 3, 0.3], abs=1e-6)
    assert schedule.eval_size == 384


def test_code_presets_use_the_official_formula():
    s = schedule_preset("efficientnetv2_s", "code")
    assert [st.image_size for st in s.stages] == [171, 214, 257, 300]
    assert [st.randaug_magnitude for st in s.stages] == pytest.approx([5, 20 / 3, 25 / 3, 10], abs=1e-6)
    assert {st.dropout for st in s.stages} == {0.2} and {st.mixup_alpha for st in s.stages} == {0.0}
    m = schedule_preset("efficientnetv2_m", "code")
    assert [st.image_size for st in m.stages] == [192, 256, 320, 384] and m.stages[-1].mixup_alpha == 0.2
    assert schedule_preset("efficientnetv2_l", "code").stages[-1].mixup_alpha == 0.5
    assert s.source == "official code"


def test_odd_epoch_counts_split_evenly_and_stage_at_follows():
    schedule = schedule_preset("efficientnetv2_s", "paper", epochs=10, stages=4)
    assert [(s.start_epoch, s.epochs) for s in schedule.stages] == [(0, 2), (2, 3), (5, 2), (7, 3)]
    sizes = [schedule.stage_at(e).image_size for e in range(10)]
    assert sizes == [128, 128, 184, 184, 184, 240, 240, 300, 300, 300]
    assert [schedule.stage_at(e).stage for e in range(10)] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    with pytest.raises(ValueError, match="outside"):
        schedule.stage_at(10)
    with pytest.raises(ValueError, match="at least one epoch per stage"):
        schedule_preset("efficientnetv2_s", epochs=3, stages=4)


def test_variants():
    base = schedule_preset("efficientnetv2_m", "paper", epochs=12)
    fixed = variant(base, "fixed")
    assert {s.image_size for s in fixed.stages} == {380} and {s.dropout for s in fixed.stages} == {0.4}
    fixed_reg = variant(base, "progressive_fixed_reg")
    assert [s.image_size for s in fixed_reg.stages] == [s.image_size for s in base.stages]
    assert {s.randaug_magnitude for s in fixed_reg.stages} == {20} and {s.mixup_alpha for s in fixed_reg.stages} == {0.2}
    rand = variant(base, "random", every=2, seed=1)
    epochs = [rand.stage_at(e) for e in range(12)]
    assert all(epochs[i] == epochs[i + 1] for i in range(0, 12, 2))  # resampled every 2 epochs
    assert len({e.image_size for e in epochs}) > 1
    assert [e.image_size for e in epochs] == [e.image_size for e in variant(base, "random", every=2, seed=1).epoch_plans()]
    with pytest.raises(ValueError, match="variants"):
        variant(base, "shuffle")


def test_sizes_never_exceed_eval_size_and_bad_models_are_refused():
    with pytest.raises(ValueError, match="exceeds the eval size"):
        linear_schedule(4, 2, (32, 80), eval_size=64)
    assert max(s.image_size for s in schedule_preset("efficientnetv2_l", eval_size=480).stages) <= 480
    with pytest.raises(ValueError, match="no progressive preset for efficientnetv2_b0"):
        schedule_preset("efficientnetv2_b0")
    with pytest.raises(ValueError, match="'paper' or 'code'"):
        schedule_preset("efficientnetv2_s", source="tf")


def test_schedule_round_trips_through_a_dict():
    schedule = variant(schedule_preset("efficientnetv2_s", epochs=9), "random", every=3, seed=4)
    assert ProgressiveSchedule.from_dict(json.loads(json.dumps(schedule.to_dict()))) == schedule


def tiny(out_dir, **overrides):
    values = dict(model="demo_v2_tiny", dataset="synthetic", batch_size=32, recipe="simple", workers=0, quiet=True,
                  synthetic={"num_samples": 256}, out_dir=str(out_dir), seed=5)
    values.update(overrides)
    return TrainConfig(**values)


SCHEDULE = linear_schedule(6, 3, (24, 40), 40, dropout=(0.05, 0.25), randaug_magnitude=(0, 10),
                           mixup_alpha=(0.0, 0.4), round_to=8)


@pytest.mark.parametrize("batch_augment", [False, True], ids=["per-image", "batched"])
def test_dropout_size_and_augmentation_really_change_between_stages(tmp_path, batch_augment):
    from effnetv2_mini.data.loaders import SeededBatches
    from effnetv2_mini.paper.augment import RandAugment, RandomResizedCropRelative

    observed = []

    def inspect(epoch, model, loader, mixer):
        assert isinstance(loader.dataset, SeededBatches) == batch_augment
        if batch_augment:  # the batch's transform: its crop and RandAugment (magnitude 0: none)
            crop, magnitude = loader.dataset.transform.crop, loader.dataset.transform.randaugment.magnitude
            randaug = [magnitude] if magnitude else []
        else:
            transform = loader.dataset.base.transform
            crop = next(t for t in transform.transforms if isinstance(t, RandomResizedCropRelative))
            randaug = [t.magnitude for t in transform.transforms if isinstance(t, RandAugment)]
        images, _, _ = next(iter(loader))  # what the network is fed this epoch
        observed.append((epoch, model.dropout.p, loader.dataset.base.resolution, crop.size, randaug,
                         None if mixer is None else (mixer.mixup_alpha, mixer.cutmix_alpha), tuple(images.shape[-2:])))

    fit(tiny(tmp_path, batch_augment=batch_augment), SCHEDULE, on_epoch_start=inspect)
    assert observed == [
        (0, 0.05, 24, 24, [], None, (24, 24)),
        (1, 0.05, 24, 24, [], None, (24, 24)),
        (2, 0.15, 32, 32, [5.0], (0.2, 0.0), (32, 32)),
        (3, 0.15, 32, 32, [5.0], (0.2, 0.0), (32, 32)),
        (4, 0.25, 40, 40, [10.0], (0.4, 0.0), (40, 40)),
        (5, 0.25, 40, 40, [10.0], (0.4, 0.0), (40, 40)),
    ]
    recorded = json.loads((tmp_path / "config.json").read_text())["progressive"]
    assert recorded["variant"] == "progressive" and len(recorded["stages"]) == 3
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == [0, 0, 1, 1, 2, 2] and {r["image_size"] for r in rows} == {24, 32, 40}


def test_the_code_recipe_schedules_cutmix_with_mixup_on_half_the_batch(tmp_path):
    """Official main.py: cutmix_list = linspace(0, cutmix_alpha, stages) with cutmix_alpha = mixup_alpha
    (effnetv2_configs.py), and datasets.py mixes half of each batch with each when both are on."""
    alphas = []
    schedule = linear_schedule(3, 3, (24, 32), 32, mixup_alpha=(0.0, 0.4), round_to=4)
    fit(tiny(tmp_path, recipe="code", epochs=3), schedule,
        on_epoch_start=lambda epoch, model, loader, mixer: alphas.append(None if mixer is None else
                                                                         (mixer.mixup_alpha, mixer.cutmix_alpha)))
    assert alphas == [None, (0.2, 0.2), (0.4, 0.4)]


def test_resume_in_the_middle_of_a_stage_continues_the_schedule(tmp_path):
    fit(tiny(tmp_path / "straight"), SCHEDULE)
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(tmp_path / "resumed"), SCHEDULE, stop_after_steps=20)  # 8 steps/epoch: epoch 3, stage 2
    fit(tiny(tmp_path / "resumed"), SCHEDULE)

    def rows(path):
        timing = {"images_per_sec", "epoch_seconds", "wall_time", "peak_memory_mb"}
        return [{k: v for k, v in json.loads(line).items() if k not in timing}
                for line in (path / "metrics.jsonl").read_text().splitlines()]

    assert rows(tmp_path / "resumed") == rows(tmp_path / "straight")


def test_progressive_run_under_torchrun_with_two_processes(tmp_path, monkeypatch):
    """The one torchrun launcher: the spec (config and schedule) written, read back by the engine under torchrun."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    schedule = linear_schedule(2, 2, (24, 32), 32)
    summary = launch(tiny(tmp_path, device="cpu"), nproc=2, schedule=schedule)
    assert summary["epochs"] == 2
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["world_size"] == 2 and config["progressive"]["stages"][1]["image_size"] == 32
    spec = json.loads((tmp_path / "launch.json").read_text())
    assert set(spec) == {"config", "schedule"} and spec["schedule"]["stages"][0]["image_size"] == 24
