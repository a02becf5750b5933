"""The reproduction report: ``runs/<plan>/report.md`` and ``report.html`` from the notebooks' typed results.

Wherever the paper makes a claim, the report sets side by side the paper's number, ours, the conditions ours was
measured under, whether ours is **comparable** (the paper's setting, decided from the recorded conditions, fail
closed) and a **verdict** (agrees / contradicts / no signal, against the noise we know of). The claims and their
judging live in the library (:mod:`effnetv2_mini.study.claims`), so the notebooks conclude with the same verdicts.
``notebooks/08_report.ipynb`` shows the same report from a run directory.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

from effnetv2_mini.study.experiments.results import load_results
from effnetv2_mini.study.verdict import headline, how_decided

from ..status import load_status
from .document import Report, Section
from .sections import COVERS, SECTIONS

__all__ = ["build_report", "write_report", "results_found", "run_device", "Report", "Section",
           "SECTIONS", "headline_of", "write_headline", "HEADLINE_START", "HEADLINE_END"]

FASTER = "07_faster_training"
HEADLINE_START = "<!-- headline: python -m reproduce report PLAN --headline README.md -->"
HEADLINE_END = "<!-- /headline -->"

# What a reader looks for first (the claim, the paper's number, ours, the verdict), then the rest,
# folded (a <details> per cell: "no" of "no (why)", the conditions' first items), so that every
# verdict is on the first screen of a 1280 px window.
GLANCE_COLUMNS = ["claim", "paper", "ours", "verdict", "comparable", "conditions"]
GLANCE_HEADERS = ["claim", "paper's number", "ours", "verdict", "comparable?", "conditions"]
GLANCE_FOLDED = ["comparable", "conditions"]


def build_report(plan_name: str, description: str, notebooks: list[str], out_dir: Path, draw: bool = True) -> Report:
    """Gather ``out_dir/<notebook>.json`` for each notebook into a :class:`Report` (figures drawn if ``draw``)."""
    out_dir = Path(out_dir)
    status = load_status(out_dir)
    sections, glance, drawers = [], [], {}
    for name in (n for n in notebooks if n in SECTIONS):
        made, figures, missing = _notebook_sections(name, out_dir, status)
        if missing:
            glance.append(missing)
        for section in made:
            sections.append(section)
            glance += [_glance_row(claim, status.get(name, {}).get("seconds")) for claim in section.claims]
        drawers.update(figures)
    closing = Section("How a verdict is decided", [("list", how_decided())])
    head = _head(glance, notebooks, status)
    line = headline_of(out_dir, plan_name) if FASTER in notebooks else ""
    if line:  # first: which part of the speed-up is the architecture's, which Algorithm 1's
        head[0].blocks.insert(0, ("p", f"**Headline.** {line}"))
    report = Report(plan_name, description, _notices(out_dir, notebooks),
                    head + sections + [closing], glance=glance)
    if draw:
        report.figures = _draw(drawers)
        for section in report.sections:  # a figure that could not be drawn is left out, not left dangling
            section.blocks = [b for b in section.blocks if b[0] != "figure" or b[1] in report.figures]
    return report


def _notebook_sections(name: str, out_dir: Path, status: dict) -> tuple[list[Section], dict, dict | None]:
    path = out_dir / f"{name}.json"
    if not path.exists():
        state = status.get(name, {}).get("state", "not run")
        return [], {}, _missing_row(name, state)
    figures: dict = {}
    try:
        return SECTIONS[name](load_results(path), figures), figures, None
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as error:  # an older schema, a hand-edited file
        problem = f"{type(error).__name__}: {error}"
        return [Section(f"{name}: results that cannot be read", [
            ("quote", f"**{path.name} could not be turned into its section** ({problem}). Results written by an "
                      f"older version? Rerun the notebook: `python -m reproduce run PLAN --only {name} --force`.")])], {}, \
            _missing_row(name, "unreadable results")


def _missing_row(name: str, state: str) -> dict:
    return {"table": COVERS[name], "statement": "", "claim": COVERS[name],
            "ours": f"({name}: {state})"}


def _glance_row(claim, seconds: float | None) -> dict:
    conditions = claim.conditions + (f"; notebook {seconds:.0f} s" if seconds is not None else "")
    comparable = "**yes**" if claim.comparable.label == "yes" else f"no ({claim.comparable.why})"
    return {"table": claim.table, "statement": claim.statement,
            "claim": f"{claim.table}: {claim.statement}", "paper": claim.paper, "ours": claim.ours,
            "conditions": re.sub(r",(?=\S)", ", ", conditions),  # "v2_s,b4": a place to wrap
            "comparable": comparable, "verdict": f"**{claim.verdict.label}**: {claim.verdict.why}"}


def _head(glance: list[dict], notebooks: list[str], status: dict) -> list[Section]:
    rows = [{"notebook": n, "state": status.get(n, {}).get("state", "not run"), "seconds": status.get(n, {}).get("seconds")}
            for n in notebooks]
    failures = [f"**{n}** {status[n]['state']}: {status[n].get('error', '').splitlines()[0] if status[n].get('error') else ''} "
                f"(see `{status[n].get('output_notebook')}` and `{status[n].get('log')}`)"
                for n in notebooks if status.get(n, {}).get("state") not in (None, "done")]
    return [Section("At a glance", [
        ("p", "One row per claim of the paper: its number, ours, what ours says about the claim at "
              "our scale (**verdict**: agrees, contradicts, or no signal when the effect is within "
              "its noise or at chance level), whether ours was measured in the paper's setting "
              "(**comparable?**, decided from the recorded conditions; anything missing or "
              "different is no) and the conditions (click to unfold)."),
        ("table", glance, GLANCE_COLUMNS, GLANCE_HEADERS, GLANCE_FOLDED),
    ]), Section("Notebooks", [("table", rows, ["notebook", "state", "seconds"], ["notebook", "state", "seconds"])]
                + ([("list", failures)] if failures else []))]


def _notices(out_dir: Path, notebooks: list[str]) -> list[str]:
    import json

    profiles, rehearsal = set(), False
    for name in notebooks:
        path = out_dir / f"{name}.json"
        try:
            payload = json.loads(path.read_text()) if path.exists() else {}
        except ValueError:
            continue
        if isinstance(payload, dict) and name in SECTIONS:
            profiles.add(payload.get("profile"))
            rehearsal |= bool(payload.get("rehearsal"))
    notices = []
    if rehearsal:
        notices.append("REHEARSAL: every notebook ran its plan's code paths for one or two steps per stage at tiny image "
                       "sizes. The numbers show that everything runs, nothing else; no verdict but the parameter and FLOP "
                       "counts can agree or be comparable.")
    if profiles - {"full", "full_transfer", "full_imagenet21k"}:
        notices.append(f"Not a reproduction: profile(s) {', '.join(sorted(p for p in profiles if p))}. Only the `full` "
                       "profiles use the paper's data and settings; every number here carries its conditions.")
    return notices


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


def results_found(out_dir: Path, notebooks: list[str] | None = None) -> list[str]:
    """The notebooks (default: every notebook the report has a section for, in order) whose results
    are in ``out_dir``."""
    return [name for name in notebooks or SECTIONS if (Path(out_dir) / f"{name}.json").exists()]


def run_device(out_dir: Path, notebooks: list[str]) -> str:
    """The device the run's notebooks measured on: the one most of them recorded in their results'
    conditions (a vote per notebook); ``cpu`` when none says."""
    import json
    from collections import Counter

    devices = Counter()
    for name in notebooks:
        try:
            payload = json.loads((Path(out_dir) / f"{name}.json").read_text())
        except (OSError, ValueError):
            continue
        results = (payload.get("results") or {}).values() if isinstance(payload, dict) else ()
        recorded = Counter((r.get("conditions") or {}).get("device")
                           for r in results if isinstance(r, dict))
        recorded.pop(None, None)
        devices.update([recorded.most_common(1)[0][0]] if recorded else [])
    return devices.most_common(1)[0][0] if devices else "cpu"


def write_report(plan, out_dir: Path) -> Path:
    """The plan's report from the results in ``out_dir``, written there (``report.md``, ``report.html``, figures)."""
    return build_report(plan.name, plan.description, [e.name for e in plan.entries], out_dir).save(out_dir)


