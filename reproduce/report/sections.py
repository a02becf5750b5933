"""One report section per notebook, built from its typed results (``effnetv2_mini.study.experiments``).

Each builder returns sections whose blocks show the paper's number beside ours and the conditions, and whose
``claims`` (from :mod:`effnetv2_mini.study.claims`) make the at-a-glance rows. Figures are registered in ``figures`` as
functions that draw them, so that a figure that fails is left out rather than the report.
"""

from __future__ import annotations

from effnetv2_mini.study import plots
from effnetv2_mini.study.claims import claims_for
from effnetv2_mini.study.reference import paper_table
from effnetv2_mini.study.verdict import comparisons, headline

from .document import Section

__all__ = ["SECTIONS", "COVERS", "conditions_text"]


def conditions_text(c) -> str:
    """One line of conditions for a section's first paragraph."""
    where = f"device {c.device} ({c.device_name}), torch {c.torch}, profile **{c.profile}**"
    data = f", data set {c.dataset}" if c.dataset else ""
    return f"Conditions: {where}{data}{', **REHEARSAL**' if c.rehearsal else ''}, finished {c.finished_at}."


def _fallback(c) -> list:
    return [("quote", "**Fallback:** " + c.fallback_notice.replace("!", "").strip().replace("\n", " "))] \
        if c.fallback_notice else []


def _verdicts(claims) -> tuple:
    return ("list", [f"**{c.verdict.label}**: {c.statement} ({c.verdict.why}); comparable with the paper: "
                     f"{c.comparable}" for c in claims])


def architecture_sections(results: dict, figures: dict) -> list[Section]:
    r = results["architecture"]
    rows = [{"model": m["name"], "eval_size": m["eval_size"], "params": m["params"], "reference_params": m["reference_params"],
             "macs_b": m["macs"] / 1e9, "reference_macs_b": m["reference_macs_b"], "paper_top1": m["paper_top1"]}
            for m in r.models]
    figures["architecture_params_flops"] = lambda: plots.plot_families(r.models)
    figures["architecture_stages"] = lambda: plots.draw_architecture(r.stage_table["rows"], title=r.stage_table["model"]).figure
    claims = claims_for(r)
    return [Section("Architectures: parameters and FLOPs (paper Tables 4 and 7)", [
        ("p", conditions_text(r.conditions) + " Parameters and FLOPs do not depend on data or training, so they are "
              "comparable in every profile. FLOPs are multiply-adds from `torch.utils.flop_counter` at each model's "
              "evaluation size. The reference columns are torchvision's exact counts and the official README's FLOPs; "
              "the top-1 column is the paper's ImageNet accuracy (ours comes from training, next sections)."),
        ("table", rows, ["model", "eval_size", "params", "reference_params", "macs_b", "reference_macs_b", "paper_top1"],
         ["model", "eval px", "params (ours)", "params (reference)", "GMACs (ours)", "GMACs (reference)", "top-1 (paper)"]),
        ("p", f"Table 4, {r.stage_table['model']} stage by stage (from our block strings):"),
        ("table", r.stage_table["rows"], ["stage", "operator", "stride", "channels", "layers"],
         ["stage", "operator", "stride", "channels", "layers"]),
        ("figure", "architecture_stages", f"{r.stage_table['model']}: one box per stage (height: resolution, width: channels)"),
        ("figure", "architecture_params_flops", "EfficientNet V1 and V2: the papers' ImageNet top-1 (left) and our "
                                                "parameter counts (right) against our FLOPs"),
        _verdicts(claims),
    ], claims)]


def training_sections(results: dict, figures: dict) -> list[Section]:
    r = results["training"]
    c, config = r.conditions, r.config
    row = {"model": c.model, "dataset": c.dataset, "epochs": c.epochs, "sizes": "-".join(map(str, c.image_sizes or [])),
           "eval_px": c.eval_size, "top1": r.top1, "wall_s": c.wall_clock_s}
    figures["training_curves"] = lambda: plots.plot_training_curves(r.history, title=f"{c.model} on {c.dataset}",
                                                                    chance=c.chance)
    claims = claims_for(r)
    schedule = f"progressive schedule from {r.schedule['source']}" if r.schedule else "fixed image size (no progressive schedule)"
    return [Section("Training with the recipe (paper section 5.1, Table 7 accuracy)", _fallback(c) + [
        ("p", conditions_text(c) + f" {c.processes} process(es), recipe `{config.get('recipe')}` "
              f"(optimizer {config.get('optimizer')}, lr schedule {config.get('schedule')}, EMA {config.get('ema_decay')}), "
              f"{schedule}. Top-1 is the {c.accuracy}."),
        ("table", [row], ["model", "dataset", "epochs", "sizes", "eval_px", "top1", "wall_s"],
         ["model", "data set", "epochs", "train px", "eval px", f"top-1 % ({c.accuracy})", "training s"]),
        ("figure", "training_curves", "loss, top-1 (raw and EMA weights; dashed: chance) and training images/s per epoch"),
        _verdicts(claims),
    ], claims)]


