"""Bad input, as a new user gives it: every case ends in one message that names the option or file and the fix.

No traceback, no silent wrong number, nothing overwritten. docs/reliability.md has the table of these cases.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effnetv2_mini.cli import main
from effnetv2_mini.engine.checkpoint import CheckpointError, load_checkpoint, non_finite_tensors
from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.engine.loop import fit

ROOT_DIR = Path(__file__).resolve().parent.parent

TINY = ["--model", "demo_v2_tiny", "--dataset", "synthetic", "--train-samples", "64", "--image-size", "32",
        "--batch-size", "32", "--recipe", "simple", "--workers", "0", "--quiet"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread per process: on a shared 2-core machine two threads per process make each step many times slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def cli(argv: list[str], capsys) -> tuple[int | str, str]:
    """``effnetv2 ARGV`` in this process: (exit code, or the SystemExit message; stderr + stdout)."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def image_tree(root: Path, splits: dict[str, list[str]], per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three tiny finished runs (1 epoch each): 10-class synthetic, 3-class synthetic, a 4-class image folder whose
    val split holds one unreadable file; plus damaged files."""
    root = tmp_path_factory.mktemp("runs")
    for argv in (["train", *TINY, "--epochs", "1", "--out", root / "ten"],
                 ["train", *TINY, "--epochs", "1", "--num-classes", "3", "--out", root / "three"]):
        assert main([str(a) for a in argv]) == 0
    folder = image_tree(root / "four", {"train": list("abcd"), "val": list("abcd")})
    assert main(["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root", str(folder), "--image-size",
                 "32", "--eval-size", "32", "--batch-size", "4", "--recipe", "simple", "--workers", "0", "--quiet",
                 "--epochs", "1", "--out", str(root / "four_run")]) == 0
    (folder / "val" / "a" / "broken.png").write_text("not an image")
    data = (root / "ten" / "last.pt").read_bytes()
    (root / "truncated.pt").write_bytes(data[: len(data) // 2])
    (root / "text.pt").write_text("hello, I am not a checkpoint\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "random.pt").write_bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes())
    torch.save({"model": {}, "hook": shutil.rmtree}, root / "unsafe.pt")  # a pickle that would call code
    torch.save([1, 2, 3], root / "list.pt")
    torch.save(torch.nn.Linear(2, 2).state_dict(), root / "plain_state_dict.pt")
    edited = torch.load(root / "ten" / "last.pt", weights_only=True)
    torch.save(dict(edited, num_classes="10"), root / "string_classes.pt")  # edited by hand: a string where a number goes
    torch.save(dict(edited, model_name="demo_v1_tiny"), root / "renamed.pt")  # V2 weights under a V1 name
    return root


# ---- options checked by argparse: exit 2, the option named, nothing written -----------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["train", *TINY, "--ema-decay", "1.5"], "argument --ema-decay: must be in [0, 1), got 1.5"),
    (["train", *TINY, "--train-samples", "0"], "argument --train-samples: must be a whole number >= 1, got 0"),
    (["train", *TINY, "--train-samples", "-5"], "argument --train-samples: must be a whole number >= 1, got -5"),
    (["train", *TINY, "--epochs", "-3"], "argument --epochs: must be a whole number >= 1, got -3"),
    (["train", *TINY, "--epochs", "0"], "argument --epochs: must be a whole number >= 1, got 0"),
    (["train", *TINY, "--batch-size", "0"], "argument --batch-size: must be a whole number >= 1, got 0"),
    (["train", *TINY, "--lr", "nan"], "argument --lr: must be a number > 0, got nan"),
    (["train", *TINY, "--epochs", "three"], "argument --epochs: invalid positive_int value: 'three'"),
    (["nas", "--trials", "0"], "argument --trials: must be a whole number >= 1, got 0"),
    (["nas", "--trials", "-2"], "argument --trials: must be a whole number >= 1, got -2"),
    (["summary", "demo_v2_tiny", "--image-size", "-5"],
     "argument --image-size: must be a whole number from 1 to 2048 (px), got -5"),
    (["bench", "demo_v2_tiny", "--image-size", "0"],
     "argument --image-size: must be a whole number from 1 to 2048 (px), got 0"),
    # issue 35: numbers out of any sensible range (1e308 mixed nothing and wrote Infinity into the
    # metrics)
    (["train", *TINY, "--mixup-alpha", "1e308"],
     "argument --mixup-alpha: must be a number from 0 to 100"),
    (["train", *TINY, "--mixup-alpha", "inf"],
     "argument --mixup-alpha: must be a number from 0 to 100"),
    (["train", *TINY, "--cutmix-alpha", "nan"],
     "argument --cutmix-alpha: must be a number from 0 to 100"),
    (["train", *TINY, "--lr", "inf"], "argument --lr: must be a number > 0, got inf"),
    (["train", *TINY, "--image-size", "4096"],
     "argument --image-size: must be a whole number from 1 to 2048 (px)"),
    (["train", *TINY, "--difficulty", "nan"],
     "argument --difficulty: must be a finite number, got nan"),
    (["train", *TINY, "--model", "efficientnetv2_z"],
     "argument --model: unknown model 'efficientnetv2_z'"),
    (["nas", "--trials", "1", "--w", "inf"], "argument --w: must be a finite number, got inf"),
])
def test_out_of_range_options_exit_2_naming_the_option_and_write_nothing(tmp_path, capsys, argv, message):
    """An out-of-range option is refused before any work, and leaves no run directory (no config.json) behind."""
    out = tmp_path / "out"
    code, text = cli([*argv, "--out", out] if argv[0] in ("train", "nas") else argv, capsys)
    assert code == 2 and message in text, text
    assert not out.exists()


def test_the_corrected_command_runs_after_a_refused_one(tmp_path, capsys):
    """--epochs 0 leaves nothing in --out that would refuse the same command with --epochs 1."""
    out = tmp_path / "run"
    assert cli(["train", *TINY, "--epochs", "0", "--out", out], capsys)[0] == 2
    with pytest.raises(ValueError, match=r"epochs must be a whole number >= 1, got -3 \(CLI: --epochs\)"):
        fit(TrainConfig(out_dir=str(out), epochs=-3, recipe="simple"))
    assert not out.exists()
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", out], capsys)
    assert code == 0 and "after 1 epochs" in text


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be a whole number >= 1, got 0 (CLI: --epochs)"),
    ("batch_size", 0, "batch_size must be a whole number >= 1, got 0 (CLI: --batch-size)"),
    ("ema_decay", 1.5, "ema_decay must be None or in [0, 1), got 1.5 (CLI: --ema-decay)"),
    ("image_size", -5, "image_size must be a whole number from 1 to 2048 (px), got -5 (CLI: --image-size)"),
    ("lr", -1.0, "lr must be None or a number > 0, got -1.0 (CLI: --lr)"),
    ("lr", float("inf"), "lr must be None or a number > 0, got inf (CLI: --lr)"),
    ("mixup_alpha", 1e308, "mixup_alpha must be None or a number from 0 to 100"),
    ("cutmix_alpha", float("inf"), "cutmix_alpha must be a number from 0 to 100"),
    ("epochs", 2.5, "epochs must be a whole number >= 1, got 2.5 (CLI: --epochs)"),
    ("num_classes", 1, "num_classes must be None or a whole number >= 2"),
])
def test_library_callers_get_the_cli_messages(field, value, message):
    """TrainConfig refuses what the CLI refuses, naming the field and its option."""
    with pytest.raises(ValueError) as error:
        TrainConfig(recipe="simple", **{field: value}).resolved()
    assert message in str(error.value)


# ---- commands that cannot run: exit 2, one line naming what is wrong and the fix ------------------------------------

def test_a_finished_run_refuses_another_command_and_stays_untouched(runs, capsys):
    """The issue's command against a finished run directory is refused before anything is read or written."""
    before = {p.name: p.read_bytes() for p in (runs / "ten").iterdir()}
    code, text = cli(["train", "--model", "efficientnetv2_s", "--dataset", "imagefolder", "--data-root", "/nonexistent",
                      "--epochs", "99", "--out", runs / "ten"], capsys)
    assert code == 2 and "holds a run with different settings (model: 'demo_v2_tiny' -> 'efficientnetv2_s'" in text
    assert "use another output directory" in text
    assert {p.name: p.read_bytes() for p in (runs / "ten").iterdir()} == before


