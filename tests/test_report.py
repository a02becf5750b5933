"""The report: every section from the notebooks' results, smoke runs labelled, paper numbers only where comparable;
and the choice ``make reproduce`` makes between the quick and the smoke plan."""

import json
from pathlib import Path

import pytest

from reproduce.choose import accelerator, choose_plan, imagenette_source
from reproduce.plans import load_plan
from reproduce.report import SECTIONS, build_report, write_report


def conditions(device="cpu"):
    return {"device": device, "device_name": "test machine", "torch": "2.x", "finished_at": "2026-01-01T00:00:00"}


def training_results(dataset):
    return {"dataset_used": dataset, "fallback_notice": "", "model": "efficientnetv2_s", "processes": 8,
            "best_top1": 83.1, "wall_time": 3600.0, "run_dir": "/nonexistent",
            "config": {"epochs": 350, "image_size": 300, "eval_size": 384, "preset": "paper"}}


def payloads(profile: str, dataset: str) -> dict:
    """Minimal results of notebooks 01-06 in the schema each notebook writes."""
    stage = [{"stage": 0, "operator": "Conv3x3", "stride": 2, "channels": 24, "layers": 1, "resolution": 192}]
    schedule = {"stages": [{"index": i, "start_epoch": 2 * i, "epochs": 2, "image_size": 32 + 8 * i, "dropout": 0.1,
                            "randaug_magnitude": 5.0 * i, "mixup_alpha": 0.0} for i in range(2)],
                "eval_size": 48, "source": "paper Table 6", "variant": "progressive"}
    curve = [{"epoch": 1, "wall_time": 1.0, "top1": 20.0}, {"epoch": 2, "wall_time": 2.0, "top1": 30.0}]
    results = {
        "01_architecture": {"models": [{"name": "efficientnetv2_s", "family": "v2", "eval_size": 384, "params": 21458488,
                                        "macs": 8_365_617_152, "paper_params": 21458488, "paper_macs_b": 8.4}],
                            "stage_table": {"model": "efficientnetv2_s", "rows": stage}},
        "02_training": training_results(dataset),
        "03_training_efficiency": {
            "table3_setting": {"image_size": 64, "batch_size": 4}, "memory_budget_bytes": 2**27,
            "table3": [{"fused_stages": s, "params_m": 1.0, "paper_params_m": 1.0, "macs_b": 1.0, "paper_macs_b": 1.0,
                        "train_images_per_sec": ips, "paper_tpu": tpu, "paper_v100": v100}
                       for s, ips, tpu, v100 in ((0, 10.0, 262, 155), (3, 12.0, 362, 216))],
            "table2": [{"model": "demo_v1_tiny", "image_size": 64, "max_batch": 7, "train_images_per_sec": 3.0}]},
        "04_nas": {"space": "cpu", "epochs": 1, "image_size": 32, "dataset_used": dataset, "fallback_notice": "",
                   "pareto_trials": [0], "ranked": [{"trial": 0, "blocks": "r1_k3_s1_e1_i16_o16_c1", "accuracy": 0.5,
                                                     "normalized_step_time": 1.0, "params": 1000, "reward": 0.4}]},
        "05_progressive_learning": {
            "dataset_used": dataset, "fallback_notice": "", "model": "efficientnetv2_s", "schedule": schedule,
            "grid": {"sizes": [32, 48], "magnitudes": [0, 5], "epochs": 1, "top1": [[10.0, 11.0], [12.0, 13.0]]},
            "comparison": [{"variant": v, "seed": 0, "final_top1": 30.0, "train_seconds": t, "time_vs_fixed": t / 10}
                           for v, t in (("fixed", 10.0), ("progressive", 6.0))],
            "curves": {"fixed-s0": curve, "progressive-s0": curve}},
        "06_transfer": {"recipe": "paper", "steps": 10, "fallback_notices": [], "curves": {"m/d/pretrained": [
            {"epoch": 1, "val_top1": 50.0}]},
            "rows": [{"model": "efficientnetv2_s", "dataset": "cifar10", "start": "pretrained", "epochs": 1, "top1": 98.0,
                      "paper_top1": 98.7}]},
    }
    return {name: {"notebook": name, "profile": profile, "schema": 1, "conditions": conditions(), "results": r}
            for name, r in results.items()}


def write_run(directory: Path, profile: str, dataset: str) -> Path:
    directory.mkdir(parents=True)
    for name, payload in payloads(profile, dataset).items():
        (directory / f"{name}.json").write_text(json.dumps(payload))
    return directory


TITLES = ["At a glance", "Notebooks", "Tables 4 and 7", "Table 7 accuracy", "Tables 2 and 3", "NAS", "Table 5:", "Table 6:",
          "speed-up", "Table 8"]


def test_smoke_report_has_every_section_labelled_not_a_reproduction(tmp_path):
    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    path = write_report(load_plan("smoke"), run)
    text = path.read_text()
    titles = [line for line in text.splitlines() if line.startswith("## ")]
    for title in TITLES:
        assert any(title in line for line in titles), title
    assert "Not a reproduction: profile(s) smoke" in text
    glance = text.split("## At a glance")[1].split("## Notebooks")[0]
    rows = [line for line in glance.splitlines() if line.startswith("| ") and "paper table" not in line]
    trained = [row for row in rows if row.startswith(("| Table 7: top-1", "| Table 5", "| Progressive", "| Table 8"))]
    assert len(trained) == 4 and all("**no** (smoke profile" in row for row in trained)
    assert "| efficientnetv2_s | synthetic | 350 | 300 | 384 | 83.10 | - |" in text  # no paper number beside it
    html = (run / "report.html").read_text()
    assert html.count("<h2>") == len(titles) and "data:image/png;base64," in html
    for figure in ("architecture_params_flops", "table3_throughput", "nas_candidates", "table5_grid",
                   "progressive_accuracy_time", "transfer_curves"):
        assert (run / "figures" / f"{figure}.png").stat().st_size > 1000 and f"figures/{figure}.png" in text


def test_full_imagenet_run_sets_the_paper_beside_ours(tmp_path):
    run = write_run(tmp_path / "full", "full", "imagenet")
    text = build_report("full", "", list(SECTIONS), run, draw=False).markdown()
    assert "Not a reproduction" not in text
    assert "| efficientnetv2_s | imagenet | 350 | 300 | 384 | 83.10 | 83.90 |" in text
    assert "| Table 7: top-1 | 83.9% (efficientnetv2_s, ImageNet) | 83.1% (efficientnetv2_s) |" in text
    assert "| yes |" in text and "yes (the paper's settings)" in text


def test_missing_results_are_listed_not_invented(tmp_path):
    (tmp_path / "run").mkdir()
    text = build_report("smoke", "", list(SECTIONS), tmp_path / "run", draw=False).markdown()
    assert text.count("not run)") == len(SECTIONS) and "83.10" not in text


def test_unreadable_results_become_a_clear_section_not_a_crash(tmp_path):
    run = write_run(tmp_path / "smoke", "smoke", "synthetic")
    payload = json.loads((run / "04_nas.json").read_text())
    del payload["results"]["ranked"]
    (run / "04_nas.json").write_text(json.dumps(payload))
    (run / "06_transfer.json").write_text("{not json")
    text = build_report("smoke", "", list(SECTIONS), run, draw=False).markdown()
    assert "## 04_nas: results that cannot be read" in text and "KeyError: 'ranked'" in text
    assert "## 06_transfer: results that cannot be read" in text and "--only 06_transfer --force" in text
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