def efficiency_sections(results: dict, figures: dict) -> list[Section]:
    t2, t3, stages = results["table2"], results["table3"], results["per_stage"]
    figures["table3_throughput"] = lambda: plots.plot_relative_throughput(t3.rows).figure
    figures["per_stage_speed"] = lambda: plots.plot_per_stage(stages.rows, str(stages.conditions.device)).figure
    claims = claims_for(t2) + claims_for(t3) + claims_for(stages)
    proxy = [("p", f"Proxy training of each variant: {t3.proxy['epochs']} epochs at {t3.proxy['image_size']} px on "
                   f"{t3.proxy['dataset']} (final top-1 in the `proxy top-1` column).")] if t3.proxy else []
    return [Section("Training efficiency (paper section 3.2, Tables 2 and 3)", [
        ("p", conditions_text(t3.conditions) + f" Table 3 throughput at {t3.image_size} px, batch {t3.batch_size}; the "
              "paper timed TPUv3 and V100 at its training sizes. Parameters and FLOPs at 380 px."),
        ("table", t3.rows, ["fused_stages", "params_m", "paper_params_m", "macs_b", "paper_macs_b", "train_images_per_sec",
                            "paper_tpu", "paper_v100"] + (["proxy_top1"] if t3.proxy else []),
         ["fused stages", "params M (ours)", "params M (paper)", "GMACs (ours)", "GMACs (paper)", "img/s (ours)",
          "img/s (paper TPUv3)", "img/s (paper V100)"] + (["proxy top-1 %"] if t3.proxy else [])),
        *proxy,
        ("figure", "table3_throughput", "Table 3: training throughput relative to no fused stages, ours and the paper's"),
        ("p", "Per stage: each EfficientNet-B4 stage's first block as MBConv and as Fused-MBConv, training images/s at the "
              "stage's input resolution."),
        ("table", stages.rows, ["stage", "resolution", "channels", "mbconv", "fused", "fused_vs_mbconv"],
         ["stage", "input px", "channels", "MBConv img/s", "Fused-MBConv img/s", "fused / MBConv"]),
        ("figure", "per_stage_speed", "Fused-MBConv against MBConv, stage by stage (above 1: fusing is faster)"),
        ("p", f"Table 2: the largest training batch that fits {t2.memory_budget_bytes / 2**20:.0f} MB, per image size."),
        ("table", t2.rows, ["model", "image_size", "max_batch", "train_images_per_sec"],
         ["model", "image px", "largest batch", "training img/s"]),
        _verdicts(claims),
    ], claims)]


def nas_sections(results: dict, figures: dict) -> list[Section]:
    r = results["nas"]
    c = r.conditions
    claims = claims_for(r)
    front = [row for row in r.ranked if row["trial"] in r.pareto_trials]
    figures["nas_candidates"] = lambda: plots.plot_nas_candidates(r.ranked, front, chance=c.chance).figure
    ranked = [dict(row, rank=i + 1) for i, row in enumerate(r.ranked)]
    retrained = [("p", f"Proxy ranking against a longer training ({len(r.retrained)} candidates): Spearman "
                       f"{r.proxy_vs_longer_spearman:.2f}." if r.proxy_vs_longer_spearman is not None else ""),
                 ("table", r.retrained, ["trial", "proxy_accuracy", "longer_accuracy"],
                  ["trial", "proxy top-1 %", "longer top-1 %"])] if r.retrained else []
    return [Section("Training-aware NAS (paper section 3.3)", _fallback(c) + [
        ("p", conditions_text(c) + f" Space `{r.space}`, {len(r.ranked)} completed candidates, {c.epochs} proxy epochs at "
              f"{c.image_sizes[0]} px. The paper sampled up to 1000 models and found EfficientNetV2 (fused early stages, "
              f"small expansions, 3x3 kernels); it publishes no search numbers. Accuracy A is top-1 % (final epoch); "
              f"chance is {c.chance:.0f}%." if c.chance else ""),
        ("table", ranked, ["rank", "trial", "reward", "accuracy", "normalized_step_time", "params"],
         ["rank", "trial", "reward", "top-1 % (A)", "step time (S)", "params (P)"]),
        ("figure", "nas_candidates", "candidates: accuracy against step time (size: parameters, colour: reward; dashed: "
                                     "chance)"),
        *retrained,
        _verdicts(claims),
    ], claims)]


