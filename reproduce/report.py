"""The reproduction report: ``runs/<plan>/report.md`` from the notebooks' results JSON files.

Wherever the paper has a number, the report sets three things side by side: the paper's number, ours, and
the conditions it was measured under, so that a smoke number is never mistaken for a reproduction.
"""

from __future__ import annotations

import json
from pathlib import Path

from effnetv2_mini.notebook import format_table

from .plans import Plan
from .runner import load_status


def _conditions(payload: dict) -> str:
    c = payload.get("conditions", {})
    return (f"profile **{payload.get('profile')}**, device {c.get('device')} ({c.get('device_name')}), "
            f"torch {c.get('torch')}, finished {c.get('finished_at')}")


def _fallback(notice: str | None) -> list[str]:
    """A training notebook's loud notice that it fell back to the synthetic set, as a report quote."""
    if not notice:
        return []
    return ["> **Fallback:** " + notice.replace("!", "").strip().replace("\n", " "), ""]


def _architecture_section(payload: dict) -> list[str]:
    rows = []
    for m in payload["results"]["models"]:
        rows.append({
            "model": m["name"], "eval_size": m["eval_size"], "params": m["params"], "paper_params": m["paper_params"],
            "macs_b": m["macs"] / 1e9, "paper_macs_b": m["paper_macs_b"],
        })
    table = format_table(rows, ["model", "eval_size", "params", "paper_params", "macs_b", "paper_macs_b"],
                         ["model", "eval px", "params (ours)", "params (paper)", "GMACs (ours)", "GMACs (paper)"])
    return [
        "## Architectures: parameters and FLOPs (paper Table 4 / Table 7)",
        "",
        f"Conditions: {_conditions(payload)}. Parameters and FLOPs do not depend on data or training, so these "
        "are comparable to the paper in every profile. FLOPs are multiply-adds from `torch.utils.flop_counter`.",
        "",
        "```",
        table,
        "```",
        "",
    ]


def _training_section(payload: dict) -> list[str]:
    from effnetv2_mini.reference import paper_value

    r = payload["results"]
    config = r["config"]
    paper_top1, source = paper_value(r["model"], "top1")
    comparable = r["dataset_used"] == "imagenet" and payload.get("profile") == "full"
    rows = [{"model": r["model"], "dataset": r["dataset_used"], "epochs": config["epochs"],
             "train_px": config["image_size"], "eval_px": config["eval_size"], "top1_ours": r["best_top1"],
             "top1_paper": paper_top1 if comparable else None}]
    lines = ["## Training with the paper's recipe (paper section 6)", ""]
    lines += _fallback(r.get("fallback_notice"))
    lines += [
        f"Conditions: {_conditions(payload)}; {r['processes']} process(es), preset `{config['preset']}`, "
        f"{r['wall_time']:.0f} s of training.",
        "",
        "```",
        format_table(rows, ["model", "dataset", "epochs", "train_px", "eval_px", "top1_ours", "top1_paper"],
                     ["model", "data set", "epochs", "train px", "eval px", "top-1 (ours)", "top-1 (paper)"]),
        "```",
        "",
        (f"{r['model']} is not a paper model: the paper has no number for it." if paper_top1 is None else
         f"Paper: {paper_top1}% ({source}), ImageNet, 350 epochs with progressive learning." if comparable else
         f"The paper's number ({paper_top1}% on ImageNet, {source}) is not shown beside this run: different data "
         "or schedule, so the two are not comparable."),
        "",
    ]
    return lines


def _progressive_section(payload: dict) -> list[str]:
    from effnetv2_mini.reference import paper_table

    r = payload["results"]
    grid, paper5 = r["grid"], paper_table("table5")
    claims = paper_table("progressive_claims")

    def grid_rows(sizes, magnitudes, value):
        return [{"magnitude": m, **{f"{s}px": value(i, j) for j, s in enumerate(sizes)}} for i, m in enumerate(magnitudes)]

    ours = grid_rows(grid["sizes"], grid["magnitudes"], lambda i, j: grid["top1"][j][i])
    paper = grid_rows(paper5["sizes"], paper5["magnitudes"], lambda i, j: paper5["top1"][i][j])
    comparison = r["comparison"]
    lines = ["## Progressive learning (paper section 4, Tables 5 and 6)", ""]
    lines += _fallback(r.get("fallback_notice"))
    lines += [
        f"Conditions: {_conditions(payload)}; model {r['model']} on {r['dataset_used']}, grid runs of "
        f"{grid['epochs']} epochs, comparison runs of {sum(st['epochs'] for st in r['schedule']['stages'])} epochs.",
        "",
        "Table 5, top-1 by RandAugment magnitude (rows) and image size (columns). Paper (ImageNet, "
        f"{paper5['source']}):",
        "", "```", format_table(paper, ["magnitude"] + [f"{s}px" for s in paper5["sizes"]]), "```", "",
        "Ours:", "", "```", format_table(ours, ["magnitude"] + [f"{s}px" for s in grid["sizes"]]), "```", "",
        "Same epochs, four ways (paper: progressive learning took EfficientNet-B7 from "
        f"{claims['efficientnet_b7_hours']['fixed']} h to {claims['efficientnet_b7_hours']['progressive']} h, "
        f"{claims['efficientnet_b7_top1']['fixed']}% -> {claims['efficientnet_b7_top1']['progressive']}%; adaptive "
        f"regularization +{claims['adaptive_regularization_gain_points']} points; {claims['source']}):",
        "", "```",
        format_table(comparison, ["variant", "seed", "final_top1", "train_seconds", "time_vs_fixed"],
                     ["variant", "seed", "top-1 (ours)", "train s", "time / fixed"]),
        "```", "",
    ]
    return lines