def test_resume_with_changes_cannot_change_the_model(runs, capsys, tmp_path):
    """--resume-with-changes continues with a new lr, never with another model (the weights would not fit)."""
    run = shutil.copytree(runs / "ten", tmp_path / "ten")
    code, text = cli(["train", *TINY, "--epochs", "2", "--model", "demo_v1_tiny", "--resume-with-changes", "--out", run],
                     capsys)
    assert code == 2 and "model: 'demo_v2_tiny' -> 'demo_v1_tiny'" in text and "add --resume-with-changes" not in text


@pytest.mark.parametrize("argv, message", [
    (["train", "--model", "nosuch", "--dataset", "synthetic"], "unknown model 'nosuch'"),
    (["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder"], "needs a data root (CLI: --data-root DIR)"),
    (["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root", "/nonexistent"],
     "data set 'imagefolder' not found at /nonexistent"),
    (["train", "--model", "demo_v2_tiny", "--dataset", "imagenett"], "unknown data set 'imagenett'. Did you mean imagenette"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 colour=3"], "--progressive: cannot read 'colour=3'"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 randaug=x"], "--progressive: 'randaug=x' is not a number"),
    (["train", *TINY, "--eval-size", "10000"],
     "--eval-size: must be a whole number from 1 to 2048 (px), got 10000"),
    (["train", *TINY, "--image-size", "10000"],
     "--image-size: must be a whole number from 1 to 2048 (px), got 10000"),
    (["train", *TINY, "--epochs", "4", "--progressive", ""], "--progressive '': a SPEC needs size=FIRST:LAST"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 stages=1.9"], "stages must be a whole number >= 1"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 stages=inf"], "'stages=inf' must be finite"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:inf"], "'size=16:inf' must be finite"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 round=0"], "round must be a whole number >= 1"),
    (["train", *TINY, "--epochs", "4", "--progressive", "size=16:32 dropout=0.1:5"], "a dropout rate must be below 1"),
    (["train", *TINY, "--batch-size", "1000"], "smaller than one batch of 1000 (batch size x processes): lower --batch-size"),
    (["train", *TINY, "--difficulty", "5"], "synthetic difficulty must be in [0, 1], got 5.0"),
    (["train", *TINY, "--device", "cuda:99"], "cuda"),
    (["train", *TINY, "--init-from", "/nonexistent/x.pt"], "checkpoint /nonexistent/x.pt does not exist"),
])
def test_commands_that_cannot_run_exit_2_with_the_fix(tmp_path, capsys, argv, message):
    """Unknown names, missing data and impossible settings: exit 2, the message, no run directory left."""
    out = tmp_path / "out"
    code, text = cli([*argv, "--out", out], capsys)
    assert code == 2 and message in text, text
    assert "Traceback" not in text and not out.exists()


