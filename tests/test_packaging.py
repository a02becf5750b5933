"""pyproject.toml, environment.yml, the Makefile, the README and CI agree with each other."""

import re
from importlib import metadata
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"torch": "pytorch"}  # PyPI name -> conda-forge name


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject():
    # The installed metadata is built from pyproject.toml (the Makefile reinstalls when that file changes).
    pip_names = {_name(r) for r in metadata.requires("effnetv2-mini")}
    assert {"torch", "torchvision", "papermill", "pytest", "nbval", "ruff"} <= pip_names
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert conda == {CONDA_NAMES.get(n, n) for n in pip_names}
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith(("#", "set ", "cd "))]
    assert len(commands) == 1 and "make test" in commands[0], commands


def test_makefile_targets_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test:", "reproduce:", "lab:"):
        assert re.search(rf"^{target}", makefile, re.M), target
