"""Publishing a run (``python -m reproduce publish``) and its book (``python -m reproduce book``):
progress bars cut to their final line, no path of the machine, links that resolve, clear errors. The
real run's publication and book are built in tests/test_rehearsal.py, from the laptop plan's
rehearsal."""

import io
import json
import shutil
import uuid
from pathlib import Path

import nbformat
import pytest
from tqdm import tqdm

from reproduce.__main__ import main
from reproduce.book import BookError, build_book
from reproduce.publish import PublishError, duration, publish
from reproduce.sitecheck import check_publication, check_site, external_references
from reproduce.tidy import PathScrubber, relink, tidy_outputs, without_progress

ROOT = Path(__file__).resolve().parent.parent


def tqdm_output(total: int = 5, leave: bool = True, desc: str = "epoch 1/2") -> str:
    """What tqdm writes to a notebook's stream: carriage returns between its states."""
    stream = io.StringIO()
    for _ in tqdm(range(total), desc=desc, file=stream, leave=leave, mininterval=0, ascii=True):
        pass
    return stream.getvalue()


def test_a_progress_bar_keeps_its_final_line_and_a_cleared_one_nothing():
    kept = tqdm_output(leave=True)
    assert kept.count("\r") >= 5  # the noise a notebook keeps: every state of the bar
    text = without_progress("before\n" + kept + "after\n")
    lines = text.splitlines()
    assert "\r" not in text and lines[0] == "before" and lines[-1] == "after" and len(lines) == 3
    assert lines[1].startswith("epoch 1/2: 100%") and "5/5" in lines[1]
    cleared = without_progress("before\n" + tqdm_output(leave=False) + "after\n")
    assert cleared == "before\nafter\n"
    assert (
        without_progress("a table\n\n  indented\n") == "a table\n\n  indented\n"
    )  # blank lines of text stay


def test_a_cells_streams_are_merged_then_cut_and_widgets_give_their_text():
    bar = tqdm_output(leave=True)
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stderr", text=part)
        for part in bar.split("\r")
        if part
    ]
    cell.outputs += [
        nbformat.v4.new_output("stream", name="stdout", text="top-1 45.0%\n"),
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {
                    "model_id": "x",
                    "version_major": 2,
                    "version_minor": 0,
                },
                "text/plain": "epoch 1/2: 100% 5/5",
            },
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=[cell])
    tidy_outputs(nb)
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["stream", "stream", "display_data"]
    assert (
        outputs[0].text.count("\n") == 1
        and "100%" in outputs[0].text
        and "\r" not in outputs[0].text
    )
    assert set(outputs[2].data) == {"text/plain"}
    nbformat.validate(nb)


def test_the_scrubber_replaces_every_path_of_the_machine(tmp_path, monkeypatch):
    run, checkout = tmp_path / "elsewhere" / "laptop", tmp_path / "checkout"
    scrub = PathScrubber([run], [checkout], "laptop")
    text = (
        f"results written to {run}/02_training.json; input {checkout}/notebooks/02_training.ipynb; "
        f"cache {Path.home()}/.cache/effnetv2-mini; {checkout}x stays"
    )
    assert scrub(text) == (
        "results written to runs/laptop/02_training.json; input ./notebooks/02_training.ipynb; "
        f"cache ~/.cache/effnetv2-mini; {checkout}x stays"
    )  # another folder: not the checkout
    assert len(scrub.found(text)) == 3 and not scrub.found(scrub(text))
    monkeypatch.setenv("EFFNETV2_CACHE", str(tmp_path / "cache"))
    scrub = PathScrubber([run], [checkout], "laptop")
    text = f"decoded into {tmp_path}/cache/imagenette"
    assert scrub(text) == "decoded into $EFFNETV2_CACHE/imagenette"


def test_relink_rewrites_for_the_new_place_and_unlinks_what_is_not_there(tmp_path):
    origin, new_place = tmp_path / "notebooks", tmp_path / "published" / "laptop"
    present = {tmp_path / "docs" / "paper.md"}
    text = (
        "See [the notes](../docs/paper.md#training-recipe-section-51), "
        "[profiles](../README.md#profiles), [arXiv](https://arxiv.org/abs/2104.00298), "
        "[below](#results) and ![a figure](../docs/paper.md)."
    )
    out = relink(text, origin, new_place, lambda p: p if p in present else None)
    assert out == (
        "See [the notes](../../docs/paper.md#training-recipe-section-51), profiles, "
        "[arXiv](https://arxiv.org/abs/2104.00298), [below](#results) and "
        "![a figure](../../docs/paper.md)."
    )