def test_an_empty_out_is_refused_and_nothing_lands_in_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, text = cli(["train", *TINY, "--out", ""], capsys)
    assert code == 2 and "out_dir is empty: name the run directory (CLI: --out runs/NAME)" in text, text
    assert not list(tmp_path.iterdir())


def test_a_storage_that_is_not_a_database_url_is_one_line_naming_the_option(tmp_path, capsys):
    """`effnetv2 nas --storage notaurl` was sqlalchemy's ArgumentError traceback."""
    code, text = cli(["nas", "--storage", "notaurl", "--trials", "1", "--out", tmp_path / "search"], capsys)
    assert code == 2 and "--storage 'notaurl' cannot be opened" in text and "sqlite:////abs/path/nas.db" in text, text
    assert "Traceback" not in text


def test_another_tools_metrics_in_out_is_refused_and_left_alone(tmp_path, capsys):
    """A metrics.jsonl of another program in --out gave "effnetv2: error: epoch" after config.json was written there."""
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n')
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", out], capsys)
    assert code == 2 and "holds metrics.jsonl but no config.json: it is not a run directory of effnetv2 train" in text
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


def test_fewer_outputs_than_class_folders_is_refused_naming_the_classes(tmp_path, capsys):
    """--num-classes 2 on three class folders was an IndexError deep in the loss."""
    root = image_tree(tmp_path / "data", {"train": ["a", "b", "c"], "val": ["a", "b", "c"]})
    code, text = cli(["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root", root, "--batch-size", "2",
                      "--num-classes", "2", "--workers", "0", "--out", tmp_path / "out"], capsys)
    assert code == 2 and "num_classes 2 is smaller than the 3 classes of imagefolder (a, b, c): drop --num-classes" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


def test_train_and_val_folders_with_different_classes_are_refused(tmp_path, capsys):
    """A class missing from one split would shift every label after it: refused, naming the odd classes."""
    root = image_tree(tmp_path / "data", {"train": ["a", "b", "c"], "val": ["a", "b", "d"]})
    code, text = cli(["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root", root, "--batch-size", "2",
                      "--out", tmp_path / "out"], capsys)
    assert code == 2 and "different classes (only in train: ['c']; only in val: ['d'])" in text


@pytest.mark.parametrize("target, message", [
    ("file", "the run directory {out} (--out) is a file"),
    ("under_file", "Not a directory"),
])
def test_an_out_that_is_a_file_is_refused(tmp_path, capsys, target, message):
    """--out naming a file (or a path below one) is an error message, not a traceback."""
    afile = tmp_path / "afile"
    afile.write_text("mine")
    out = afile if target == "file" else afile / "run"
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", out], capsys)
    assert code == 2 and message.format(out=out) in text and afile.read_text() == "mine"
    code, text = cli(["nas", "--trials", "1", "--out", afile], capsys)
    assert code == 2 and f"the search directory {afile} (--out) is a file" in text


