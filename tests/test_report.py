"""The report: every section from the notebooks' typed results, verdicts from the recorded conditions (fail closed),
a table of contents; and the choice ``make reproduce`` makes between the quick and the smoke plan."""

import dataclasses
import json
from pathlib import Path

import pytest

from effnetv2_mini.study.experiments import (
    ArchitectureResult,
    Conditions,
    NasResult,
    PerStageResult,
    ProgressiveResult,
    ScalingResult,
    Table2Result,
    Table3Result,
    Table5Result,
    TimeToAccuracyResult,
    TrainingResult,
    TransferResult,
    save_results,
)
from effnetv2_mini.study.experiments.faster import (
    pair_times,
    progressive_effect,
    v2_progressive_time_to_v1_fixed_accuracy,
)
from reproduce.__main__ import main as reproduce_main
from reproduce.choose import accelerator, choose_plan, imagenette_source
from reproduce.plans import load_plan
from reproduce.report import HEADLINE_END, HEADLINE_START, SECTIONS, build_report, write_report


def conditions(profile, dataset, **more):
    values = dict(profile=profile, device="cpu", device_name="test machine", torch="2.x", model="efficientnetv2_s",
                  dataset=dataset, dataset_requested=dataset, num_classes=10, val_images=1000, epochs=350,
                  image_sizes=[128, 184, 240, 300], eval_size=384, schedule="paper Table 6", recipe="paper", seeds=[0],
                  accuracy="final epoch, EMA weights", finished_at="2026-01-01T00:00:00", wall_clock_s=3600.0,
                  global_batch=4096)
    values.update(more)
    return Conditions(**values)


def results(profile: str, dataset: str) -> dict:
    """Typed results of notebooks 01-07, as each writes them."""
    c = conditions(profile, dataset)
    stage = [{"stage": 0, "operator": "Conv3x3", "stride": 2, "channels": 24, "layers": 1, "resolution": 192}]
    model = {"name": "efficientnetv2_s", "family": "v2", "eval_size": 384, "params": 21458488, "macs": 8_365_617_152,
             "reference_params": 21458488, "reference_macs_b": 8.4, "paper_top1": 83.9}
    history = [{"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.1 / e, "val_top1": 30.0 * e, "ema_top1": 31.0 * e,
                "images_per_sec": 100.0} for e in (1, 2)]
    t3 = [{"fused_stages": s, "params_m": 1.0, "paper_params_m": 1.0, "macs_b": 1.0, "paper_macs_b": 1.0,
           "train_images_per_sec": ips, "images_per_sec_range": [ips - 1, ips + 1], "paper_tpu": tpu, "paper_v100": v100}
          for s, ips, tpu, v100 in ((0, 10.0, 262, 155), (3, 12.0, 362, 216), (5, 11.0, 327, 223), (7, 5.0, 254, 206))]
    per_stage = [{"stage": i, "resolution": 64 // i, "channels": "8->8", "mbconv": 10.0, "fused": 10.0 * (2.0 if i <= 3 else 0.5),
                  "fused_vs_mbconv": 2.0 if i <= 3 else 0.5} for i in range(1, 8)]
    schedule = {"stages": [{"index": i, "start_epoch": 2 * i, "epochs": 2, "image_size": 32 + 8 * i, "dropout": 0.1,
                            "randaug_magnitude": 5.0 * i, "mixup_alpha": 0.0} for i in range(2)],
                "eval_size": 48, "source": "paper Table 6" if profile == "full" else f"{profile} profile, Table 6 shape",
                "variant": "progressive"}
    curve = [{"epoch": 1, "wall_time": 1.0, "top1": 20.0}, {"epoch": 2, "wall_time": 2.0, "top1": 30.0}]
    ranked = [{"trial": 0, "blocks": "r1_k3_s1_e1_i16_o16_c1", "accuracy": 50.0, "normalized_step_time": 1.0, "params": 1000,
               "reward": 40.0}]
    return {
        "01_architecture": {"architecture": ArchitectureResult(c, [model], {"model": "efficientnetv2_s", "rows": stage}, [])},
        "02_training": {"training": TrainingResult(c, 83.1, 96.0, history, {"recipe": "paper"}, schedule, "/nonexistent")},
        "03_training_efficiency": {
            "table2": Table2Result(c, 2**27, [{"model": "b6", "image_size": s, "max_batch": b, "train_images_per_sec": 3.0}
                                              for s, b in ((380, 16), (512, 8))]),
            "table3": Table3Result(c, 64, 4, t3), "per_stage": PerStageResult(c, per_stage), "scaling": ScalingResult(c, [])},
        "04_nas": {"nas": NasResult(c, "cpu", 1, ranked, [0])},
        "05_progressive_learning": {
            "table5": Table5Result(c, [32, 48], [0.0, 5.0], 1, [[10.0, 11.0], [12.0, 13.0]], [[[10.0, 11.0], [12.0, 13.0]]]),
            "progressive": ProgressiveResult(c, schedule, [
                {"variant": v, "seed": 0, "final_top1": 30.0, "train_seconds": t, "time_vs_fixed": t / 10}
                for v, t in (("fixed", 10.0), ("progressive", 6.0))], {"fixed-s0": curve, "progressive-s0": curve}, [])},
        "06_transfer": {"transfer": TransferResult(dataclasses.replace(c, recipe="finetune paper", dataset="cifar10"),
                                                   "paper", 10, {}, [{"model": "efficientnetv2_s", "dataset": "cifar10",
                                                                      "start": "pretrained", "epochs": 1, "top1": 98.0,
                                                                      "paper_top1": 98.7, "train_images": 50000}],
                                                   {"efficientnetv2_s/cifar10/pretrained": history})},
        "07_faster_training": {"time_to_accuracy": faster(dataclasses.replace(c, model="efficientnetv2_s,efficientnet_b4"))},
    }


