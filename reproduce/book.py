"""``python -m reproduce book [RUN_DIR] [--out build/book]`` (``make book``): a run as a site.

Sphinx with MyST-NB and the Sphinx Book Theme (the tools Jupyter Book 1 is made of;
docs/benchmarks.md says why these and what they cost) turn a run into a book: the report first (the
site's front page), then a page on the run (commit, machine, times) and every executed notebook as a
chapter in plan order, then the paper notes (``docs/paper.md``) and ``docs/benchmarks.md``;
navigation and full-text search; figures copied beside the pages. Nothing is executed
(``nb_execution_mode = "off"``) and nothing is fetched.

The source is a published folder (default ``published/laptop``, see :mod:`.publish`) or any run
directory, which is published into ``OUT/published`` first (progress bars cut, paths of the machine
replaced). The pages are staged in ``OUT/src`` (links rewritten so that they resolve inside the
book; a link to a file the book lacks becomes its text) and built into ``OUT/html``, then checked
(:func:`.sitecheck.check_site`): every page there, every link and image resolving, no path of this
machine. A problem is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .plans import ROOT
from .provenance import RUN_INFO
from .publish import DEFAULT_BOOK_SOURCE, PublishError, executed_notebooks, publish
from .sitecheck import check_site
from .tidy import PathScrubber, relink

__all__ = ["build_book", "BookError", "DEFAULT_OUT", "book_pages"]

DEFAULT_OUT = ROOT / "build" / "book"
DOCS = {"paper": ROOT / "docs" / "paper.md", "benchmarks": ROOT / "docs" / "benchmarks.md"}


class BookError(ValueError):
    """A book that cannot be built (no source, no tool) or fails its checks; the message says what
    to do."""


def build_book(source: Path | None = None, out: Path | None = None) -> Path:
    """Build the book of ``source`` (default ``published/laptop``) into ``out`` (default
    ``build/book``); return its front page (``OUT/html/index.html``)."""
    source = Path(source) if source else ROOT / DEFAULT_BOOK_SOURCE
    out = Path(out) if out else DEFAULT_OUT
    _check_source(source)
    _check_tool()
    shutil.rmtree(out, ignore_errors=True)
    publication = (
        source if (source / RUN_INFO).exists() else publish(source, out / "published").parent
    )
    src, html = out / "src", out / "html"
    names = _stage(publication, src)
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-d", str(out / "doctrees"),
               str(src), str(html)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=out)
    if done.returncode != 0:
        raise BookError(f"sphinx-build failed ({done.returncode}):\n{done.stderr[-4000:]}")
    if done.stderr.strip():
        print(done.stderr.strip(), file=sys.stderr)
    for source_map in (html / "_static").rglob("*.map"):  # the theme's, for its developers: 3 MB
        source_map.unlink()
    problems = check_site(html, book_pages(names), PathScrubber([source], [ROOT, out], source.name))
    if problems:
        raise BookError(f"the book in {html} fails its checks:\n  " + "\n  ".join(problems[:40]))
    return html / "index.html"


def book_pages(notebooks: list[str]) -> list[str]:
    """The pages a book of these notebooks has (relative to its html folder)."""
    return ["index.html", "run.html", *(f"{n}.html" for n in notebooks),
            *(f"{d}.html" for d in DOCS), "search.html", "genindex.html"]


def _check_source(source: Path) -> None:
    default = source.resolve() == (ROOT / DEFAULT_BOOK_SOURCE).resolve()
    if default and not source.exists():
        raise BookError(
            f"{DEFAULT_BOOK_SOURCE}/ does not exist yet: the repository's published laptop run "
            "goes there (`python -m reproduce run laptop`, then `python -m reproduce publish "
            "runs/laptop`). To build a book now, run `python -m reproduce run smoke` first, then "
            "`python -m reproduce book runs/smoke`"
        )
    if not (source / RUN_INFO).exists():
        try:
            executed_notebooks(source)
        except PublishError as error:
            raise BookError(str(error)) from None


def _check_tool() -> None:
    try:
        import myst_nb  # noqa: F401
        import sphinx_book_theme  # noqa: F401
    except ImportError as error:
        raise BookError(
            f"the book tool is not installed ({error.name}): `pip install -e '.[dev]'` (or "
            "`make book`, which installs it)"
        ) from None


def _stage(publication: Path, src: Path) -> list[str]:
    """The book's pages in ``src``: copies of the publication and the docs, links rewritten; return
    the notebooks."""
    import nbformat

    info = json.loads((publication / RUN_INFO).read_text())
    names = [n["name"] for n in info["notebooks"] if (publication / f"{n['name']}.ipynb").exists()]
    places = {
        publication / "report.md": src / "index.md",
        publication / "README.md": src / "run.md",
        **{path: src / f"{name}.md" for name, path in DOCS.items()},
        **{publication / f"{n}.ipynb": src / f"{n}.ipynb" for n in names},
        **{
            p: src / p.relative_to(publication)
            for p in publication.rglob("*")
            if p.is_file() and p.suffix not in (".md", ".ipynb", ".json")
        },
    }
    places = {Path(os.path.normpath(k.absolute())): v for k, v in places.items()}

    def available(path: Path) -> Path | None:
        return places.get(Path(os.path.normpath(path.absolute())))

    for origin, target in places.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.suffix == ".ipynb":
            nb = nbformat.read(origin, as_version=4)
            for cell in nb.cells:
                if cell.cell_type == "markdown":
                    cell.source = relink(cell.source, origin.parent, target.parent, available)
            nbformat.write(nb, target)
        elif origin.suffix == ".md":
            target.write_text(relink(origin.read_text(), origin.parent, target.parent, available))
        else:
            shutil.copyfile(origin, target)
    report = (src / "index.md").read_text()
    (src / "index.md").write_text(
        _WIDE + report + _toctree("This run", ["run", *names]) + _toctree("Notes", list(DOCS))
    )
    (src / "_static").mkdir(exist_ok=True)
    (src / "_static" / "book.css").write_text(_CSS)
    (src / "conf.py").write_text(_CONF.format(title=f"effnetv2-mini: the {info['plan']} run"))
    return names


# The report's page without the right-hand contents (its sections are listed at its top): the width
# goes to the at-a-glance table, so that every verdict is on the first screen of a 1280 px window.
_WIDE = "---\nhtml_theme.sidebar_secondary.remove: true\n---\n\n"
_CSS = """/* tables of many columns (the report's at a glance, results) in a smaller type */
.bd-article table { font-size: 0.85em; }
.bd-article table td, .bd-article table th { padding: 0.3em 0.45em; }
/* a page without the right-hand contents (the report) gives its width to the article */
@media (min-width: 1200px) {
  .bd-main:not(:has(.bd-sidebar-secondary)) .bd-content .bd-article-container {
    max-width: 100%;
  }
}
"""


def _toctree(caption: str, pages: list[str]) -> str:
    return (
        "\n\n```{toctree}\n:hidden:\n:caption: " + caption + "\n\n" + "\n".join(pages) + "\n```\n"
    )


_CONF = """# Written by python -m reproduce book: a static book, nothing executed, nothing fetched.
project = "{title}"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # the notebooks are shown as the run left them
nb_merge_streams = True
# GitHub's ids for headings, so that links like paper.md#training-recipe-section-51 work
myst_heading_anchors = 4
html_theme = "sphinx_book_theme"
html_title = "{title}"
# no download button: it offers the pages' sources, which the book leaves out (the notebooks are in
# the repository)
html_theme_options = {{
    "home_page_in_toc": True, "show_navbar_depth": 1, "use_download_button": False,
}}
html_static_path = ["_static"]
html_css_files = ["book.css"]
html_copy_source = False
html_show_sourcelink = False
exclude_patterns = ["_build"]
suppress_warnings = ["myst.header"]  # notebooks and notes start at level 1 and may skip a level
"""