def test_an_unreadable_config_json_is_named(runs, tmp_path, capsys):
    """A truncated config.json (edited by hand, an old crash) is named; the run's checkpoints stay as they are."""
    run = shutil.copytree(runs / "ten", tmp_path / "ten")
    (run / "config.json").write_text('{"config": {"mod')
    last = (run / "last.pt").read_bytes()
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", run], capsys)
    assert code == 2 and f"{run / 'config.json'} cannot be read" in text and (run / "last.pt").read_bytes() == last


# ---- divergence from the command line -------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--lr", "1e12"], r"loss became nan at epoch 1, batch \d+; no checkpoint was written before this point"),
    (["--lr", "100", "--optimizer", "sgd", "--epochs", "3"],
     # the loss, or (when the weights overflow first, as some torch builds' kernels do) a weight
     r"(loss became nan at epoch [23], batch \d+; |model became NaN or infinite \(e\.g\. .*\) "
     r"at epoch [23]; they were not saved: )the last good checkpoint"),
])
def test_a_diverging_run_says_what_is_kept_and_how_to_go_on(tmp_path, capsys, argv, message):
    """NaN from a huge learning rate: exit 1 naming epoch and batch, the kept checkpoint (or that none exists), the fix.
    (The batch at which the loss overflows depends on the torch build's kernels, so the message is matched by form.)"""
    out = tmp_path / "out"
    code, text = cli(["train", *TINY, "--train-samples", "128", "--batch-size", "16", "--epochs", "2", *argv, "--out", out],
                     capsys)
    assert isinstance(code, str) and code.startswith("effnetv2 train: ") and re.search(message, code), (code, text)
    assert ("--resume-with-changes" in code) == (out / "last.pt").exists()
    if (out / "last.pt").exists():  # the checkpoint of the epoch before the one that diverged
        diverged_in = int(re.search(r"at epoch (\d+)", code).group(1))
        assert load_checkpoint(out / "last.pt")["epoch"] == diverged_in - 1
        assert not non_finite_tensors(load_checkpoint(out / "last.pt")["model"])


def test_lr_30_with_sgd_ends_finite_or_stops_with_the_message(tmp_path, capsys):
    """The issue's --lr 30 --optimizer sgd ends with finite weights and its true accuracy, or stops with the NaN message."""
    out = tmp_path / "out"
    code, text = cli(["train", *TINY, "--train-samples", "128", "--batch-size", "16", "--epochs", "3", "--lr", "30",
                      "--optimizer", "sgd", "--out", out], capsys)
    if code == 0:
        assert "final top-1" in text
        saved = load_checkpoint(out / "last.pt")
        assert saved["finished"] and not non_finite_tensors(saved["model"])
    else:
        assert isinstance(code, str) and ("loss became" in code or "became NaN or infinite" in code)


# ---- eval --------------------------------------------------------------------------------------------------------

def test_eval_refuses_a_class_count_mismatch_either_way(runs, capsys):
    """A 10-class checkpoint on a 4-class folder, a 3-class one on 10-class data: refused, never a wrong number."""
    code, text = cli(["eval", "--checkpoint", runs / "ten" / "last.pt", "--dataset", "imagefolder", "--data-root",
                      runs / "four", "--workers", "0"], capsys)
    assert code == 2 and "was trained for 10 classes but this data set has 4 (a, b, c, d)" in text
    code, text = cli(["eval", "--checkpoint", runs / "three" / "last.pt", "--dataset", "synthetic", "--workers", "0"], capsys)
    assert code == 2 and "was trained for 3 classes but this data set has 10" in text


def test_eval_ema_without_ema_weights_is_refused(runs, capsys):
    """--ema on a run trained without EMA says so instead of scoring the raw weights under the EMA's name."""
    code, text = cli(["eval", "--checkpoint", runs / "ten" / "best.pt", "--dataset", "synthetic", "--ema", "--workers", "0"],
                     capsys)
    assert code == 2 and "has no EMA weights (the run trained with ema_decay 0); drop --ema" in text


def test_eval_skip_corrupt_counts_images_scored_and_skipped(runs, capsys):
    """An unreadable image is named without --skip-corrupt; with it, the 12 readable images are scored and 1 skipped."""
    checkpoint = runs / "four_run" / "last.pt"
    argv = ["eval", "--checkpoint", checkpoint, "--dataset", "imagefolder", "--data-root", runs / "four", "--workers", "0",
            "--batch-size", "5"]
    code, text = cli(argv, capsys)
    assert code == 2 and "cannot read image" in text and "broken.png" in text and "--skip-corrupt" in text
    code, text = cli([*argv, "--skip-corrupt"], capsys)
    assert code == 0 and "(12 images, 1 unreadable skipped)" in text


