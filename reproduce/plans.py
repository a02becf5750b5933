"""Plans: which notebooks a batch runs, with which parameters (YAML in ``reproduce/plans/``).

    name: smoke
    description: every notebook in its smoke profile, built-in data, CPU
    defaults:                 # passed to every notebook that has the parameter
      profile: smoke
    timeout: 900              # seconds per notebook (optional; a notebook entry may override it)
    notebooks:
      - name: 01_architecture # notebooks/01_architecture.ipynb
        parameters: {summary_model: efficientnetv2_s}

A plan is validated before anything runs: unknown keys, a notebook that does not exist, a parameter that the
notebook's ``parameters`` cell lacks (papermill would only warn) and a default that no notebook takes are all
errors that name the plan file and line.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from effnetv2_mini.study.profiles import NOTEBOOKS, ParameterError, check_value, notebook_profile

ROOT = Path(__file__).resolve().parent.parent
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # plan and notebook names become file names
PLANS_DIR = Path(__file__).resolve().parent / "plans"
NOTEBOOKS_DIR = ROOT / "notebooks"

PLAN_KEYS = {"name", "description", "defaults", "notebooks", "timeout", "estimate"}
ENTRY_KEYS = {"name", "parameters", "timeout"}
DEFAULT_TIMEOUT = 3600


class PlanError(ValueError):
    """A plan file that cannot be run; the message names the file and line."""


@dataclass
class PlanEntry:
    name: str
    path: Path
    parameters: dict
    timeout: float


@dataclass
class Plan:
    name: str
    description: str
    path: Path
    entries: list[PlanEntry] = field(default_factory=list)
    estimate: dict = field(default_factory=dict)  # minutes, machine, and (CPU plans) the probe's images/s there


def available_plans() -> list[str]:
    return sorted(p.stem for p in PLANS_DIR.glob("*.yaml"))


def _line_index(node, path=(), index=None) -> dict:
    """Map each key path, e.g. ``("notebooks", 0, "parameters", "x")``, to its 1-based line in the file."""
    index = {} if index is None else index
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = path + (key_node.value,)
            index[key_path] = key_node.start_mark.line + 1
            _line_index(value_node, key_path, index)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index[path + (i,)] = item.start_mark.line + 1
            _line_index(item, path + (i,), index)
    return index


def notebook_parameters(path: Path) -> set[str]:
    """Names in the notebook's cell tagged ``parameters`` (through papermill)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)).keys())


def resolve_plan_path(name_or_path: str) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") and candidate.exists():
        return candidate.resolve()
    path = PLANS_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        raise PlanError(
            f"no plan {name_or_path!r}: looked for {path}. Available plans: {', '.join(available_plans())}; "
            "or pass the path of your own plan file (.yaml)"
        )
    return path


def load_plan(name_or_path: str, notebooks_dir: Path = NOTEBOOKS_DIR) -> Plan:
    """Read (with a safe loader) and validate a plan; raise PlanError naming the offending line."""
    path = resolve_plan_path(name_or_path)
    data, fail = _read_plan(path)
    defaults, notebooks, plan_timeout = _check_plan_keys(data, fail)
    name = data.get("name") or path.stem
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        fail(("name",), f"plan name {name!r} must be letters, digits, '_', '-' or '.' (it names runs/<plan>/)")
    estimate = data.get("estimate") or {}
    if not isinstance(estimate, dict) or not isinstance(estimate.get("minutes", 0), (int, float)):
        fail(("estimate",), "estimate must be a mapping: minutes (a number), machine (text), probe (images/s)")
    plan = Plan(name=name, description=data.get("description", ""), path=path, estimate=estimate)
    seen: set[str] = set()
    for i, entry in enumerate(notebooks):
        plan.entries.append(_plan_entry(i, entry, notebooks, defaults, plan_timeout, seen, Path(notebooks_dir), fail))
    used_defaults = {key for entry in plan.entries for key in entry.parameters}
    for key in defaults:
        if key not in used_defaults:
            fail(("defaults", key), f"default {key!r} is a parameter of none of the plan's notebooks")
    return plan