def faster(c: Conditions) -> TimeToAccuracyResult:
    """Four runs of one seed: V2-S and B4, each fixed-size and progressive; V2-S progressive reaches B4 fixed's final
    40% at its second epoch, 4 s of B4's 10 s."""
    finals = {("efficientnetv2_s", "fixed"): (30.0, 45.0, 6.0), ("efficientnetv2_s", "progressive"): (40.0, 46.0, 4.0),
              ("efficientnet_b4", "fixed"): (25.0, 40.0, 10.0), ("efficientnet_b4", "progressive"): (30.0, 39.0, 7.0)}
    rows = [{"model": m, "variant": v, "seed": 0, "order": i, "final_top1": b, "train_seconds": t, "weights": "ema",
             "run_dir": "/nonexistent", "curve": [{"epoch": 1, "wall_time": t / 2, "top1": a, "image_size": 128,
                                                    "images_per_sec": 100.0},
                                                   {"epoch": 2, "wall_time": t, "top1": b, "image_size": 300,
                                                    "images_per_sec": 50.0}]}
            for i, ((m, v), (a, b, t)) in enumerate(finals.items())]
    v2, v1 = "efficientnetv2_s", "efficientnet_b4"
    return TimeToAccuracyResult(c, [v2, v1], v2, v1, {}, rows, progressive_effect(rows), pair_times(rows, v2, v1),
                                v2_progressive_time_to_v1_fixed_accuracy(rows, v2, v1),
                                [100.0, 101.0], {m: CHOSEN for m in (v2, v1)})


CHOSEN = {"chosen": {"randaug_magnitude": 0.0, "dropout": 0.05, "mixup_alpha": 0.0},
          "how": "the best of 2 points", "grid": []}


def write_run(directory: Path, profile: str, dataset: str) -> Path:
    for name, typed in results(profile, dataset).items():
        save_results(directory, name, typed, profile)
    return directory


