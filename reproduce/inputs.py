"""What a plan's notebooks will read, checked before anything runs (``--dry-run`` too).

For every notebook to run, the data sets it will open (its data set; notebook 06's pretraining and
transfer sets; notebook 03's only with ``proxy_epochs``) are looked up under its data root without
downloading and without listing every image (:func:`effnetv2_mini.data.datasets.check_data`). Then:

- data the user named (``--data-root``, ``--dataset``) that cannot be read is an error naming the
  notebook, the data set, the folder and what is wrong; nothing runs. A notebook may still download
  a data set the user named (``download: true`` in its profile): that is said, and if it falls back
  to the built-in set all the same the runner records the notebook as failed (:func:`fell_back`);
- a plan's own data that is missing is a loud notice: the notebook downloads it or falls back to the
  built-in set, loudly, as it always has (a plan without data still runs end to end);
- ``--dataset``/``--data-root`` that a notebook does not use (it reads no data, or the built-in set)
  is a loud notice naming the notebooks, never silence.
"""

from __future__ import annotations

from effnetv2_mini.data.datasets import DATASETS, check_data, is_built_in, loud_notice
from effnetv2_mini.study.profiles import NOTEBOOKS, ParameterError, notebook_profile

from .plans import PlanEntry, PlanError

__all__ = ["check_inputs", "data_read", "fell_back", "refuse_empty_data_root"]

FOLDER_SETS = ("imagefolder", "imagenet", "imagenet21k")  # never downloaded: they must be there


def data_read(notebook: str, parameters: dict) -> tuple[list[str], object]:
    """``(data sets, profile)``: the data sets ``notebook`` opens with these parameters, built-in
    ones included, and its resolved profile (None for a notebook outside the project's registry)."""
    if notebook not in NOTEBOOKS:
        return [], None
    given = {k: v for k, v in parameters.items() if k not in ("profile", "rehearse", "output_dir")}
    try:
        values = notebook_profile(notebook, parameters.get("profile"), **given)
    except ParameterError as error:
        raise PlanError(f"{notebook}: {error}") from None
    names = []
    if hasattr(values, "dataset") and getattr(values, "proxy_epochs", 1) > 0:  # 03: proxy only
        names.append(values.dataset)
    if getattr(values, "init_from", None) == "pretrain":
        names.append(values.pretrain_dataset)
    if getattr(values, "init_from", None) == "imagenet21k":
        names.append("imagenet21k")
    names += getattr(values, "transfer_sets", None) or []
    return [n for i, n in enumerate(names) if n not in names[:i]], values


def refuse_empty_data_root(data_root: str | None) -> None:
    """``--data-root ''`` is a mistake, never the current folder nor the plan's own data folder."""
    if data_root is not None and not str(data_root).strip():
        raise PlanError("--data-root is empty (''): name the folder holding the data set, or leave "
                        "the option out (the plan's own data folder is used then)")


def check_inputs(entries: list[PlanEntry], parameters_of, data_root: str | None,
                 dataset: str | None, rehearse: bool = False) -> list[str]:
    """Raise :class:`PlanError` for data the user named that cannot be read; return the loud notices
    to print. ``parameters_of(entry)``: the parameters the runner gives the notebook (plan, command
    line)."""
    refuse_empty_data_root(data_root)
    if dataset is not None and dataset not in DATASETS:
        try:
            check_data(dataset, None)  # its message: the close names and every known one
        except ValueError as error:
            raise PlanError(f"--dataset {dataset}: {error}") from None
    named = (("--dataset", dataset), ("--data-root", data_root))
    given = " ".join(f"{option} {value}" for option, value in named if value is not None)
    if rehearse:
        return [loud_notice(f"{given} does not apply to a rehearsal: it runs every notebook on its "
                            "own miniature data")] if given else []
    problems, unused = _survey(entries, parameters_of, bool(given), dataset)
    errors = [f"{', '.join(nbs)} would read {name} from {root}: {why}"
              for (name, root, why, downloads), nbs in problems.items() if given and not downloads]
    if errors:
        raise PlanError("the data named on the command line cannot be read; nothing was run:\n  "
                        + "\n  ".join(errors))
    notices = [_notice(*key, nbs, bool(given)) for key, nbs in problems.items()]
    if unused:
        notices.append(f"{given} does not apply to {', '.join(unused)}: these notebooks do not "
                       "read it")
    return [loud_notice(n) for n in notices]


def _survey(entries: list[PlanEntry], parameters_of, given: bool,
            dataset: str | None) -> tuple[dict, list[str]]:
    """``({(data set, root, why, downloads): notebooks}, notebooks that read no named data)``."""
    problems: dict[tuple, list[str]] = {}
    unused = []
    for entry in entries:
        read, values = data_read(entry.name, parameters_of(entry))
        names = [n for n in read if not is_built_in(n)]
        if given and not names and dataset not in read:  # --dataset synthetic does apply
            unused.append(f"{entry.name} ("
                          + (f"the built-in set {read[0]}" if read else "reads no data") + ")")
        for name in names:
            why = _problem(name, values.data_root, values)
            if why is not None:
                downloads = values.download and name not in FOLDER_SETS
                problems.setdefault((name, values.data_root, why, downloads), []).append(entry.name)
    return problems, unused


def _notice(name: str, root, why: str, downloads: bool, notebooks: list[str], given: bool) -> str:
    if given:
        return (f"{', '.join(notebooks)}: {name} is not in {root} yet ({why}); the notebook "
                "downloads it (download: true). Should that fail, the notebook is recorded as "
                "failed")
    then = "downloads it, or if it cannot, falls" if downloads else "falls"
    return (f"{', '.join(notebooks)}: {name} cannot be read from {root} ({why}); the notebook "
            f"{then} back to the built-in set: its numbers will NOT be {name} numbers")


def _problem(name: str, root, values) -> str | None:
    """Why ``name`` cannot be read from ``root`` (None: it can)."""
    options = {"size": values.imagenette_size} if name == "imagenette" else {}
    try:
        check_data(name, root, **options)
    except (OSError, ValueError, RuntimeError) as error:  # RuntimeError: torchvision's not found
        return str(error)
    return None


def fell_back(record: dict, notices: list[str], data_root: str | None,
              dataset: str | None) -> dict:
    """A notebook that fell back to the built-in set although the command line named its data is
    failed, not done: its numbers are not the named data's."""
    named = data_root is not None or dataset is not None
    if notices and record.get("state") == "done" and named:
        record = dict(record, state="failed",
                      error="fell back to the built-in set although the command line named the "
                            "data (--data-root / --dataset): its numbers are not that data's. "
                            + notices[0].replace("!", "").strip())
    return record