def _fused_label(stages: int) -> str:
    return "no fused stages" if not stages else f"fused stages 1-{stages}"


def _efficiency_section(payload: dict) -> list[str]:
    r = payload["results"]
    setting = r["table3_setting"]
    fastest = max(r["table3"], key=lambda row: row["train_images_per_sec"])["fused_stages"]
    lines = [
        "## Training efficiency (paper section 3.1, Tables 2 and 3)", "",
        f"Conditions: {_conditions(payload)}. Table 3 throughput at {setting['image_size']} px, batch "
        f"{setting['batch_size']} (the paper: TPUv3 and V100 at its training sizes); parameters and FLOPs at 380 px.",
        "", "```",
        format_table(r["table3"], ["fused_stages", "params_m", "paper_params_m", "macs_b", "paper_macs_b",
                                   "train_images_per_sec", "paper_tpu", "paper_v100"],
                     ["fused stages", "params M", "paper", "GMACs", "paper", "ours img/s", "paper TPU", "paper V100"]),
        "```", "",
        f"Fastest here: {_fused_label(fastest)}; the paper's TPU: "
        f"{_fused_label(max(r['table3'], key=lambda row: row['paper_tpu'])['fused_stages'])}, its V100: "
        f"{_fused_label(max(r['table3'], key=lambda row: row['paper_v100'])['fused_stages'])}.", "",
        f"Table 2 (largest batch in a {r['memory_budget_bytes'] / 2**20:.0f} MB budget):", "", "```",
        format_table(r["table2"], ["model", "image_size", "max_batch", "train_images_per_sec"]), "```", "",
    ]
    return lines


def _transfer_section(payload: dict) -> list[str]:
    r = payload["results"]
    lines = ["## Transfer learning (paper section 5.3, Table 8)", ""]
    for notice in r.get("fallback_notices", []):
        lines += _fallback(notice)
    lines += [
        f"Conditions: {_conditions(payload)}; recipe `{r['recipe']}`, {r['steps']} fine-tuning steps, the same budget "
        "from scratch. The paper's column is shown only where the model and data set are the paper's.", "", "```",
        format_table(r["rows"], ["model", "dataset", "start", "epochs", "top1", "paper_top1"],
                     ["model", "data set", "start", "epochs", "top-1 (ours)", "top-1 (paper Table 8)"]),
        "```", "",
    ]
    return lines


def _nas_section(payload: dict) -> list[str]:
    r = payload["results"]
    rows = [dict(row, rank=i + 1) for i, row in enumerate(r["ranked"][:5])]
    lines = ["## Training-aware NAS (paper section 3.2)", ""]
    lines += _fallback(r.get("fallback_notice"))
    lines += [
        f"Conditions: {_conditions(payload)}; space `{r['space']}`, {len(r['ranked'])} completed candidates, "
        f"{r['epochs']} proxy epochs at {r['image_size']} px on {r['dataset_used']}. The paper sampled up to 1000 "
        "models (about 10 epochs each) and found EfficientNetV2 (fused early stages, small expansions, 3x3 kernels); "
        "its search results are not published as numbers, so there is no column to set beside ours.", "", "```",
        format_table(rows, ["rank", "trial", "reward", "accuracy", "normalized_step_time", "params"]), "```", "",
    ]
    lines += [f"- trial {row['trial']}: `{row['blocks']}`" for row in rows[:3]] + [""]
    return lines


SECTIONS = {"01_architecture": _architecture_section, "02_training": _training_section, "04_nas": _nas_section,
            "06_transfer": _transfer_section,
            "03_training_efficiency": _efficiency_section,
            "05_progressive_learning": _progressive_section}


def write_report(plan: Plan, out_dir: Path) -> Path:
    status = load_status(out_dir)
    lines = [f"# Reproduction report: plan `{plan.name}`", "", plan.description, ""]
    profiles = set()
    body = []
    for entry in plan.entries:
        path = out_dir / f"{entry.name}.json"
        if not path.exists():
            continue
        payload = json.loads(path.read_text())
        profiles.add(payload.get("profile"))
        section = SECTIONS.get(entry.name)
        if section is not None:
            body += section(payload)
        else:
            body += [f"## {entry.name}", "", f"Conditions: {_conditions(payload)}.", "",
                     f"Results: `{path.name}` (no report section yet).", ""]
    if profiles - {"full"}:
        lines += [f"> **Note:** profiles used: {', '.join(sorted(p for p in profiles if p))}. Only `full` runs use "
                  "the paper's data and settings; numbers that depend on training are not a reproduction otherwise.",
                  ""]
    rows = [{"notebook": e.name, "state": status.get(e.name, {}).get("state", "not run"),
             "seconds": status.get(e.name, {}).get("seconds")} for e in plan.entries]
    lines += ["## Notebooks", "", "```", format_table(rows, ["notebook", "state", "seconds"]), "```", ""]
    for e in plan.entries:
        record = status.get(e.name, {})
        if record.get("state") not in (None, "done"):
            lines += [f"- **{e.name}** {record['state']}: see `{record.get('output_notebook')}` and "
                      f"`{record.get('log')}`", ""]
    report = out_dir / "report.md"
    out_dir.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines + body))
    return report
