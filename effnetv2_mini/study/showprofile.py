"""A notebook's resolved parameters as a table: the first output of every notebook, so that an
executed notebook shows the values it ran with (its parameters cell shows ``None`` for most of them:
"the profile's value").

:func:`~effnetv2_mini.study.profiles.profile_from_globals` calls :func:`show_profile`: an HTML table
in Jupyter (with a text table beside it for viewers without HTML), the text table elsewhere.
"""

from __future__ import annotations

import dataclasses
import html

from .tables import format_table

__all__ = ["profile_rows", "profile_text", "profile_html", "show_profile"]


def profile_rows(values, sources: dict[str, str]) -> list[dict]:
    """One row per parameter of ``values`` (a
    :class:`~effnetv2_mini.study.profiles.NotebookProfile`): its name, its value and where the value
    came from (``sources``, by name)."""
    return [
        {
            "parameter": f.name,
            "value": _shown(getattr(values, f.name)),
            "from": sources.get(f.name, ""),
        }
        for f in dataclasses.fields(values)
        if f.name not in ("profile", "rehearse")
    ]


def _title(notebook: str, values) -> str:
    rehearsal = " (REHEARSAL: shrunk to one or two steps per stage)" if values.rehearse else ""
    return f"{notebook}: the values this run uses, profile {values.profile}{rehearsal}"


def profile_text(notebook: str, values, sources: dict[str, str]) -> str:
    return (
        _title(notebook, values)
        + "\n"
        + format_table(profile_rows(values, sources), ["parameter", "value", "from"])
    )


def profile_html(notebook: str, values, sources: dict[str, str]) -> str:
    rows = "".join(
        f"<tr><td><code>{html.escape(r['parameter'])}</code></td><td>{html.escape(r['value'])}</td>"
        f"<td>{html.escape(r['from'])}</td></tr>"
        for r in profile_rows(values, sources)
    )
    return (
        f"<p><strong>{html.escape(_title(notebook, values))}</strong></p>"
        "<table><thead><tr><th>parameter</th><th>value</th><th>from</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def show_profile(notebook: str, values, sources: dict[str, str]) -> None:
    """Display the table: rich in IPython (Jupyter, papermill), printed otherwise."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # IPython is a dependency; without it, text
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(profile_text(notebook, values, sources))
        return
    display(
        {
            "text/plain": profile_text(notebook, values, sources),
            "text/html": profile_html(notebook, values, sources),
        },
        raw=True,
    )


def _shown(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)
