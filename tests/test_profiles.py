"""The profile registry: every notebook's parameters, checked at the edge; rehearsals shrink them."""

from pathlib import Path

import nbformat
import pytest

from effnetv2_mini.study.profiles import (
    NOTEBOOKS,
    PROFILES,
    ParameterError,
    notebook_profile,
    parameter_names,
    profile_from_globals,
)
from reproduce.plans import notebook_parameters

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.parametrize("notebook", sorted(NOTEBOOKS))
def test_each_notebook_declares_exactly_its_registry_parameters(notebook):
    assert notebook_parameters(NOTEBOOK_DIR / f"{notebook}.ipynb") == set(parameter_names(notebook))


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_every_profile_resolves_and_rehearses(profile):
    for notebook in PROFILES[profile]:
        values = notebook_profile(notebook, profile)
        assert values.profile == profile and not values.rehearse
        small = notebook_profile(notebook, profile, rehearse=True)
        assert small.rehearse
        assert getattr(small, "max_steps_per_epoch", 2) == 2
        for field in ("image_size", "eval_size", "table3_image_size", "throughput_image_size", "proxy_image_size"):
            assert getattr(small, field, None) in (None, 32, 48), (notebook, field)
        assert getattr(small, "nproc", 1) <= 2


def test_unknown_parameter_is_an_error_that_suggests_the_name():
    with pytest.raises(ParameterError, match="no parameter 'epoch'; did you mean 'epochs'"):
        notebook_profile("02_training", "smoke", epoch=2)


@pytest.mark.parametrize("name, value, message", [
    ("epochs", "abc", "'epochs' must be int, got 'abc'"),
    ("epochs", 2.5, "'epochs' must be int"),
    ("epochs", True, "'epochs' must be int"),
    ("epochs", 0, "'epochs' must be a whole number >= 1"),
    ("batch_size", -3, "'batch_size' must be a whole number >= 1"),
    ("mixup_alpha", float("inf"), "'mixup_alpha' must be a number from 0 to 100"),  # issue 35
    ("image_size", 4096, "'image_size' must be a whole number from 1 to 2048"),
    ("ema_decay", 1.5, "'ema_decay' must be in \\[0, 1\\)"),
    ("data_root", 3, "'data_root' must be str | None"),
])
def test_wrong_types_and_ranges_are_errors(name, value, message):
    with pytest.raises(ParameterError, match=message):
        notebook_profile("02_training", "smoke", **{name: value})


def test_floats_accept_integers_and_lists_are_checked_item_by_item():
    assert notebook_profile("02_training", "smoke", randaug_magnitude=10).randaug_magnitude == 10
    with pytest.raises(ParameterError, match="grid_sizes"):
        notebook_profile("05_progressive_learning", "smoke", grid_sizes=[32, "48"])


def test_a_profile_without_the_notebook_says_which_have_it():
    with pytest.raises(ParameterError, match="full_transfer.*no parameters for 02_training"):
        notebook_profile("02_training", "full_transfer")
    with pytest.raises(ParameterError, match="unknown profile 'smokey'"):
        notebook_profile("02_training", "smokey")


def test_a_parameter_papermill_injected_must_exist():
    """papermill only logs a warning for ``-p epoch 2``; the notebook's first code cell refuses it."""
    injected = "# Parameters\nprofile = \"smoke\"\nepoch = 2\n"
    namespace = {"In": ["", "profile = None\nepochs = None", injected], "profile": "smoke", "epochs": None, "epoch": 2}
    with pytest.raises(ParameterError, match="no parameter 'epoch'; did you mean 'epochs'"):
        profile_from_globals("02_training", namespace)
    namespace["In"][2] = "# Parameters\nepochs = 3\n"
    assert profile_from_globals("02_training", dict(namespace, epochs=3)).epochs == 3


def test_the_parameters_cell_is_the_first_code_cell_and_lists_output_dir():
    for notebook in NOTEBOOKS:
        nb = nbformat.read(NOTEBOOK_DIR / f"{notebook}.ipynb", as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first.metadata.get("tags", []) and "output_dir" in first.source


def test_a_notebook_shows_the_values_it_runs_with_and_where_each_came_from(capsys):
    """The parameters cell shows ``None`` for most values: the first output is the resolved profile,
    as a table."""
    import dataclasses

    injected = '# Parameters\nprofile = "laptop"\nepochs = 3\n'
    namespace = {"In": ["", injected], "profile": "laptop", "epochs": 3}
    values = profile_from_globals("02_training", namespace)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "02_training: the values this run uses, profile laptop"
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[3:]}
    assert set(rows) == {f.name for f in dataclasses.fields(values)} - {"profile", "rehearse"}
    assert rows["epochs"].split() == ["3", "this", "run's", "parameters"]
    assert rows["dataset"].split() == ["imagenette", "profile", "laptop"]
    assert rows["seed"].split() == ["0", "default", "(smoke)"]
    rehearsed = profile_from_globals("02_training", dict(
        namespace, rehearse=True, In=namespace["In"] + ['# Parameters\nrehearse = True\n']))
    text = capsys.readouterr().out
    image_size = next(line for line in text.splitlines() if line.startswith("image_size")).split()
    assert "(REHEARSAL" in text
    assert image_size == ["image_size", str(rehearsed.image_size), "rehearsal"]


def test_in_jupyter_the_profile_is_an_html_table_with_a_text_twin(monkeypatch):
    import IPython
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda bundle, raw: shown.append((bundle, raw)))
    values = profile_from_globals("08_report", {"In": [], "plan": "laptop"})
    [(bundle, raw)] = shown
    assert raw and set(bundle) == {"text/html", "text/plain"} and values.plan == "laptop"
    assert "<table>" in bundle["text/html"]
    assert "<code>plan</code></td><td>laptop</td>" in bundle["text/html"]
    assert bundle["text/plain"].splitlines()[3].split()[:2] == ["plan", "laptop"]