def fake_run(run: Path, with_report: bool = True) -> Path:
    """A run directory as the runner leaves it: two executed notebooks with progress-bar noise and
    this machine's paths, status.json with commit and machine, report.md with a figure."""
    run.mkdir(parents=True)
    for name in ("02_training", "01_architecture"):  # written out of plan order
        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {
            "input_path": str(ROOT / "notebooks" / f"{name}.ipynb"),
            "output_path": str(run / f"{name}.ipynb"),
            "parameters": {"output_dir": str(run), "profile": "smoke"},
        }
        train = nbformat.v4.new_code_cell(f'# Parameters\noutput_dir = "{run}"\n')
        train.outputs = [
            nbformat.v4.new_output("stream", name="stdout", text=tqdm_output(leave=False)),
            nbformat.v4.new_output("stream", name="stdout", text=f"written to {run}/{name}.json\n"),
        ]
        nb.cells = [
            nbformat.v4.new_markdown_cell("# Title\n\nSee [notes](../docs/paper.md#sources)."),
            train,
        ]
        nbformat.write(nb, run / f"{name}.ipynb")
    status = {
        name: {
            "state": "done",
            "seconds": seconds,
            "finished": "2026-12-07T19:08:01+00:00",
            "commit": "0123456789ab",
            "machine": {"cpu": "Test CPU 9000", "cores": 2, "memory_gb": 8, "os": "Linux 6"},
        }
        for name, seconds in (("02_training", 221.1), ("01_architecture", 10.2))
    }
    (run / "status.json").write_text(json.dumps(status))
    if with_report:
        (run / "figures").mkdir()
        (run / "figures" / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        (run / "report.md").write_text(
            f"# Report\n\n![curves](figures/curves.png)\n\nsee `{run}/02_training.ipynb`\n"
        )
    return run


def test_publish_copies_in_plan_order_cleaned_with_an_index_page(tmp_path):
    """Published inside the checkout (as published/laptop is), so that links to docs/ stay links."""
    run = fake_run(tmp_path / "smoke")
    to = ROOT / "build" / f"test-publish-{uuid.uuid4().hex[:8]}"
    try:
        index = publish(run, to)
        assert check_publication(to, PathScrubber([run], [ROOT], "smoke")) == []
        text = index.read_text()
        assert text.index("[01_architecture](01_architecture.ipynb)") < text.index(
            "[02_training](02_training.ipynb)"
        )
        for fact in (
            "`0123456789ab`",
            "Test CPU 9000, 2 logical cores",
            "2026-12-07T19:08:01",
            "| 3 min 41 s |",
            "| 10 s |",
            "python -m reproduce run smoke --force",
            f"python -m reproduce publish runs/smoke --to {to.relative_to(ROOT).as_posix()}",
        ):
            assert fact in text, fact
        nb = nbformat.read(to / "02_training.ipynb", as_version=4)
        nbformat.validate(nb)
        assert nb.cells[0].source.endswith(
            f"[notes]({'../' * len(to.relative_to(ROOT).parts)}docs/paper.md#sources)."
        )
        assert nb.cells[1].source == '# Parameters\noutput_dir = "runs/smoke"\n'
        assert [o.text for o in nb.cells[1].outputs] == ["written to runs/smoke/02_training.json\n"]
        assert (
            "runs/smoke/02_training.ipynb" in (to / "report.md").read_text()
            and (to / "figures/curves.png").exists()
        )
        for path in to.rglob("*"):
            assert path.is_dir() or str(tmp_path) not in path.read_text(errors="replace"), path
        assert json.loads((to / "run.json").read_text())["plan"] == "smoke"
        publish(run, to)  # a second publication replaces the first
    finally:
        shutil.rmtree(to, ignore_errors=True)


def test_publish_refuses_what_it_cannot_publish(tmp_path):
    with pytest.raises(
        PublishError, match="does not exist: run a plan first, e.g. `python -m reproduce run smoke`"
    ):
        publish(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "laptop").mkdir()
    with pytest.raises(
        PublishError, match="no executed notebook .*`python -m reproduce run laptop`"
    ):
        publish(tmp_path / "laptop", tmp_path / "out")
    run = fake_run(tmp_path / "smoke", with_report=False)
    with pytest.raises(
        PublishError, match="has no report.md: write it with `python -m reproduce report smoke"
    ):
        publish(run, tmp_path / "out")
    (run / "report.md").write_text("# Report\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(PublishError, match="exists and is not a published run"):
        publish(run, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(PublishError, match="inside the run directory"):
        publish(run, run / "published")


def test_the_publication_check_finds_each_kind_of_problem(tmp_path):
    folder = tmp_path / "pub"
    folder.mkdir()
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("![gone](figures/gone.png)"),
            nbformat.v4.new_code_cell("x"),
        ]
    )
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stderr", text="\r 50%\r100%\n")]
    nbformat.write(nb, folder / "a.ipynb")
    (folder / "b.ipynb").write_text('{"cells": "not a notebook"}')
    (folder / "README.md").write_text(
        f"[abs](/etc/passwd) [ok](a.ipynb) [web](https://x.org) {tmp_path}/run\n"
    )
    problems = check_publication(folder, PathScrubber([tmp_path / "run"], [], "run"))
    expected = [
        "a.ipynb: cell 0: image figures/gone.png: no such file",
        "a.ipynb: cell 1: progress-bar noise",
        "b.ipynb: not a valid notebook",
        "README.md: absolute link /etc/passwd",
        "README.md: paths of this machine",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)


def test_the_site_check_finds_missing_pages_links_anchors_and_paths(tmp_path):
    site = tmp_path / "html"
    (site / "_images").mkdir(parents=True)
    (site / "_images" / "fig.png").write_bytes(b"png")
    (site / "index.html").write_text(
        '<h1 id="top">x</h1><a href="page.html#part">ok</a><img src="_images/fig.png">'
        '<a href="#top">ok</a><a href="https://arxiv.org">web</a>'
    )
    (site / "page.html").write_text(
        f'<h2 id="part">p</h2><a href="gone.html">x</a><a href="index.html#nope">x</a>'
        f'<img src="/abs/fig.png"><script src="https://cdn.example/x.js"></script>'
        f"<p>{tmp_path}/build</p>"
    )
    problems = check_site(
        site, ["index.html", "page.html", "search.html"], PathScrubber([tmp_path], [], "x")
    )
    assert sorted(problems) == sorted(
        [
            "page search.html missing",
            "page.html: gone.html: no such file",
            "page.html: index.html#nope: no anchor #nope in index.html",
            "page.html: absolute reference /abs/fig.png",
            f"page.html: paths of this machine: {tmp_path}",
        ]
    )
    assert external_references(site) == {
        "load": {"https://cdn.example/x.js"},
        "link": {"https://arxiv.org"},
    }


def test_the_book_says_what_is_missing_and_how_to_make_it(tmp_path, monkeypatch, capsys):
    import reproduce.book

    monkeypatch.setattr(reproduce.book, "ROOT", tmp_path)  # a checkout without published/laptop
    with pytest.raises(
        BookError,
        match="published/laptop/ does not exist yet.*`python -m reproduce run smoke` first",
    ):
        build_book()
    with pytest.raises(BookError, match="does not exist: run a plan first"):
        build_book(tmp_path / "runs" / "smoke")
    (tmp_path / "runs" / "smoke").mkdir(parents=True)
    assert main(["book", str(tmp_path / "runs" / "smoke")]) == 2
    assert "no executed notebook" in capsys.readouterr().err
    assert main(["publish", str(tmp_path / "runs" / "nowhere")]) == 2
    assert "error: run directory" in capsys.readouterr().err


def test_durations_read_as_a_person_says_them():
    assert [duration(s) for s in (None, 9.6, 221.1, 6160.0)] == [
        "-",
        "10 s",
        "3 min 41 s",
        "1 h 42 min",
    ]