def _read_plan(path: Path):
    """``(data, fail)``: the parsed YAML and a function raising PlanError at a key path's line."""
    text = path.read_text()
    try:
        data = yaml.safe_load(text)
        lines = _line_index(yaml.compose(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as error:
        raise PlanError(f"{path}: not valid YAML: {error}") from error

    def fail(key_path, message):
        line = lines.get(tuple(key_path))
        where = f"{path}, line {line}" if line else str(path)
        raise PlanError(f"{where}: {message}")

    return data, fail


def _check_plan_keys(data, fail) -> tuple[dict, list, float]:
    """The plan's top level: known keys, ``defaults`` a mapping, a non-empty ``notebooks`` list, its timeout."""
    if not isinstance(data, dict):
        fail((), "a plan is a mapping with the keys name, notebooks and optionally description, defaults, timeout")
    for key in data:
        if key not in PLAN_KEYS:
            fail((key,), f"unknown key {key!r}; plan keys are {', '.join(sorted(PLAN_KEYS))}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        fail(("defaults",), "defaults must be a mapping of parameter: value")
    notebooks = data.get("notebooks")
    if not isinstance(notebooks, list) or not notebooks:
        fail(("notebooks",) if "notebooks" in data else (), "a plan needs a non-empty list 'notebooks'")
    return defaults, notebooks, _timeout(data.get("timeout", DEFAULT_TIMEOUT), ("timeout",), fail)


def _plan_entry(i: int, entry, notebooks: list, defaults: dict, plan_timeout: float, seen: set[str],
                notebooks_dir: Path, fail) -> PlanEntry:
    """One notebook entry, checked: a known notebook, listed once, parameters it accepts and of the right type."""
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        fail(("notebooks", i), "each notebook entry needs a 'name' (e.g. 01_architecture)")
    for key in entry:
        if key not in ENTRY_KEYS:
            fail(("notebooks", i, key), f"unknown key {key!r} in notebook entry; allowed: {', '.join(sorted(ENTRY_KEYS))}")
    name = str(entry["name"]).removesuffix(".ipynb")
    if not SAFE_NAME.match(name):
        fail(("notebooks", i), f"notebook name {name!r} must name a notebook of {notebooks_dir} (no paths)")
    if name in seen:
        fail(("notebooks", i), f"notebook {name!r} is listed twice")
    seen.add(name)
    nb_path = notebooks_dir / f"{name}.ipynb"
    if not nb_path.exists():
        known = ", ".join(sorted(p.stem for p in notebooks_dir.glob("*.ipynb")))
        fail(("notebooks", i, "name") if isinstance(notebooks[i], dict) else ("notebooks", i),
             f"unknown notebook {name!r} (no {nb_path}); notebooks: {known}")
    accepted = notebook_parameters(nb_path)
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        fail(("notebooks", i, "parameters"), "parameters must be a mapping of parameter: value")
    for key in parameters:
        if key not in accepted:
            fail(("notebooks", i, "parameters", key),
                 f"notebook {name} has no parameter {key!r}; its parameters: {', '.join(sorted(accepted))}")
    merged = {k: v for k, v in defaults.items() if k in accepted}
    merged.update(parameters)
    for key, value in merged.items():
        where = ("notebooks", i, "parameters", key) if key in parameters else ("defaults", key)
        _check_type(name, key, value, lambda message, where=where: fail(where, message))
    def where(key):
        return ("notebooks", i, "parameters", key) if key in parameters else \
            ("defaults", key) if key else ("notebooks", i)

    _check_ranges(name, merged, lambda key, message: fail(where(key), message))
    timeout = _timeout(entry.get("timeout", plan_timeout), ("notebooks", i, "timeout"), fail)
    return PlanEntry(name, nb_path, merged, timeout)


def _timeout(value, key_path, fail) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        fail(key_path, f"timeout must be a finite number of seconds > 0, got {value!r}")
    return float(value)


def _check_ranges(notebook: str, parameters: dict, fail) -> None:
    """The notebook's parameters through the checks its ``profile_from_globals`` cell makes (the
    command line's ranges: ``epochs: -1`` fails here, before anything runs, not in the notebook's
    first cell)."""
    if notebook not in NOTEBOOKS:
        return
    given = {k: v for k, v in parameters.items() if k not in ("profile", "rehearse", "output_dir")}
    try:
        notebook_profile(notebook, parameters.get("profile"), **given)
    except ParameterError as error:
        named = [k for k in given if f"parameter {k!r}" in str(error)]
        fail(named[0] if named else ("profile" if "profile" in parameters else None), str(error))


def _check_type(notebook: str, key: str, value, fail) -> None:
    """A parameter of one of the project's notebooks must have its setting's type (from the profile registry)."""
    if notebook not in NOTEBOOKS:
        return
    hints = {**typing.get_type_hints(NOTEBOOKS[notebook]), "output_dir": str}
    if key in hints and value is not None:
        try:
            check_value(f"parameter {key!r} of {notebook}", value, hints[key])
        except ParameterError as error:
            fail(str(error))