def progressive_sections(results: dict, figures: dict) -> list[Section]:
    grid, comparison = results["table5"], results["progressive"]
    paper5 = paper_table("table5")
    figures["table5_grid"] = lambda: plots.plot_regularization_grid(
        {"sizes": grid.sizes, "magnitudes": grid.magnitudes, "top1": grid.top1}, paper5)
    table5_claims = claims_for(grid)
    title = "Table 5: the best regularization grows with the image size (paper section 4.1)"
    table5 = Section(title, _fallback(grid.conditions) + [
        ("p", conditions_text(grid.conditions) + f" Top-1 % by RandAugment magnitude (rows) and image size (columns), "
              f"{grid.epochs} epochs per cell, mean of {len(grid.per_seed)} seed(s). {_capitalized(paper5['source'])}:"),
        _grid_table(paper5["sizes"], paper5["magnitudes"], lambda i, j: paper5["top1"][j][i]),
        ("p", "Ours:"),
        _grid_table(grid.sizes, grid.magnitudes, lambda i, j: grid.top1[i][j]),
        ("figure", "table5_grid", "Table 5 as heatmaps, the best magnitude of each size highlighted: ours and the paper's"),
        _verdicts(table5_claims),
    ], table5_claims)
    return [table5, *_comparison_sections(comparison, figures)]


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _grid_table(sizes, magnitudes, value) -> tuple:
    rows = [{"magnitude": m, **{f"{s}": value(i, j) for i, s in enumerate(sizes)}} for j, m in enumerate(magnitudes)]
    return ("table", rows, ["magnitude"] + [str(s) for s in sizes], ["RandAugment magnitude"] + [f"{s} px" for s in sizes])


def _comparison_sections(r, figures: dict) -> list[Section]:
    c, claims = r.conditions, claims_for(r)
    stages = [dict(s, stage=s["index"] + 1) for s in r.schedule["stages"]]
    figures["progressive_accuracy_time"] = lambda: plots.plot_progressive_comparison(r).figure
    table6 = Section("Table 6: progressive learning settings (paper section 5.1)", [
        ("p", f"Schedule from {r.schedule.get('source')}, {len(stages)} stages, evaluation at {r.schedule['eval_size']} px."),
        ("table", stages, ["stage", "epochs", "image_size", "dropout", "randaug_magnitude", "mixup_alpha"],
         ["stage", "epochs", "image px", "dropout", "RandAugment", "mixup alpha"]),
        _verdicts([claim for claim in claims if claim.key == "table6"]),
    ], [claim for claim in claims if claim.key == "table6"])
    speed_claims = [claim for claim in claims if claim.key != "table6"]
    speed = Section("Progressive learning: speed-up at equal epochs (paper section 6, ablations)", _fallback(c) + [
        ("p", conditions_text(c) + " Every variant trains the same epochs; `time / fixed` is its training wall-clock "
              "(data loading included, evaluation excluded) over the fixed-size run's of the same seed. Top-1 is the "
              f"{c.accuracy}."),
        ("table", r.rows, ["variant", "seed", "final_top1", "train_seconds", "time_vs_fixed"],
         ["variant", "seed", "top-1 % (final)", "training s", "time / fixed"]),
        ("table", r.per_stage, ["variant", "seed", "stage", "image_size", "epochs", "seconds", "images_per_sec"],
         ["variant", "seed", "stage", "image px", "epochs", "training s", "img/s"]),
        ("figure", "progressive_accuracy_time", "top-1 against training wall-clock, one curve per run (dashed: chance)"),
        _verdicts(speed_claims),
    ], speed_claims)
    return [table6, speed]


def transfer_sections(results: dict, figures: dict) -> list[Section]:
    r = results["transfer"]
    c, claims = r.conditions, claims_for(r)
    figures["transfer_curves"] = lambda: plots.plot_finetune_curves(r.curves, chance=c.chance).figure
    quotes = [("quote", "**Fallback:** " + n.replace("!", "").strip().replace("\n", " ")) for n in r.fallback_notices]
    return [Section("Transfer learning (paper section 5.3, Table 8)", quotes + [
        ("p", conditions_text(c) + f" Fine-tuning recipe `{r.finetune_recipe}`, {r.steps} steps, the same steps and images "
              "from scratch. The paper's column is filled only for its own models and data sets."),
        ("table", r.rows, ["model", "dataset", "start", "train_images", "epochs", "top1", "paper_top1"],
         ["model", "data set", "start", "training images", "epochs", "top-1 % (final)", "top-1 % (paper Table 8)"]),
        ("figure", "transfer_curves", "validation top-1 per epoch: from pretrained weights and from scratch (dashed: chance)"),
        _verdicts(claims),
    ], claims)]