# ---- damaged or foreign checkpoints ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, message", [
    ("truncated.pt", "is not a readable checkpoint (truncated or not a PyTorch file: RuntimeError"),
    ("text.pt", "is not a readable checkpoint (truncated or not a PyTorch file"),
    ("empty.pt", "is not a readable checkpoint (truncated or not a PyTorch file: EOFError"),
    ("random.pt", "is not a readable checkpoint"),
    ("unsafe.pt", "holds objects other than tensors and plain values (shutil.rmtree), which are not loaded for safety"),
    ("list.pt", "holds a list, not a checkpoint or state dict"),
    ("renamed.pt", "its weights do not fit the model it names ('demo_v1_tiny'): Error(s) in loading state_dict"),
    ("string_classes.pt", "its 'num_classes' is '10' (str), not a whole number: the file was edited or written by another"),
    ("plain_state_dict.pt", "is not a checkpoint of this library's training (no model, model_name, num_classes)"),
    ("ten", "is a directory; give a checkpoint file in it"),
])
def test_eval_of_a_damaged_or_foreign_checkpoint_names_the_file(runs, capsys, name, message):
    """Every unreadable checkpoint is one message naming the file; none suggests weights_only=False."""
    code, text = cli(["eval", "--checkpoint", runs / name, "--dataset", "synthetic", "--workers", "0"], capsys)
    assert code == 2 and message in text and str(runs / name) in text, text
    assert "weights_only" not in text and "Traceback" not in text


@pytest.mark.parametrize("name", ["truncated.pt", "text.pt", "unsafe.pt"])
def test_init_from_a_damaged_checkpoint_is_refused_before_training(runs, tmp_path, capsys, name):
    """--init-from a truncated, text or unsafe file: exit 2 naming it, no run directory."""
    out = tmp_path / "out"
    code, text = cli(["train", *TINY, "--epochs", "1", "--init-from", runs / name, "--out", out], capsys)
    assert code == 2 and str(runs / name) in text and "weights_only=False" not in text
    assert not out.exists()


def test_a_truncated_last_pt_of_a_run_is_named_and_kept(runs, tmp_path, capsys):
    """A run whose last.pt was truncated (copied half-way, a dead disk): refused naming it, nothing overwritten."""
    run = shutil.copytree(runs / "ten", tmp_path / "ten")
    (run / "last.pt").write_bytes((runs / "truncated.pt").read_bytes())
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", run], capsys)
    assert code == 2 and f"{run / 'last.pt'} is not a readable checkpoint" in text
    assert (run / "last.pt").read_bytes() == (runs / "truncated.pt").read_bytes()


def test_load_checkpoint_never_runs_code():
    """weights_only=True refuses a pickle that calls a function; the message does not suggest weights_only=False."""
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "evil.pt"
        torch.save({"x": os.system}, path)
        with pytest.raises(CheckpointError) as error:
            load_checkpoint(path)
    assert "posix.system" in str(error.value) or "os.system" in str(error.value)
    assert "weights_only" not in str(error.value)


# ---- architectures and images ------------------------------------------------------------------------------------

@pytest.mark.parametrize("blocks, message", [
    (["r1_k3_s3_e1_i16_o16_c1"], "token 's3' in block string 'r1_k3_s3_e1_i16_o16_c1': stride must be s1, s2, s11 or s22"),
    (["r1_k3_s9_e1_i16_o16"], "token 's9'"),
    (["r1_k3_s1_e1_i16_o16", "r1_k3_s2_e4_i24_o32"], "block strings do not chain: 'r1_k3_s1_e1_i16_o16' ends with o16"),
    (["r1_k3_s1_e1_i16"], "lacks the token(s) o"),
    (["r1_k3_s1_e1_i16_o16_zz3"], "unknown token 'zz3'"),
])
def test_bad_block_strings_are_refused_before_a_run_directory_exists(tmp_path, blocks, message):
    """A block string with a bad stride or channels that do not chain names the string; no run directory is made."""
    out = tmp_path / "out"
    config = TrainConfig(model="demo_v2_tiny", model_overrides={"blocks": blocks}, dataset="synthetic", epochs=1,
                         batch_size=32, image_size=32, recipe="simple", workers=0, synthetic={"num_samples": 64},
                         out_dir=str(out), quiet=True)
    with pytest.raises(ValueError) as error:
        fit(config)
    assert message in str(error.value)
    assert not out.exists()


