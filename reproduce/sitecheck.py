"""Checks without a browser: a published folder (:func:`check_publication`) and a built book
(:func:`check_site`). Each returns its problems, one line each (an empty list: none found).

A publication must render on GitHub: valid notebooks (``nbformat.validate``), every relative link
and image of its Markdown (files and notebooks' Markdown cells) resolving to a file in the folder or
the repository, no link that is absolute, no progress-bar noise (a carriage return in a stream
output), no path of this machine.
A site: the pages expected, every ``href``/``src`` of its pages
(not the theme's templates in ``_static``) resolving (file and ``#anchor``), no path of this
machine; what it loads from the web is listed by :func:`external_references` (a book that works
offline has none).
"""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .tidy import LINK, PathScrubber

__all__ = [
    "check_publication",
    "check_site",
    "external_references",
    "page_references",
    "possible_paths",
]

# a path that starts a word and has two parts or more: /tmp/x, /home/me/data (not img/s, 1/6 or a
# URL's path)
ABSOLUTE = re.compile(r"(?:^|(?<=[\s\"'(=\[,]))/(?:[\w.-]+/)+[\w.-]*", re.M)


def check_publication(folder: Path, scrub: PathScrubber | None = None) -> list[str]:
    """Problems of a published folder (see the module's docstring)."""
    import nbformat

    folder = Path(folder)
    problems = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.suffix not in (".ipynb", ".md", ".json"):
            continue
        name, text = path.relative_to(folder).as_posix(), path.read_text()
        if scrub is not None and scrub.found(text):
            problems.append(f"{name}: paths of this machine: {', '.join(scrub.found(text))}")
        if path.suffix == ".md":
            problems += [f"{name}: {p}" for p in _markdown_links(text, path.parent)]
        if path.suffix == ".ipynb":
            try:
                nb = nbformat.reads(text, as_version=4)
                nbformat.validate(nb)
            except Exception as error:  # noqa: BLE001 - nbformat raises several kinds; each is a problem
                problems.append(
                    f"{name}: not a valid notebook ({type(error).__name__}: {str(error)[:200]})"
                )
                continue
            problems += [f"{name}: {p}" for p in _notebook_problems(nb, path.parent)]
    return problems


def possible_paths(folder: Path) -> list[str]:
    """Absolute paths that remain in a published folder's text (sources and outputs): what
    :class:`PathScrubber` knows of this machine is replaced, a folder of another machine may not be.
    A list to read, not an error."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and path.suffix in (".ipynb", ".md"):
            text = path.read_text()
            if path.suffix == ".ipynb":  # its text, not its embedded images
                text = re.sub(r'"image/[a-z+]+": "[^"]*"', "", text)
            found += [f"{path.name}: {p}" for p in sorted(set(ABSOLUTE.findall(text)))]
    return found


def _notebook_problems(nb, folder: Path) -> list[str]:
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            problems += [f"cell {index}: {p}" for p in _markdown_links(cell.source, folder)]
        for output in cell.get("outputs", []):
            if output.output_type == "stream" and "\r" in output.text:
                problems.append(
                    f"cell {index}: progress-bar noise (carriage returns) in its {output.name}"
                )
    return problems


def _markdown_links(text: str, folder: Path) -> list[str]:
    problems = []
    for bang, _, target in LINK.findall(text):
        what = "image" if bang else "link"
        parts = urlsplit(target)
        if parts.scheme in ("http", "https", "mailto") or target.startswith("#"):
            continue
        if parts.scheme or target.startswith("/"):
            problems.append(f"absolute {what} {target}")
        elif not (folder / unquote(parts.path)).exists():
            problems.append(f"{what} {target}: no such file")
    return problems


class _Page(HTMLParser):
    """A page's ids and its references: (tag, attribute, value) of every href and src."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids, self.references = set(), []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            elif name in ("href", "src") and value is not None:
                self.references.append((tag, name, value))


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(errors="replace"))
    return page


def page_references(path: Path) -> list[tuple[str, str, str]]:
    """Every (tag, attribute, value) of the page's ``href`` and ``src`` attributes."""
    return _parse(path).references


def external_references(site: Path) -> dict[str, set[str]]:
    """What the site's pages load or link from the web: ``{"load": {...}, "link": {...}}`` (scripts,
    styles, images and frames load; anchors only link)."""
    found = {"load": set(), "link": set()}
    for page in (
        p for p in Path(site).rglob("*.html") if "_static" not in p.relative_to(site).parts
    ):
        for tag, _, value in page_references(page):
            if urlsplit(value).scheme in ("http", "https") or value.startswith("//"):
                found["link" if tag == "a" else "load"].add(value)
    return found


def check_site(site: Path, pages: list[str], scrub: PathScrubber | None = None) -> list[str]:
    """Problems of a built site: a page of ``pages`` (paths relative to ``site``) missing, a
    reference that does not resolve inside the site (file or anchor), a path of this machine in a
    page."""
    site = Path(site)
    problems = [f"page {p} missing" for p in pages if not (site / p).is_file()]
    parsed = {
        path: _parse(path)
        for path in site.rglob("*.html")
        if "_static" not in path.relative_to(site).parts
    }
    for path, page in parsed.items():
        name = path.relative_to(site).as_posix()
        text = path.read_text(errors="replace")
        if scrub is not None and scrub.found(text):
            problems.append(f"{name}: paths of this machine: {', '.join(scrub.found(text))}")
        for _, _, value in page.references:
            problem = _unresolved(value, path, site, parsed)
            if problem:
                problems.append(f"{name}: {problem}")
    return problems


def _unresolved(value: str, page: Path, site: Path, parsed: dict) -> str | None:
    parts = urlsplit(value)
    if parts.scheme in ("http", "https", "mailto", "data", "javascript") or value.startswith("//"):
        return None
    if parts.scheme or value.startswith("/"):
        return f"absolute reference {value}"
    target = Path(os.path.normpath(page.parent / unquote(parts.path))) if parts.path else page
    if not target.is_relative_to(site.resolve()) and not target.is_relative_to(site):
        return f"{value} points outside the site"
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"{value}: no such file"
    if parts.fragment and target.suffix == ".html":
        ids = parsed[target].ids if target in parsed else _parse(target).ids
        if unquote(parts.fragment) not in ids:
            return f"{value}: no anchor #{parts.fragment} in {target.name}"
    return None