COMPARISON_COLUMNS = ["comparison", "ratio", "target_top1", "noise", "verdict", "regime"]
COMPARISON_HEADERS = ["comparison (paper)", "time ratio", "at top-1 %", "noise ±", "verdict",
                      "regime"]


def comparison_rows(found: dict) -> list[dict]:
    """One row per comparison of :func:`effnetv2_mini.study.verdict.comparisons` (Table 12: one
    per network)."""
    items = [(k, found[k]) for k in ("architecture_alone", "table10", "fig1a") if found.get(k)]
    items += [(f"table12 {m}", e) for m, e in found["table12"]["per_model"].items()]
    rows = []
    for key, e in items:
        learning = "still learning" if e["regime"]["still_learning"] else "converging"
        accuracy = e.get("accuracy_verdict")
        verdict = e["verdict"] + (f"; accuracy: {accuracy}" if accuracy else "")
        rows.append({"comparison": f"{key}: {e['faster']} vs {e['baseline']}",
                     "ratio": e.get("ratio"),
                     "target_top1": e.get("target_top1"),
                     "noise": e["noise"]["margin"] if e.get("noise") else None,
                     "verdict": verdict, "regime": learning})
    return rows


def regularization_rows(r) -> list[dict]:
    """Each baseline's regularization and how it was chosen
    (``TimeToAccuracyResult.regularization``)."""
    return [{"model": m, **reg["chosen"], "how": reg["how"]} for m, reg in r.regularization.items()]


def faster_sections(results: dict, figures: dict) -> list[Section]:
    r, speed = results["time_to_accuracy"], results.get("table11")
    c, claims = r.conditions, claims_for(r)
    head = r.v2_progressive_time_to_v1_fixed_accuracy
    figures["time_to_accuracy"] = lambda: plots.plot_time_to_accuracy(r, paper_table("table7"))
    effect = [{"model": m, **p} for m, e in r.per_model.items() for p in e["per_seed"]]
    found = comparisons(r)
    blocks = _fallback(c) + [
        ("p", f"**{headline(r, found)}**"),
        ("table", comparison_rows(found), COMPARISON_COLUMNS, COMPARISON_HEADERS),
        ("table", regularization_rows(r),
         ["model", "randaug_magnitude", "dropout", "mixup_alpha", "how"],
         ["baseline", "RandAugment", "dropout", "mixup", "how chosen"]),
        ("p", conditions_text(c) + " Each network trained at a fixed size and with Algorithm 1, same data, epochs and "
              f"recipe, every epoch evaluated; training seconds exclude evaluation. Top-1 is the {c.accuracy}. The "
              f"headline pair: {head.get('v2_model')} with Algorithm 1 against {head.get('v1_model')} at a fixed size."),
        ("table", r.rows, ["model", "variant", "seed", "final_top1", "train_seconds"],
         ["model", "variant", "seed", "top-1 % (final)", "training s"]),
        ("table", effect, ["model", "seed", "time_ratio", "top1_diff"],
         ["model", "seed", "progressive / fixed time", "progressive - fixed top-1 (points)"]),
        ("table", r.pairs, ["seed", "a", "b", "target_top1", "a_seconds", "b_seconds", "ratio"],
         ["seed", "run a", "run b", "common top-1 %", "a: s to reach it", "b: s to reach it", "b / a"]),
        ("figure", "time_to_accuracy", "top-1 against training minutes, one curve per run (solid: Algorithm 1, dashed: "
                                       "fixed size); right: the paper's Table 7 in training hours"),
    ]
    if speed is not None:
        claims = claims + claims_for(speed)
        blocks.append(("table", speed.rows, ["v2_model", "v1_model", "train_speedup", "eval_speedup", "paper_speedup"],
                       ["V2", "V1", "training V2 / V1", "inference V2 / V1", "paper (V100 inference)"]))
    blocks.append(_verdicts(claims))
    return [Section("Faster training: time to accuracy (paper Figure 1a, Tables 7, 10, 11, 12)", blocks, claims)]


SECTIONS = {"01_architecture": architecture_sections, "02_training": training_sections,
            "03_training_efficiency": efficiency_sections, "04_nas": nas_sections,
            "05_progressive_learning": progressive_sections, "06_transfer": transfer_sections,
            "07_faster_training": faster_sections}
# What each section reproduces, for the "not run" line when its notebook has no results yet.
COVERS = {"01_architecture": "Tables 4 and 7 (params, FLOPs)", "02_training": "Table 7 accuracy",
          "03_training_efficiency": "Tables 2 and 3", "04_nas": "section 3.3",
          "05_progressive_learning": "Tables 5 and 6, the progressive speed-up", "06_transfer": "Table 8",
          "07_faster_training": "Figure 1a, Tables 7, 10, 11 and 12: time to accuracy"}