TITLES = ["At a glance", "Notebooks", "Tables 4 and 7", "Table 7 accuracy", "Tables 2 and 3", "NAS", "Table 5:", "Table 6:",
          "speed-up", "Table 8", "time to accuracy"]


def glance_rows(text: str) -> list[str]:
    glance = text.split("## At a glance")[1].split("## Notebooks")[0]
    return [line for line in glance.splitlines() if line.startswith("| ") and "claim |" not in line]


def test_smoke_report_has_every_section_a_toc_and_claims_nothing_comparable(tmp_path):
    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    text = write_report(load_plan("smoke"), run).read_text()
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    for title in TITLES:
        assert any(title in line for line in titles), title
    assert "Not a reproduction: profile(s) smoke" in text and "Contents: [At a glance](#at-a-glance)" in text
    rows = glance_rows(text)
    assert len(rows) >= 10
    assert all("| **yes** |" not in row for row in rows if not row.startswith("| Tables 4, 7"))
    assert all(any(v in row for v in ("**agrees**", "**contradicts**", "**no signal**", "**n/a**")) for row in rows)
    html = (run / "report.html").read_text()
    assert '<nav class="toc">' in html and html.count("<h2 id=") == len(titles) and "data:image/png;base64," in html
    assert '<td class="text">' in html  # prose cells are left-aligned
    for figure in ("architecture_params_flops", "table3_throughput", "nas_candidates", "table5_grid",
                   "progressive_accuracy_time", "transfer_curves", "training_curves", "per_stage_speed",
                   "time_to_accuracy"):
        assert (run / "figures" / f"{figure}.png").stat().st_size > 1000 and f"figures/{figure}.png" in text


def test_a_full_imagenet_training_with_the_paper_settings_is_comparable(tmp_path):
    run = write_run(tmp_path / "full", "full", "imagenet")
    text = build_report("full", "", list(SECTIONS), run, draw=False).markdown()
    table7 = next(row for row in glance_rows(text) if row.startswith("| Table 7:"))
    assert "| **yes** |" in table7 and "**agrees**" in table7 and "83.9%" in table7 and "83.1%" in table7
    assert "Not a reproduction" not in text


def test_a_full_run_missing_a_condition_is_not_comparable(tmp_path):
    run = write_run(tmp_path / "full", "full", "imagenet")
    payload = json.loads((run / "02_training.json").read_text())
    payload["results"]["training"]["conditions"]["schedule"] = None  # a fixed-size run is not Table 7's setting
    (run / "02_training.json").write_text(json.dumps(payload))
    table7 = next(row for row in glance_rows(build_report("full", "", list(SECTIONS), run, draw=False).markdown())
                  if row.startswith("| Table 7:"))
    assert "no (schedule not recorded)" in table7


@pytest.mark.parametrize("field, value, reason", [
    ("global_batch", 512, "no (global_batch 512, the paper's: 4096)"),  # 8 GPUs x 64: not the paper's 4096
    ("global_batch", None, "no (global_batch not recorded)"),
    ("crops_from_cache", True, "no (training crops cut from the decoded-image cache"),
])
def test_a_full_run_at_another_global_batch_or_with_cached_crops_is_not_comparable(tmp_path, field, value, reason):
    run = write_run(tmp_path / "full", "full", "imagenet")
    payload = json.loads((run / "02_training.json").read_text())
    payload["results"]["training"]["conditions"][field] = value
    (run / "02_training.json").write_text(json.dumps(payload))
    table7 = next(row for row in glance_rows(build_report("full", "", list(SECTIONS), run, draw=False).markdown())
                  if row.startswith("| Table 7:"))
    assert reason in table7