def headline_of(out_dir: Path, plan_name: str = "") -> str:
    """Notebook 07's headline sentence from ``out_dir``'s results (which part of the speed-up
    comes from the architecture and which from Algorithm 1,
    :func:`effnetv2_mini.study.verdict.headline`); "" without them."""
    path = Path(out_dir) / f"{FASTER}.json"
    if not path.exists():
        return ""
    try:
        result = load_results(path)["time_to_accuracy"]
    except (ValueError, KeyError, TypeError):
        return ""
    c = result.conditions
    rehearsal = ", a rehearsal" if c.rehearsal else ""
    where = f" ({plan_name} plan, {c.dataset}, {c.epochs} epochs{rehearsal})"
    return headline(result) + f" Measured by notebook 07{where}."


def write_headline(readme: Path, sentence: str) -> bool:
    """Replace the text between :data:`HEADLINE_START` and :data:`HEADLINE_END` in ``readme`` with
    ``sentence``; False (nothing written) when either marker is missing or there is no sentence."""
    text = Path(readme).read_text()
    start, end = text.find(HEADLINE_START), text.find(HEADLINE_END)
    if not sentence or start < 0 or end < start:
        return False
    head = text[:start + len(HEADLINE_START)]
    Path(readme).write_text(f"{head}\n{sentence}\n{text[end:]}")
    return True
