"""``python -m reproduce.screenshots [SITE] [--out DIR]`` (``make book-screenshots``): the built
book in a real browser, headless Chromium at 1280 x 800 (``apt-get install -y chromium``):

- ``report-glance.png``: the report's at-a-glance table (every verdict should be on this screen);
- ``07-figure.png``: the first figure of notebook 07's chapter.

Each page is shown in a 1280 x 800 frame scrolled to its target (Chromium's own ``--screenshot`` of
a page scrolled to an ``#anchor`` leaves part of the picture blank). The frames are written into the
site for the moment of the screenshot and removed afterwards. Prints each PNG's path, size in bytes
and pixels.
"""

from __future__ import annotations

import argparse
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["take", "chromium", "png_size"]

WIDTH, HEIGHT = 1280, 800
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--virtual-time-budget=5000",
    f"--window-size={WIDTH},{HEIGHT}",
]
FRAME = (
    '<!doctype html><html><head><meta charset="utf-8"><style>html,body{{margin:0;overflow:hidden}}'
    "iframe{{border:0;width:{w}px;height:{h}px;display:block}}</style></head>"
    '<body><iframe src="{src}"></iframe></body></html>'
)


def chromium() -> str:
    """The Chromium (or Chrome) on this machine, or an error saying how to install it."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    raise SystemExit(
        "no Chromium found: `apt-get install -y chromium` (Debian, Ubuntu) or install Google Chrome"
    )


def png_size(path: Path) -> tuple[int, int]:
    """A PNG's width and height, from its header."""
    return struct.unpack(">II", Path(path).read_bytes()[16:24])


def _shoot(site: Path, target: str, out: Path) -> Path:
    """Screenshot ``target`` (a page of ``site`` with its #anchor) in a frame of the window's
    size."""
    frame = site / "_screenshot_frame.html"
    frame.write_text(FRAME.format(w=WIDTH, h=HEIGHT, src=target))
    with tempfile.TemporaryDirectory() as profile:
        try:
            subprocess.run(
                [
                    chromium(),
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    f"--screenshot={out}",
                    frame.resolve().as_uri(),
                ],
                capture_output=True,
                timeout=120,
                check=True,
            )
        finally:
            frame.unlink()
    return out


def _first_figure_page(site: Path, page: str) -> str:
    """A copy of ``page`` whose first figure in a cell's output carries an id to scroll to; its
    name."""
    text = (site / page).read_text()
    marked, count = re.subn(
        r"<img (?=[^>]*_images/)", '<img id="screenshot-figure" ', text, count=1
    )
    if not count:
        raise SystemExit(f"{site / page} shows no figure")
    copy = f"_screenshot_{page}"
    (site / copy).write_text(marked)
    return copy


def take(site: Path, out: Path) -> list[Path]:
    """The two screenshots of the book in ``site`` (its html folder), written into ``out``."""
    site, out = Path(site), Path(out)
    if not (site / "index.html").exists():
        raise SystemExit(
            f"no book in {site}: build it first (`make book`, `python -m reproduce book RUN_DIR`)"
        )
    out.mkdir(parents=True, exist_ok=True)
    shots = [_shoot(site, "index.html#at-a-glance", out / "report-glance.png")]
    figure_page = _first_figure_page(site, "07_faster_training.html")
    try:
        shots.append(_shoot(site, f"{figure_page}#screenshot-figure", out / "07-figure.png"))
    finally:
        (site / figure_page).unlink()
    return shots


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reproduce.screenshots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "site", nargs="?", default="build/book/html", type=Path, help="the book's html folder"
    )
    parser.add_argument("--out", default="build/book/screenshots", type=Path)
    args = parser.parse_args(argv)
    for path in take(args.site, args.out):
        width, height = png_size(path)
        print(f"{path}: {path.stat().st_size:,} bytes, {width} x {height} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