def test_a_rehearsal_says_so_and_its_verdicts_are_no_signal(tmp_path):
    run = tmp_path / "quick-rehearsal"
    for name, typed in results("quick", "imagenette").items():
        rehearsed = {k: dataclasses.replace(v, conditions=dataclasses.replace(v.conditions, rehearsal=True))
                     for k, v in typed.items()}
        save_results(run, name, rehearsed, "quick", rehearsal=True)
    text = build_report("quick", "", list(SECTIONS), run, draw=False).markdown()
    assert "REHEARSAL" in text
    for row in glance_rows(text):
        if row.startswith("| Tables 4, 7"):
            continue
        assert "| **yes** |" not in row and ("**no signal**" in row or "**n/a**" in row), row


def test_missing_results_are_listed_not_invented(tmp_path):
    (tmp_path / "run").mkdir()
    text = build_report("smoke", "", list(SECTIONS), tmp_path / "run", draw=False).markdown()
    assert text.count("not run)") == len(SECTIONS) and "83.1" not in text


def test_unreadable_results_become_a_clear_section_not_a_crash(tmp_path):
    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    payload = json.loads((run / "04_nas.json").read_text())
    del payload["results"]["nas"]["ranked"][0]["accuracy"]
    (run / "04_nas.json").write_text(json.dumps(payload))
    (run / "06_transfer.json").write_text("{not json")
    old = json.loads((run / "01_architecture.json").read_text())
    (run / "01_architecture.json").write_text(json.dumps(dict(old, schema=1)))
    text = build_report("smoke", "", list(SECTIONS), run, draw=False).markdown()
    assert "## 04_nas: results that cannot be read" in text and "KeyError: 'accuracy'" in text
    assert "## 06_transfer: results that cannot be read" in text and "--only 06_transfer --force" in text
    assert "## 01_architecture: results that cannot be read" in text and "older version" in text
    assert "## Table 5:" in text  # the other sections are still there


@pytest.mark.parametrize("imagenette, device, plan", [
    ("present", "cuda (H100)", "quick"), ("downloadable", "cuda (H100)", "quick"),
    (None, "cuda (H100)", "smoke"), ("present", None, "smoke"), (None, None, "smoke"),
])
def test_make_reproduce_picks_quick_only_with_data_and_a_gpu(imagenette, device, plan):
    chosen, why = choose_plan("data", imagenette=imagenette, device=device, probe=False)
    assert chosen == plan
    if plan == "smoke":
        assert "NOTICE: running the SMOKE plan" in why and "PLAN=quick" in why


def test_probing_this_machine_gives_a_plan_and_a_reason(tmp_path):
    chosen, why = choose_plan(tmp_path)  # nothing under tmp_path: quick only if Imagenette downloads here and a GPU is
    expected = "quick" if imagenette_source(tmp_path) and accelerator() else "smoke"
    assert chosen == expected and why


def test_the_report_names_its_glance_rows_and_a_comparison_names_its_curves(tmp_path):
    from effnetv2_mini.study import plots

    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    report = build_report("smoke", "", list(SECTIONS), run, draw=False)
    first_table = next(block for block in report.sections[0].blocks if block[0] == "table")
    assert report.sections[0].title == "At a glance" and report.glance and report.glance is first_table[1]
    comparison = results("smoke", "synthetic")["05_progressive_learning"]["progressive"]
    assert plots.comparison_curve(comparison, "progressive", 0) is comparison.curves["progressive-s0"]
    ax = plots.plot_progressive_comparison(comparison)
    assert len(ax.lines) == len(comparison.rows) + 1  # one curve per run, and chance