def _png16(path: Path, pixels: np.ndarray) -> None:
    """A 16-bit PNG (grey, RGB or RGBA) written byte by byte: PIL cannot write 16-bit colour."""
    height, width, channels = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_pngs_are_scaled_not_clipped(tmp_path, channels):
    """16-bit grey, RGB and RGBA PNGs become 8-bit RGB with value v/257, not a near-white clip."""
    from effnetv2_mini.data.images import SafeImageLoader

    ramp = (np.arange(32 * 32).reshape(32, 32) * 64).astype(np.uint16)
    planes = [ramp, ramp // 2, 65535 - ramp, np.full_like(ramp, 65535)][:channels] if channels > 1 else [ramp]
    _png16(tmp_path / "x.png", np.stack(planes, -1))
    rgb = SafeImageLoader()(str(tmp_path / "x.png"))
    assert rgb.mode == "RGB"
    got = np.asarray(rgb).astype(float)
    want = np.stack(planes[:3] if channels > 1 else [ramp] * 3, -1) / 257.0
    assert np.abs(got - want).max() <= 1.0


# ---- NAS ---------------------------------------------------------------------------------------------------------

def test_nas_trials_below_one_and_a_missing_search_are_refused(tmp_path, capsys):
    """run_search(trials=0) is a ValueError; nas-summary of a missing folder says how to start one."""
    from effnetv2_mini.study.nas_driver import run_search

    with pytest.raises(ValueError, match="trials must be >= 1, got 0"):
        run_search(tmp_path / "s", TrainConfig(), trials=0)
    code, text = cli(["nas-summary", "--out", tmp_path / "missing"], capsys)
    assert code == 2 and f"no search in {tmp_path / 'missing'} (no nas.db there): run `effnetv2 nas --out" in text
    assert not (tmp_path / "missing").exists()


# ---- plans, status and notebook parameters -------------------------------------------------------------------------

@pytest.mark.parametrize("text, message", [
    ("name: ../../escaped\nnotebooks: [01_architecture]\n", "plan name '../../escaped' must be letters"),
    ("name: t\nnotebooks:\n  - name: ../../evil/x\n", "notebook name '../../evil/x' must name a notebook"),
    ("name: t\ntimeout: ten minutes\nnotebooks: [01_architecture]\n",
     "timeout must be a finite number of seconds > 0, got 'ten minutes'"),
    ("name: t\nnotebooks:\n  - name: 02_training\n    parameters: {batch_size: '32'}\n",
     "parameter 'batch_size' of 02_training must be int, got '32'"),
    # issue 35: a plan's values go through the command line's ranges, before anything runs (dry run
    # included)
    ("name: t\nnotebooks:\n  - name: 02_training\n    parameters: {epochs: -1}\n",
     "02_training parameter 'epochs' must be a whole number >= 1, got -1"),
    ("name: t\ndefaults: {mixup_alpha: .inf}\nnotebooks:\n  - name: 02_training\n",
     "02_training parameter 'mixup_alpha' must be a number from 0 to 100"),
    ("name: t\nnotebooks:\n  - name: 05_progressive_learning\n    parameters: {seeds: [0, 0]}\n",
     "05_progressive_learning parameter 'seeds' must be a list without repeats, got [0, 0]"),
])
def test_plans_that_would_escape_or_misbehave_are_refused(tmp_path, text, message):
    """Plan names become paths and values reach notebooks: both are checked, with the plan file and line."""
    from reproduce.plans import PlanError, load_plan

    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as error:
        load_plan(str(path))
    assert message in str(error.value) and str(path) in str(error.value) and "line " in str(error.value)


@pytest.mark.parametrize("content, problem", [
    ('{"good": {"state": "do', "not valid JSON"),
    ("[1, 2, 3]", "not a mapping of notebook records"),
    ('{"good": "done"}', "not a mapping of notebook records"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
])
def test_an_unreadable_status_json_is_set_aside_with_a_warning(tmp_path, capsys, content, problem):
    """A truncated or foreign status.json is moved to status.json.unreadable (kept, not deleted) and the run goes on."""
    from reproduce.status import load_status

    path = tmp_path / "status.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert load_status(tmp_path) == {}
    assert problem in capsys.readouterr().err
    assert not path.exists() and (tmp_path / "status.json.unreadable").exists()


def test_a_papermill_parameter_the_notebook_lacks_is_an_error():
    """papermill -p epoch 2 only logs a warning; the notebook's first code cell refuses the unknown name."""
    from effnetv2_mini.study.profiles import ParameterError, profile_from_globals

    injected = "# Parameters\nprofile = \"smoke\"\nbatch_sise = 8\n"
    namespace = {"In": ["", "profile = None", injected], "profile": "smoke", "batch_sise": 8}
    with pytest.raises(ParameterError, match="no parameter 'batch_sise'; did you mean 'batch_size'"):
        profile_from_globals("02_training", namespace)


def test_a_papermill_parameter_out_of_range_is_an_error():
    """papermill -p mixup_alpha inf trained with Beta(inf, inf), which mixes nothing, and wrote
    Infinity into the metrics; the notebook's first cell now refuses it as the command line refuses
    --mixup-alpha inf."""
    from effnetv2_mini.study.profiles import ParameterError, profile_from_globals

    injected = "# Parameters\nprofile = \"smoke\"\nmixup_alpha = float('inf')\n"
    namespace = {"In": ["", "profile = None", injected], "profile": "smoke",
                 "mixup_alpha": float("inf")}
    with pytest.raises(ParameterError, match=r"'mixup_alpha' must be a number from 0 to 100 .*inf"):
        profile_from_globals("02_training", namespace)


def test_metrics_of_a_resumed_run_keep_only_epochs_the_checkpoint_covers(runs, tmp_path):
    """A metrics line written after the last checkpoint (a crash between the two) is dropped on resume, not kept twice."""
    run = shutil.copytree(runs / "ten", tmp_path / "ten")
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps(dict(line, epoch=2)) + "\n")
    fit(TrainConfig(model="demo_v2_tiny", dataset="synthetic", synthetic={"num_samples": 64}, image_size=32, batch_size=32,
                    recipe="simple", workers=0, quiet=True, epochs=2, out_dir=str(run), resume_with_changes=True))
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


# ------------------------------------------------------------------------------------------------------------
# Hostile image folders (issue: the probes a careless or hostile user still met)
# ------------------------------------------------------------------------------------------------------------


def test_a_fifo_named_like_an_image_is_an_unreadable_file_not_a_hang(tmp_path):
    import os

    from effnetv2_mini.data.images import CorruptImageError, SafeImageLoader

    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    with pytest.raises(CorruptImageError, match=r"x\.jpg: not a regular file \(a FIFO"):
        SafeImageLoader()(str(fifo))  # returns at once: open() on a FIFO would block forever
    assert SafeImageLoader(skip=True)(str(fifo)) is None


def test_a_decompression_bomb_names_the_file_and_the_ways_out(tmp_path, monkeypatch):
    from effnetv2_mini.data.images import CorruptImageError, SafeImageLoader

    path = tmp_path / "huge.png"
    Image.fromarray(np.zeros((60, 60, 3), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 3,600 pixels: over twice the limit, as a 20000x20000 PNG is
    with pytest.raises(CorruptImageError, match=r"huge\.png: .*--skip-corrupt.*MAX_IMAGE_PIXELS"):
        SafeImageLoader()(str(path))
    assert SafeImageLoader(skip=True)(str(path)) is None


@pytest.mark.parametrize("size", [(1, 40), (40, 1), (1, 1)])
def test_a_one_pixel_thin_image_evaluates(size):
    """The official eval crop of a 1-pixel-thin image would be empty ("shape '[3, 32, 32]' is invalid", no file named)."""
    from effnetv2_mini.data.transforms import eval_transform

    image = Image.fromarray(np.full((size[1], size[0], 3), 200, np.uint8))
    assert tuple(eval_transform(32, "official", crop=True, normalize=None)(image).shape) == (3, 32, 32)


def test_a_symlink_loop_in_a_class_folder_counts_each_image_once(tmp_path, capsys):
    from effnetv2_mini.data.datasets import get_dataset

    root = image_tree(tmp_path / "data", {"train": ["a", "b"]})
    (root / "train" / "a" / "up").symlink_to(root / "train")  # a loop: a/up/a/up/... down to the system's limit
    dataset = get_dataset("imagefolder", "train", root=root)
    assert len(dataset) == 6 and dataset.base.targets == [0, 0, 0, 1, 1, 1]  # was 3 per class at every depth
    assert "lead to files already listed (a symbolic link to a parent folder?)" in capsys.readouterr().out


def test_a_val_split_that_is_the_train_split_is_said_loudly(tmp_path, capsys):
    from effnetv2_mini.data.datasets import get_dataset

    root = image_tree(tmp_path / "data", {"train": ["a", "b"]})
    (root / "val").symlink_to(root / "train")
    get_dataset("imagefolder", "val", root=root)
    assert "validation images are training images" in capsys.readouterr().out


def test_a_misspelt_data_set_is_an_error_not_a_fallback_to_the_built_in_set():
    """papermill -p dataset imagenett trained on the built-in set and exited 0."""
    from effnetv2_mini.data.datasets import dataset_or_fallback

    with pytest.raises(ValueError, match="unknown data set 'imagenett'. Did you mean imagenette"):
        dataset_or_fallback("imagenett", "data")


def test_a_corrupt_image_read_by_a_loader_worker_is_one_line_not_a_worker_traceback(tmp_path, capsys):
    root = image_tree(tmp_path / "data", {"train": ["a", "b"], "val": ["a", "b"]}, per_class=4)
    (root / "train" / "a" / "0.png").write_bytes(b"not an image")
    code, output = cli(["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root", root, "--epochs", "1",
                        "--image-size", "32", "--batch-size", "4", "--recipe", "simple", "--workers", "2", "--quiet",
                        "--out", tmp_path / "run"], capsys)
    assert code == 2
    assert "Traceback" not in output and "DataLoader worker" not in output
    assert re.search(r"effnetv2: error: cannot read image .*0\.png: .*--skip-corrupt", output)


# ---- issue 35: data that cannot train, values surely a mistake, the benchmarks' arguments -------

@pytest.mark.parametrize("argv, message", [
    (["--dataset", "imagefolder", "--data-root", ""],
     "the data root of 'imagefolder' is empty (--data-root '')"),
    (["--dataset", "synthetic", "--num-classes", "1"],
     "num_classes must be None or a whole number >= 2"),
])
def test_data_that_cannot_train_a_classifier_is_refused(tmp_path, capsys, monkeypatch, argv,
                                                        message):
    """`--data-root ''` read the current folder; one class trained to "top-1 100.00%"."""
    monkeypatch.chdir(tmp_path)
    image_tree(tmp_path, {"train": list("ab"), "val": list("ab")})  # what '' would have read
    argv = ["train", *TINY[:2], *argv, *TINY[4:], "--epochs", "1", "--out", tmp_path / "out"]
    code, text = cli(argv, capsys)
    assert code == 2 and message in text and "Traceback" not in text, text
    assert not (tmp_path / "out").exists()


def test_a_one_class_folder_is_refused_for_training_not_reported_as_100_percent(tmp_path, capsys):
    folder = image_tree(tmp_path / "one", {"train": ["only"], "val": ["only"]})
    code, text = cli(["train", "--model", "demo_v2_tiny", "--dataset", "imagefolder", "--data-root",
                      folder, "--image-size", "32", "--batch-size", "2", "--recipe", "simple",
                      "--workers", "0", "--epochs", "1", "--out", tmp_path / "out"], capsys)
    assert code == 2, text
    assert "imagefolder has one class (only) to train on: a classifier needs two or more" in text
    assert "100.00%" not in text


def test_values_that_are_surely_a_mistake_are_warned_about_and_recorded(tmp_path, capsys):
    """--accumulate 1000000000 trained with a peak lr of 1e6 and a global batch of 1.6e10 without a
    word."""
    out = tmp_path / "run"
    argv = ["train", *TINY, "--epochs", "1", "--accumulate", "1000000000", "--out", out]
    code, text = cli(argv, capsys)
    assert code == 0, text
    assert "warning: the peak learning rate 2e+06 (adamw) is far above any recipe's" in text
    assert "warning: --accumulate 1000000000 exceeds the 2 batches of an epoch" in text
    assert "Use --accumulate 2 or less" in text
    assert len(json.loads((out / "config.json").read_text())["warnings"]) == 2
    code, text = cli(["train", *TINY, "--epochs", "1", "--out", tmp_path / "fine"], capsys)
    record = json.loads((tmp_path / "fine" / "config.json").read_text())
    assert code == 0 and "warning" not in text and "warnings" not in record


BENCH = ROOT_DIR / "bench" / "bench_time_to_accuracy.py"


@pytest.mark.parametrize("argv, message", [
    (["--models", "nosuch", "demo_v1_tiny"], "argument --models: unknown model 'nosuch'"),
    (["--epochs", "0"], "argument --epochs: must be a whole number >= 1, got 0"),
    (["--epochs", "2", "--stages", "4"],
     "argument --stages: 4 stages need at least as many epochs (--epochs 2)"),
    (["--batch-size", "-1"], "argument --batch-size: must be a whole number >= 1, got -1"),
    (["--size", "4096"], "argument --size: must be a whole number from 1 to 2048 (px), got 4096"),
    (["--min-size", "96", "--size", "48"],
     "progressive learning grows the image size: --min-size 96 must be below"),
    (["--seeds", "0", "0"], "argument --seeds: 0 given more than once"),
    (["--dataset", "imagenett"], "unknown data set 'imagenett'. Did you mean imagenette"),
    (["--dataset", "imagefolder", "--data-root", "/nonexistent"],
     "data set 'imagefolder' not found at /nonexistent"),
])
def test_the_time_to_accuracy_benchmark_checks_its_arguments(argv, message, capsys):
    """bench/bench_time_to_accuracy.py took every argument as given: tracebacks after the first
    trainings, a "progressive" run at 48 px throughout, duplicated seeds counted as one. It uses the
    command line's checks now."""
    import runpy

    module = runpy.run_path(str(BENCH))
    with pytest.raises(SystemExit) as exit:
        module["parse"](argv)
    text = capsys.readouterr().err
    assert exit.value.code == 2 and message in text and "Traceback" not in text, text
