"""The reproduction report: ``runs/<plan>/report.md`` and ``report.html`` from the notebooks' results JSON.

Wherever the paper has a number, the report sets three things side by side: the paper's number, ours, and the
conditions it was measured under (data set, epochs, image size, device, wall-clock), so that a smoke number is
never mistaken for a reproduction. A section per notebook, each made of a few kinds of blocks that render to
Markdown and to HTML alike:

    ("p", text)  ("quote", text)  ("list", [text, ...])  ("table", rows, columns, headers)  ("figure", name, caption)

Figures are drawn from the results with :mod:`effnetv2_mini.plots`; the HTML page embeds them, the Markdown
links ``figures/<name>.png``. ``notebooks/07_report.ipynb`` shows the same report from a run directory.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from effnetv2_mini.notebook import format_value
from effnetv2_mini.reference import paper_table, paper_value

from .runner import load_status

REPRODUCTION_PROFILES = {"full"}  # only these use the paper's data and settings


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    glance: dict | None = None  # one row of the "at a glance" table: table, paper, ours, conditions, verdict


@dataclass
class Report:
    plan: str
    description: str
    notices: list[str]
    sections: list[Section]
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG

    def markdown(self) -> str:
        lines = [f"# Reproduction report: plan `{self.plan}`", "", self.description, ""]
        lines += [f"> **{n}**\n" for n in self.notices]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                lines += _markdown_block(block) + [""]
        return "\n".join(lines)

    def html(self) -> str:
        """A self-contained page (figures embedded)."""
        return _PAGE.format(title=_e(f"effnetv2-mini report: {self.plan}"), style=_STYLE, body=self._html_body())

    def _repr_html_(self) -> str:  # Jupyter shows a Report as this
        return f'<div class="effnetv2-report"><style>{_STYLE}</style>{self._html_body()}</div>'

    def _html_body(self) -> str:
        body = [f"<h1>Reproduction report: plan <code>{_e(self.plan)}</code></h1>", f"<p>{_inline(self.description)}</p>"]
        body += [f'<p class="notice">{_inline(n)}</p>' for n in self.notices]
        for section in self.sections:
            body.append(f"<h2>{_inline(section.title)}</h2>")
            body += [self._html_block(block) for block in section.blocks]
        return "\n".join(body)

    def save(self, out_dir: Path) -> Path:
        """Write ``report.md``, ``report.html`` and ``figures/*.png`` into ``out_dir``; return the Markdown's path."""
        out_dir = Path(out_dir)
        (out_dir / "figures").mkdir(parents=True, exist_ok=True)
        for name, png in self.figures.items():
            (out_dir / "figures" / f"{name}.png").write_bytes(png)
        (out_dir / "report.html").write_text(self.html())
        path = out_dir / "report.md"
        path.write_text(self.markdown())
        return path

    def _html_block(self, block) -> str:
        kind = block[0]
        if kind == "p":
            return f"<p>{_inline(block[1])}</p>"
        if kind == "quote":
            return f'<blockquote class="notice">{_inline(block[1])}</blockquote>'
        if kind == "list":
            return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block[1]) + "</ul>"
        if kind == "table":
            _, rows, columns, headers = block
            head = "".join(f"<th>{_e(h)}</th>" for h in headers)
            cells = "".join("<tr>" + "".join(f"<td>{_inline(format_value(row.get(c)))}</td>" for c in columns) + "</tr>"
                            for row in rows)
            return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"
        if kind == "figure":
            _, name, caption = block
            if name not in self.figures:
                return ""
            data = base64.b64encode(self.figures[name]).decode()
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(caption)}">'
                    f"<figcaption>{_inline(caption)}</figcaption></figure>")
        raise ValueError(f"unknown report block {kind!r}")


def _markdown_block(block) -> list[str]:
    kind = block[0]
    if kind == "p":
        return [block[1]]
    if kind == "quote":
        return ["> " + block[1]]
    if kind == "list":
        return [f"- {item}" for item in block[1]]
    if kind == "table":
        _, rows, columns, headers = block
        def escape(text):
            return text.replace("|", "\\|")
        return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                + ["| " + " | ".join(escape(format_value(row.get(c))) for c in columns) + " |" for row in rows])
    if kind == "figure":
        return [f"![{block[2]}](figures/{block[1]}.png)", "", f"*{block[2]}*"]
    raise ValueError(f"unknown report block {kind!r}")


def _e(text) -> str:
    return html.escape(str(text))


def _inline(text) -> str:
    """Escape for HTML, then render the Markdown this report uses inline: **bold** and `code`."""
    text = _e(text)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


_STYLE = """
.effnetv2-report, body { font-family: system-ui, sans-serif; line-height: 1.45; }
body { max-width: 1100px; margin: 2em auto; padding: 0 1em; }
.effnetv2-report table, body table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
.effnetv2-report th, .effnetv2-report td, body th, body td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
.effnetv2-report th, body th { background: #f3f3f3; }
.effnetv2-report td:first-child, body td:first-child { text-align: left; }
.notice { background: #fff4e5; border-left: 4px solid #f28e2b; padding: 0.5em 0.8em; margin: 0.8em 0; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head><body>
{body}
</body></html>
"""


# ---- what makes a number comparable -------------------------------------------------------------------------

def _conditions(payload: dict) -> str:
    c = payload.get("conditions", {})
    return (f"profile **{payload.get('profile')}**, device {_device(payload)}, torch {c.get('torch')}, "
            f"finished {c.get('finished_at')}")


def _is_reproduction(payload: dict) -> bool:
    """A trained number counts as a reproduction only from a ``full`` run on the paper's data set, ImageNet."""
    used = payload.get("results", {}).get("dataset_used", "imagenet")
    return payload.get("profile") in REPRODUCTION_PROFILES and used == "imagenet"


def _verdict(payload: dict) -> str:
    if _is_reproduction(payload):
        return "yes"
    profile = payload.get("profile")
    used = payload.get("results", {}).get("dataset_used")
    why = f"{profile} profile" + (f", {used} data" if used else "")
    return f"**no** ({why}: not the paper's setting)"


def _fallback(notice: str | None) -> list:
    """A notebook's loud notice that it fell back to the synthetic set, as a quote."""
    if not notice:
        return []
    return [("quote", "**Fallback:** " + notice.replace("!", "").strip().replace("\n", " "))]


def _fused_label(stages: int) -> str:
    return "no fused stages" if not stages else f"fused stages 1-{stages}"


def _device(payload: dict) -> str:
    c = payload.get("conditions", {})
    return f"{c.get('device')} ({c.get('device_name')})"


# ---- one section per notebook --------------------------------------------------------------------------------

def _architecture_section(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.plots import draw_architecture, plot_params_vs_flops

    r = payload["results"]
    rows = [{"model": m["name"], "eval_size": m["eval_size"], "params": m["params"], "paper_params": m["paper_params"],
             "macs_b": m["macs"] / 1e9, "paper_macs_b": m["paper_macs_b"],
             "paper_top1": paper_value(m["name"], "top1")[0]} for m in r["models"]]
    figures["architecture_params_flops"] = lambda: plot_params_vs_flops(r["models"]).figure
    stage = r["stage_table"]
    figures["architecture_stages"] = lambda: draw_architecture(stage["rows"], title=stage["model"]).figure
    s = next((row for row in rows if row["model"] == "efficientnetv2_s"), rows[0])
    glance = {"table": "Tables 4, 7: params, FLOPs", "paper": f"{s['model']}: {format_value(s['paper_params'])} params, "
              f"{format_value(s['paper_macs_b'])} GMACs", "ours": f"{format_value(s['params'])} params, {s['macs_b']:.2f} GMACs",
              "conditions": "counted from the model (no data, any device)", "verdict": "yes (counts do not depend on data)"}
    stage_rows = stage["rows"]
    return [Section("Architectures: parameters and FLOPs (paper Tables 4 and 7)", [
        ("p", f"Conditions: {_conditions(payload)}. Parameters and FLOPs do not depend on data or training, so they are "
              "comparable to the paper in every profile. FLOPs are multiply-adds from `torch.utils.flop_counter` at each "
              "model's evaluation size. The top-1 column is the paper's ImageNet accuracy, for reference: ours comes "
              "from training (next section)."),
        ("table", rows, ["model", "eval_size", "params", "paper_params", "macs_b", "paper_macs_b", "paper_top1"],
         ["model", "eval px", "params (ours)", "params (paper)", "GMACs (ours)", "GMACs (paper)", "top-1 (paper)"]),
        ("p", f"Table 4, {stage['model']} stage by stage (from our block strings, which are the paper's table):"),
        ("table", stage_rows, ["stage", "operator", "stride", "channels", "layers"],
         ["stage", "operator", "stride", "channels", "layers"]),
        ("figure", "architecture_stages", f"{stage['model']}: one box per stage (height: resolution, width: channels)"),
        ("figure", "architecture_params_flops", "parameters against FLOPs, EfficientNet V1 and V2 (measured)"),
    ], glance)]


def _training_section(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.plots import plot_training_curves

    r = payload["results"]
    config = r["config"]
    paper_top1, source = paper_value(r["model"], "top1")
    comparable = _is_reproduction(payload)
    rows = [{"model": r["model"], "dataset": r["dataset_used"], "epochs": config["epochs"],
             "train_px": config["image_size"], "eval_px": config["eval_size"], "top1_ours": r["best_top1"],
             "top1_paper": paper_top1 if comparable else None, "wall_s": r["wall_time"]}]
    metrics_path = Path(r.get("run_dir", "")) / "metrics.jsonl"
    blocks = _fallback(r.get("fallback_notice")) + [
        ("p", f"Conditions: {_conditions(payload)}; {r['processes']} process(es), preset `{config['preset']}`."),
        ("table", rows, ["model", "dataset", "epochs", "train_px", "eval_px", "top1_ours", "top1_paper", "wall_s"],
         ["model", "data set", "epochs", "train px", "eval px", "top-1 (ours)", "top-1 (paper)", "wall-clock s"]),
        ("p", f"{r['model']} is not a paper model: the paper has no number for it." if paper_top1 is None else
              f"Paper: {paper_top1}% ({source}), ImageNet, 350 epochs with progressive learning." if comparable else
              f"The paper's number ({paper_top1}% on ImageNet, {source}) is not shown beside this run: different data "
              "or schedule, so the two are not comparable."),
    ]
    if metrics_path.exists():
        history = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
        figures["training_curves"] = lambda: plot_training_curves(history, title=f"{r['model']} on {r['dataset_used']}")
        blocks.append(("figure", "training_curves", "loss, top-1 and training images/s per epoch"))
    reference = f"{paper_top1}% ({r['model']}, ImageNet)" if paper_top1 else \
        f"{paper_value('efficientnetv2_s', 'top1')[0]}% (efficientnetv2_s, ImageNet); {r['model']} has no paper number"
    glance = {"table": "Table 7: top-1", "paper": reference,
              "ours": f"{r['best_top1']:.1f}% ({r['model']})",
              "conditions": f"{r['dataset_used']}, {config['epochs']} epochs, {config['image_size']}/{config['eval_size']} px, "
                            f"{_device(payload)}, {r['wall_time']:.0f} s", "verdict": _verdict(payload)}
    return [Section("Training with the paper's recipe (paper section 6, Table 7 accuracy)", blocks, glance)]


def _efficiency_section(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.plots import plot_relative_throughput

    r = payload["results"]
    setting = r["table3_setting"]
    table3 = r["table3"]
    fastest = max(table3, key=lambda row: row["train_images_per_sec"])["fused_stages"]
    paper_tpu = max(table3, key=lambda row: row["paper_tpu"])["fused_stages"]
    paper_v100 = max(table3, key=lambda row: row["paper_v100"])["fused_stages"]
    figures["table3_throughput"] = lambda: plot_relative_throughput(table3).figure
    on_accelerator = payload.get("conditions", {}).get("device", "cpu") != "cpu"
    glance = {"table": "Table 3: fused stages", "paper": f"fastest: {_fused_label(paper_tpu)} (TPU), "
              f"{_fused_label(paper_v100)} (V100)", "ours": f"fastest: {_fused_label(fastest)}",
              "conditions": f"{_device(payload)}, {setting['image_size']} px, batch {setting['batch_size']}",
              "verdict": "yes (throughput ordering)" if on_accelerator and payload.get("profile") != "smoke"
              else f"**no** ({payload.get('profile')} profile on {_device(payload)}: the paper timed TPUs and GPUs)"}
    return [Section("Training efficiency (paper section 3.1, Tables 2 and 3)", [
        ("p", f"Conditions: {_conditions(payload)}. Table 3 throughput at {setting['image_size']} px, batch "
              f"{setting['batch_size']} (the paper: TPUv3 and V100 at its training sizes); parameters and FLOPs at 380 px."),
        ("table", table3, ["fused_stages", "params_m", "paper_params_m", "macs_b", "paper_macs_b", "train_images_per_sec",
                           "paper_tpu", "paper_v100"],
         ["fused stages", "params M", "paper", "GMACs", "paper", "ours img/s", "paper TPU", "paper V100"]),
        ("p", f"Fastest here: {_fused_label(fastest)}; the paper's TPU: {_fused_label(paper_tpu)}, its V100: "
              f"{_fused_label(paper_v100)}."),
        ("figure", "table3_throughput", "Table 3: training throughput relative to no fused stages, ours and the paper's"),
        ("p", f"Table 2 (largest batch that fits a {r['memory_budget_bytes'] / 2**20:.0f} MB budget; the paper has no "
              "numbers here, only the observation that large images force small batches):"),
        ("table", r["table2"], ["model", "image_size", "max_batch", "train_images_per_sec"],
         ["model", "image px", "largest batch", "train img/s"]),
    ], glance)]


def _nas_section(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.nas import pareto_front
    from effnetv2_mini.plots import plot_nas_candidates

    r = payload["results"]
    ranked = r["ranked"]
    rows = [dict(row, rank=i + 1) for i, row in enumerate(ranked[:5])]
    if ranked:
        figures["nas_candidates"] = lambda: plot_nas_candidates(ranked, pareto_front(ranked)).figure
    best = ranked[0] if ranked else None
    glance = {"table": "Section 3.2: NAS", "paper": "V2-S (fused early stages, small expansions, 3x3 kernels)",
              "ours": f"best reward {best['reward']:.3f}" if best else "no completed candidate",
              "conditions": f"{len(ranked)} candidates, {r['epochs']} epochs, {r['image_size']} px, {r['dataset_used']}, "
                            f"{_device(payload)}", "verdict": "n/a (the paper publishes no search numbers)"}
    return [Section("Training-aware NAS (paper section 3.2)", _fallback(r.get("fallback_notice")) + [
        ("p", f"Conditions: {_conditions(payload)}; space `{r['space']}`, {len(ranked)} completed candidates, "
              f"{r['epochs']} proxy epochs at {r['image_size']} px on {r['dataset_used']}. The paper sampled up to 1000 "
              "models (about 10 epochs each) and found EfficientNetV2 (fused early stages, small expansions, 3x3 "
              "kernels); its search results are not published as numbers, so there is no column to set beside ours."),
        ("table", rows, ["rank", "trial", "reward", "accuracy", "normalized_step_time", "params"],
         ["rank", "trial", "reward", "accuracy A", "step time S", "params P"]),
        ("list", [f"trial {row['trial']}: `{row['blocks']}`" for row in rows[:3]]),
        ("figure", "nas_candidates", "candidates: accuracy against step time (size: parameters, colour: reward)"),
    ], glance)]


def _progressive_sections(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.plots import plot_accuracy_vs_time, plot_regularization_grid

    r = payload["results"]
    grid, paper5, claims = r["grid"], paper_table("table5"), paper_table("progressive_claims")
    conditions = _fallback(r.get("fallback_notice")) + [
        ("p", f"Conditions: {_conditions(payload)}; model {r['model']} on {r['dataset_used']}.")]

    def grid_rows(sizes, magnitudes, value):
        return [{"magnitude": m, **{f"{s}px": value(i, j) for j, s in enumerate(sizes)}} for i, m in enumerate(magnitudes)]

    def best_magnitudes(sizes, magnitudes, value):
        return ", ".join(f"{s}px: {max(magnitudes, key=lambda m: value(magnitudes.index(m), j))}" for j, s in enumerate(sizes))

    def ours_value(i, j):
        return grid["top1"][j][i]

    def paper_value5(i, j):
        return paper5["top1"][i][j]

    figures["table5_grid"] = lambda: plot_regularization_grid(grid, paper5)
    paper_columns = ["magnitude"] + [f"{s}px" for s in paper5["sizes"]]
    ours_columns = ["magnitude"] + [f"{s}px" for s in grid["sizes"]]
    table5 = Section("Table 5: the best regularization grows with the image size (paper section 4.1)", conditions + [
        ("p", f"Top-1 by RandAugment magnitude (rows) and image size (columns), grid runs of {grid['epochs']} epochs. "
              f"Paper ({paper5['source']}):"),
        ("table", grid_rows(paper5["sizes"], paper5["magnitudes"], paper_value5), paper_columns,
         [c.replace("px", " px") for c in paper_columns]),
        ("p", "Ours:"),
        ("table", grid_rows(grid["sizes"], grid["magnitudes"], ours_value), ours_columns,
         [c.replace("px", " px") for c in ours_columns]),
        ("figure", "table5_grid", "Table 5 as heatmaps, the best magnitude of each size highlighted: ours and the paper's"),
    ], {"table": "Table 5: size x RandAugment",
        "paper": "best magnitude " + best_magnitudes(paper5["sizes"], paper5["magnitudes"], paper_value5),
        "ours": "best magnitude " + best_magnitudes(grid["sizes"], grid["magnitudes"], ours_value),
        "conditions": f"{r['model']}, {r['dataset_used']}, {grid['epochs']} epochs per cell, {_device(payload)}",
        "verdict": _verdict(payload)})

    schedule = r["schedule"]
    stages = schedule["stages"]
    paper6 = paper_table("table6")
    reference = r["model"] if r["model"] in paper6["ranges"] else "efficientnetv2_s"  # a demo model: show V2-S's
    ranges = paper6["ranges"][reference]
    keys = ["image_size", "randaug_magnitude", "mixup_alpha", "dropout"]
    table6_rows = [{"setting": k, "paper": f"{ranges[k][0]} -> {ranges[k][1]}",
                    "ours": f"{stages[0][k]} -> {stages[-1][k]}"} for k in keys]
    same = reference == r["model"] and schedule.get("source") == "paper Table 6"
    table6 = Section("Table 6: progressive learning settings (paper section 4.2)", [
        ("p", f"Conditions: {_conditions(payload)}; model {r['model']}, schedule from {schedule.get('source')}, "
              f"{len(stages)} stages, evaluation at {schedule['eval_size']} px. Paper: {paper6['source']}"
              + ("." if reference == r["model"] else f"; the paper has settings for {', '.join(paper6['ranges'])} only, "
                 f"so {reference}'s are shown beside this {r['model']} run.")),
        ("table", table6_rows, ["setting", "paper", "ours"],
         ["setting (min -> max)", f"paper ({reference})", f"ours ({r['model']})"]),
        ("table", stages, ["index", "epochs", "image_size", "dropout", "randaug_magnitude", "mixup_alpha"],
         ["stage", "epochs", "image px", "dropout", "RandAugment", "mixup alpha"]),
    ], {"table": "Table 6: schedule", "paper": f"{reference}: " + "; ".join(f"{k} {ranges[k][0]}->{ranges[k][1]}" for k in keys),
        "ours": "; ".join(f"{k} {stages[0][k]}->{stages[-1][k]}" for k in keys),
        "conditions": f"{r['model']}, {len(stages)} stages", "verdict": "yes (the paper's settings)" if same else
        "**no** (a scaled-down schedule of the same shape)"})

    comparison = r["comparison"]
    curves = r.get("curves", {})
    runs = [dict(row, curve=curves[f"{row['variant']}-s{row['seed']}"]) for row in comparison
            if f"{row['variant']}-s{row['seed']}" in curves]
    if runs:
        figures["progressive_accuracy_time"] = lambda: plot_accuracy_vs_time(runs).figure
    fixed = [row for row in comparison if row["variant"] == "fixed"]
    progressive = [row for row in comparison if row["variant"] == "progressive"]
    b7_hours, b7_top1 = claims["efficientnet_b7_hours"], claims["efficientnet_b7_top1"]
    b7_speedup = b7_hours["fixed"] / b7_hours["progressive"]
    ours = "-"
    if fixed and progressive:
        speedup = sum(row["train_seconds"] for row in fixed) / sum(row["train_seconds"] for row in progressive)
        ours = (f"{speedup:.2f}x faster, top-1 {_mean(fixed, 'final_top1'):.1f}% -> {_mean(progressive, 'final_top1'):.1f}%")
    epochs = sum(stage["epochs"] for stage in stages)
    speed = Section("Progressive learning: speed-up at equal epochs (paper section 5, ablations)", conditions + [
        ("p", f"Every variant trains {epochs} epochs; `time / fixed` is its training wall-clock over the fixed-size run's. "
              f"Paper ({claims['source']}): EfficientNet-B7 from {b7_hours['fixed']} h to {b7_hours['progressive']} h "
              f"({b7_speedup:.1f}x), top-1 {b7_top1['fixed']}% -> {b7_top1['progressive']}%; "
              + ", ".join(f"{name} {x}x" for name, x in claims["speedups"].items())
              + f"; adaptive regularization +{claims['adaptive_regularization_gain_points']} points over fixed "
              "regularization under the same schedule."),
        ("table", comparison, ["variant", "seed", "final_top1", "train_seconds", "time_vs_fixed"],
         ["variant", "seed", "top-1 (ours)", "train s", "time / fixed"]),
        ("figure", "progressive_accuracy_time", "top-1 against training wall-clock, one curve per variant"),
    ], {"table": "Progressive speed-up", "paper": f"B7 {b7_speedup:.1f}x faster, "
        f"{b7_top1['fixed']}% -> {b7_top1['progressive']}%", "ours": ours,
        "conditions": f"{r['model']}, {r['dataset_used']}, {epochs} epochs, {_device(payload)}",
        "verdict": _verdict(payload)})
    return [table5, table6, speed]


def _mean(rows: list[dict], key: str) -> float:
    return sum(row[key] for row in rows) / len(rows)


def _transfer_section(payload: dict, figures: dict) -> list[Section]:
    from effnetv2_mini.plots import plot_finetune_curves

    r = payload["results"]
    if r.get("curves"):
        figures["transfer_curves"] = lambda: plot_finetune_curves(r["curves"]).figure
    blocks = [block for notice in r.get("fallback_notices", []) for block in _fallback(notice)]
    blocks += [
        ("p", f"Conditions: {_conditions(payload)}; recipe `{r['recipe']}`, {r['steps']} fine-tuning steps, the same "
              "budget from scratch. The paper's column is shown only where the model and data set are the paper's."),
        ("table", r["rows"], ["model", "dataset", "start", "epochs", "top1", "paper_top1"],
         ["model", "data set", "start", "epochs", "top-1 (ours)", "top-1 (paper Table 8)"]),
        ("figure", "transfer_curves", "validation top-1 per epoch: fine-tuned from pretrained weights and from scratch"),
    ]
    pretrained = [row for row in r["rows"] if row["start"] == "pretrained"]
    paired = [row for row in pretrained if row.get("paper_top1") is not None]
    shown = paired[0] if paired else (pretrained[0] if pretrained else None)
    full = payload.get("profile") in REPRODUCTION_PROFILES and bool(paired)
    v2_s = paper_table("table8")["top1"]["efficientnetv2_s"]
    paper = (f"{shown['model']} on {shown['dataset']}: {shown['paper_top1']}%" if paired
             else f"V2-S: CIFAR-10 {v2_s['cifar10']}%, CIFAR-100 {v2_s['cifar100']}%")
    glance = {"table": "Table 8: transfer", "paper": paper,
              "ours": f"{shown['model']} on {shown['dataset']}: {shown['top1']:.1f}%" if shown else "-",
              "conditions": f"{r['steps']} steps, recipe {r['recipe']}, {_device(payload)}",
              "verdict": "yes" if full else f"**no** ({payload.get('profile')} profile"
              + ("" if paired else ", not the paper's data sets") + ")"}
    return [Section("Transfer learning (paper section 5.3, Table 8)", blocks, glance)]


SECTIONS = {
    "01_architecture": _architecture_section,
    "02_training": _training_section,
    "03_training_efficiency": _efficiency_section,
    "04_nas": _nas_section,
    "05_progressive_learning": _progressive_sections,
    "06_transfer": _transfer_section,
}
# What each section reproduces, for the "not run" line when its notebook has no results yet.
COVERS = {"01_architecture": "Tables 4 and 7 (params, FLOPs)", "02_training": "Table 7 accuracy",
          "03_training_efficiency": "Tables 2 and 3", "04_nas": "section 3.2",
          "05_progressive_learning": "Tables 5 and 6, the progressive speed-up", "06_transfer": "Table 8"}


def build_report(plan_name: str, description: str, notebooks: list[str], out_dir: Path, draw: bool = True) -> Report:
    """Gather ``out_dir/<notebook>.json`` for each notebook into a :class:`Report` (figures drawn if ``draw``)."""
    out_dir = Path(out_dir)
    status = load_status(out_dir)
    sections, glance, profiles, drawers = [], [], set(), {}
    for name in notebooks:
        path = out_dir / f"{name}.json"
        if name not in SECTIONS:
            continue
        if not path.exists():
            state = status.get(name, {}).get("state", "not run")
            glance.append({"table": COVERS[name], "paper": "", "ours": f"({name}: {state})", "conditions": "", "verdict": ""})
            continue
        try:
            payload = json.loads(path.read_text())
            figures: dict = {}
            made = SECTIONS[name](payload, figures)
        except (ValueError, KeyError, TypeError, IndexError) as error:  # an older schema, a hand-edited file
            problem = f"{type(error).__name__}: {error}"
            sections.append(Section(f"{name}: results that cannot be read", [
                ("quote", f"**{path.name} could not be turned into its section** ({problem}). Results written by an "
                          f"older version? Rerun the notebook: `python -m reproduce run PLAN --only {name} --force`.")]))
            glance.append({"table": COVERS[name], "paper": "", "ours": f"({name}: unreadable results)",
                           "conditions": "", "verdict": ""})
            continue
        drawers.update(figures)  # only a section that was made brings its figures
        profiles.add(payload.get("profile"))
        seconds = status.get(name, {}).get("seconds")
        for section in made:
            sections.append(section)
            if section.glance:
                if seconds is not None:
                    section.glance["conditions"] += f"; notebook wall-clock {seconds:.0f} s"
                glance.append(section.glance)

    notices = []
    if profiles - REPRODUCTION_PROFILES:
        used = ", ".join(sorted(p for p in profiles if p))
        notices.append(f"Not a reproduction: profile(s) {used}. Only `full` runs use the paper's data and settings; "
                       "every number that depends on training or on the device is labelled with its conditions and "
                       "is not set beside the paper's as if it were comparable.")
    rows = [{"notebook": n, "state": status.get(n, {}).get("state", "not run"), "seconds": status.get(n, {}).get("seconds")}
            for n in notebooks]
    failures = [f"**{n}** {status[n]['state']}: {status[n].get('error', '').splitlines()[0] if status[n].get('error') else ''} "
                f"(see `{status[n].get('output_notebook')}` and `{status[n].get('log')}`)"
                for n in notebooks if status.get(n, {}).get("state") not in (None, "done")]
    head = [Section("At a glance", [
        ("p", "One line per table: the paper's number, ours, the conditions, and whether ours is a reproduction."),
        ("table", glance, ["table", "paper", "ours", "conditions", "verdict"],
         ["paper table", "paper", "ours", "conditions", "a reproduction?"]),
    ]), Section("Notebooks", [("table", rows, ["notebook", "state", "seconds"], ["notebook", "state", "seconds"])]
                + ([("list", failures)] if failures else []))]
    report = Report(plan_name, description, notices, head + sections)
    if draw:
        report.figures = _draw(drawers)
    for section in report.sections:  # a figure that could not be drawn is left out, not left dangling
        section.blocks = [b for b in section.blocks if b[0] != "figure" or b[1] in report.figures or not draw]
    return report


def _draw(drawers: dict) -> dict[str, bytes]:
    import matplotlib.pyplot as plt

    figures = {}
    for name, draw in drawers.items():
        try:
            figure = draw()
        except Exception as error:  # noqa: BLE001 - a figure is not worth losing the report for
            print(f"report: figure {name} left out ({type(error).__name__}: {error})", file=sys.stderr)
            plt.close("all")
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
        plt.close(figure)
        figures[name] = buffer.getvalue()
    return figures


def write_report(plan, out_dir: Path) -> Path:
    """The plan's report from the results in ``out_dir``, written there (``report.md``, ``report.html``, figures)."""
    return build_report(plan.name, plan.description, [e.name for e in plan.entries], out_dir).save(out_dir)
