"""The report as a document: sections made of a few kinds of blocks, rendered to Markdown and to one
self-contained HTML page (a table of contents, figures embedded as PNG).

    ("p", text)  ("quote", text)  ("list", [text, ...])  ("figure", name, caption)
    ("table", rows, columns, headers)  ("table", rows, columns, headers, folded)

``folded``: columns whose long cells fold (a ``<details>``: the cell's start, the whole on a click),
in HTML and in the Markdown (GitHub and MyST render the tags), so that the columns before them fit
on the screen.

Text may use the two pieces of Markdown the report needs inline: **bold** and `code`.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

from effnetv2_mini.study.tables import format_value

__all__ = ["Section", "Report"]


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    claims: list = field(default_factory=list)  # effnetv2_mini.study.claims.Claim rows for the at-a-glance table

    @property
    def anchor(self) -> str:
        """GitHub's (and MyST's) id for the Markdown heading: lower case, punctuation dropped,
        spaces to hyphens."""
        return re.sub(r"[^\w\- ]", "", self.title.strip().lower()).replace(" ", "-")


@dataclass
class Report:
    plan: str
    description: str
    notices: list[str]
    sections: list[Section]
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG
    glance: list[dict] = field(default_factory=list)  # the at-a-glance rows: one per claim (the first section's table)

    def markdown(self) -> str:
        lines = [f"# Reproduction report: plan `{self.plan}`", "", self.description, ""]
        lines += [f"> **{n}**\n" for n in self.notices]
        lines += ["Contents: " + " · ".join(f"[{s.title}](#{s.anchor})" for s in self.sections), ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                lines += _markdown_block(block) + [""]
        return "\n".join(lines)

    def notebook_parts(self) -> list:
        """The Markdown cut at its figures, each figure as its PNG bytes: what a notebook displays
        (figures embedded, so that they show wherever the notebook is opened; no link to a file of
        the machine that ran it). Without the contents line: a notebook's viewer lists the
        headings, and an output's headings get other ids than a page's (MyST-NB, GitHub)."""
        parts, text = [], []
        for line in self.markdown().split("\n"):
            figure = re.fullmatch(r"!\[.*\]\(figures/(.+)\.png\)", line)
            if line.startswith("Contents: ["):
                continue
            if figure and figure.group(1) in self.figures:
                parts += ["\n".join(text), self.figures[figure.group(1)]]
                text = []
            else:
                text.append(line)
        return parts + ["\n".join(text)]

    def html(self) -> str:
        """A self-contained page (figures embedded)."""
        return _PAGE.format(title=_e(f"effnetv2-mini report: {self.plan}"), style=_STYLE, body=self.html_body())

    def html_body(self, embed_figures: bool = True) -> str:
        body = [f"<h1>Reproduction report: plan <code>{_e(self.plan)}</code></h1>", f"<p>{_inline(self.description)}</p>"]
        body += [f'<p class="notice">{_inline(n)}</p>' for n in self.notices]
        body.append('<nav class="toc"><strong>Contents</strong><ol>'
                    + "".join(f'<li><a href="#{s.anchor}">{_inline(s.title)}</a></li>' for s in self.sections)
                    + "</ol></nav>")
        for section in self.sections:
            body.append(f'<h2 id="{section.anchor}">{_inline(section.title)}</h2>')
            body += [self._html_block(block, embed_figures) for block in section.blocks]
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

    def _html_block(self, block, embed_figures: bool) -> str:
        kind = block[0]
        if kind == "p":
            return f"<p>{_inline(block[1])}</p>"
        if kind == "quote":
            return f'<blockquote class="notice">{_inline(block[1])}</blockquote>'
        if kind == "list":
            return "<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block[1]) + "</ul>"
        if kind == "table":
            return _html_table(*block[1:])
        if kind == "figure":
            _, name, caption = block
            if name not in self.figures:
                return ""
            source = (f"data:image/png;base64,{base64.b64encode(self.figures[name]).decode()}" if embed_figures
                      else f"figures/{name}.png")
            return f'<figure><img src="{source}" alt="{_e(caption)}"><figcaption>{_inline(caption)}</figcaption></figure>'
        raise ValueError(f"unknown report block {kind!r}")


def _html_table(rows, columns, headers, folded=()) -> str:
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows) for c in columns]
    head = "".join(f'<th class="{"num" if num else "text"}">{_e(h)}</th>' for h, num in zip(headers, numeric))

    def cell(row, column, num):
        text = format_value(row.get(column))
        shown = _folded(text) if column in folded else _inline(text)
        return f'<td class="{"num" if num else "text"}">{shown}</td>'

    cells = "".join("<tr>" + "".join(cell(row, c, num) for c, num in zip(columns, numeric))
                    + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def _fold(text: str, keep: int = 32) -> str | None:
    """The summary a long cell folds under: ``no`` of ``no (why)``, else its first items (up to
    ``keep`` characters, cut at a comma) and an ellipsis; None for a cell short enough to show
    whole."""
    if len(text) <= keep + 8:
        return None
    word = re.fullmatch(r"(\S+) \(.*\)", text)
    if word:
        return word.group(1)
    cut = text.rfind(", ", 0, keep)
    return text[:cut if cut > 0 else keep] + " …"


def _folded(text: str) -> str:
    summary = _fold(text)
    if summary is None:
        return _inline(text)
    return f"<details><summary>{_inline(summary)}</summary>{_inline(text)}</details>"


def _markdown_block(block) -> list[str]:
    kind = block[0]
    if kind == "p":
        return [block[1]]
    if kind == "quote":
        return ["> " + block[1]]
    if kind == "list":
        return [f"- {item}" for item in block[1]]
    if kind == "table":
        rows, columns, headers = block[1:4]
        folded = block[4] if len(block) > 4 else ()

        def cell(row, column):
            text = format_value(row.get(column))
            summary = _fold(text) if column in folded else None
            if summary is not None:
                text = (f"<details><summary>{html.escape(summary, quote=False)}</summary>"
                        f"{html.escape(text, quote=False)}</details>")
            return text.replace("|", "\\|")

        return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
                + ["| " + " | ".join(cell(row, c) for c in columns) + " |" for row in rows])
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
body { font-family: system-ui, sans-serif; line-height: 1.45; max-width: 1150px; margin: 2em auto; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
td.text, th.text { text-align: left; } td.num, th.num { text-align: right; }
.notice { background: #fff4e5; border-left: 4px solid #f28e2b; padding: 0.5em 0.8em; margin: 0.8em 0; }
nav.toc { background: #f7f7f7; padding: 0.5em 1em; border: 1px solid #e3e3e3; margin: 1em 0; }
nav.toc ol { margin: 0.3em 0; columns: 2; }
figure { margin: 1em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
"""

_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style></head><body>
{body}
</body></html>
"""