def test_the_glance_table_puts_claim_paper_ours_and_verdict_first_and_folds_the_rest(tmp_path):
    """The complaint: the verdict behind a horizontal scroll, after the wide conditions column."""
    run = write_run(tmp_path / "laptop", "laptop", "imagenette")
    report = build_report("laptop", "", list(SECTIONS), run, draw=False)
    header = next(line for line in report.markdown().splitlines() if line.startswith("| claim |"))
    assert header.split(" | ")[:4] == ["| claim", "paper's number", "ours", "verdict"]
    rows = glance_rows(report.markdown())
    long = [row for row in rows if "350 epochs" in row]  # a training's conditions: folded
    assert long and all("<details><summary>" in row.rsplit(" | ", 2)[-1] for row in long)
    html = report.html()
    glance = html.split('id="at-a-glance"')[1].split("</table>")[0]
    assert glance.index(">verdict<") < glance.index(">conditions<")
    assert "<details><summary>" in glance
    assert "Table 6: progressive learning settings (paper section 5.1)" in report.markdown()


def test_the_report_finds_the_results_of_every_notebook_that_writes_them(tmp_path):
    """Derived from the notebooks themselves: each one that saves results (all but the report, which
    builds it) has a section, and a run directory holding their results has every one found
    (notebook 08 once globbed 01-06)."""
    import nbformat

    from reproduce.report import results_found

    writers = []
    for path in sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        code = "\n".join(c.source for c in cells if c.cell_type == "code")
        if "save_results(" in code and "build_report(" not in code:
            writers.append(path.stem)
    plans = {e.name for p in ("smoke", "laptop", "quick", "full") for e in load_plan(p).entries}
    assert len(writers) >= 7 and set(writers) <= plans
    assert set(writers) <= set(SECTIONS)
    for name in writers:
        (tmp_path / f"{name}.json").write_text("{}")
    assert results_found(tmp_path) == [name for name in SECTIONS if name in writers]


def test_the_report_notebook_records_the_runs_device(tmp_path):
    from reproduce.report import run_device

    run = write_run(tmp_path / "quick", "quick", "imagenette")
    assert run_device(run, list(SECTIONS)) == "cpu"
    for name in ("02_training", "04_nas", "05_progressive_learning", "07_faster_training"):
        payload = json.loads((run / f"{name}.json").read_text())
        for result in payload["results"].values():
            result["conditions"]["device"] = "cuda:0"
        (run / f"{name}.json").write_text(json.dumps(payload))
    # 4 notebooks of 7 (the other 3, with 6 results, on the cpu)
    assert run_device(run, list(SECTIONS)) == "cuda:0"
    assert run_device(tmp_path / "nothing", list(SECTIONS)) == "cpu"


def test_the_report_leads_with_the_headline_and_ends_with_how_a_verdict_is_decided(tmp_path):
    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    text = write_report(load_plan("smoke"), run).read_text()
    glance = text.split("## At a glance")[1].split("## Notebooks")[0]
    # faster(): V2-S + Algorithm 1 reaches B4 fixed's 40% at 2 s of B4's 10 s (0.20x); V2-S fixed
    # at 6 s (0.60x); V2-S progressive reaches V2-S fixed's 45% at 4 s of 6 s (0.67x)
    headline = glance.split("**Headline.**")[1].split("\n")[0]
    assert "0.20x" in headline and "architecture alone: 0.60x" in headline
    assert "efficientnetv2_s: 0.67x" in headline
    last = text.split("## ")[-1]
    assert last.startswith("How a verdict is decided") and "drift" in last
    assert "0.05" in last and "5x" in last
    assert "| architecture_alone: efficientnetv2_s fixed vs efficientnet_b4 fixed |" in text
    assert "the best of 2 points" in text  # the baselines' regularization and how it was chosen
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{HEADLINE_START}\nold text\n{HEADLINE_END}\nrest\n")
    command = ["report", "smoke", "--runs-dir", str(tmp_path), "--headline", str(readme)]
    assert reproduce_main(command) == 0
    new = readme.read_text()
    assert "old text" not in new and "0.20x" in new and new.startswith(f"intro\n{HEADLINE_START}\n")
    assert new.endswith(f"{HEADLINE_END}\nrest\n")
    readme.write_text("no markers\n")
    assert reproduce_main(command) == 2
    assert readme.read_text() == "no markers\n"
