"""Labels a reader trips on (issue 33): each printed label says what the number is and where the
paper's number comes from, and a verdict reads no signal into chance (a rank correlation over few
candidates, a baseline that learned nothing)."""

import ast
import re
from pathlib import Path

import nbformat
import pytest
import torch

from effnetv2_mini.engine.config import TrainConfig
from effnetv2_mini.measure import count_macs, count_params
from effnetv2_mini.paper.model import build_model
from effnetv2_mini.paper.recipe import explain
from effnetv2_mini.study.claims import nas_claims, transfer_claim
from effnetv2_mini.study.experiments import Conditions, TransferResult
from effnetv2_mini.study.experiments.efficiency import table3_counts_3x3
from effnetv2_mini.study.experiments.search import NasResult
from effnetv2_mini.study.ranktest import spearman_p_value

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SOURCE = re.compile(r"\b(Table|section|Figure|Fig\.|Algorithm|equation)\s*\d", re.I)


def notebook(prefix: str):
    return nbformat.read(next((ROOT / "notebooks").glob(f"{prefix}_*.ipynb")), as_version=4)


def output_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []))


# ---- notebooks: titles, sources of the paper's numbers ------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebooks_title_number_is_its_file_number(path):
    nb = nbformat.read(path, as_version=4)
    title = nb.cells[0].source.splitlines()[0]
    assert nb.cells[0].cell_type == "markdown" and title.startswith(f"# {path.name[:2]} "), title


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_label_naming_the_paper_names_its_table_or_section(path):
    """A string in a notebook's code that labels something as the paper's ("params M (paper)")
    says where in the paper it comes from; identifiers ("paper", "paper_top1") are not labels."""
    unsourced = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.search(r"\bpaper\b", node.value, re.I) and not node.value.isidentifier()
                    and not SOURCE.search(node.value)):
                unsourced.append(node.value)
    assert unsourced == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_checked_output_naming_the_paper_names_its_table_or_section(path):
    """Committed outputs (checked by nbval) that show the paper's numbers say where they come
    from, on the same line."""
    for cell in nbformat.read(path, as_version=4).cells:
        lines = output_text(cell).splitlines()
        for line in lines:
            if re.search(r"\bpaper\b", line, re.I) and "not in the paper" not in line:
                assert SOURCE.search(line), f"{path.name}: {line!r}"


def test_the_checker_catches_an_unsourced_paper_label():
    cell = nbformat.v4.new_code_cell('print(format_table(rows, ["a"], ["GMACs (paper)"]))')
    found = [n.value for n in ast.walk(ast.parse(cell.source))
             if isinstance(n, ast.Constant) and isinstance(n.value, str) and "paper" in n.value
             and not SOURCE.search(n.value)]
    assert found == ["GMACs (paper)"]
    assert SOURCE.search("GMACs (paper Table 3)") and SOURCE.search("paper (section 5.3)")


# ---- the labels of issue 33, one each -----------------------------------------------------------

def test_notebook_01_says_the_papers_8_8b_is_the_arxiv_v1_architecture_not_a_rounding():
    cells = notebook("01").cells
    prose = " ".join(c.source for c in cells if c.cell_type == "markdown").replace("\n", " ")
    said = [sentence for sentence in prose.split(". ") if "8.8B" in sentence]
    assert said and all("arXiv v1" in sentence for sentence in said), said
    # the old label: "the paper rounds: 22M, 8.8B for V2-S"
    assert not re.search(r"rounds?\W+(22M\W+)?8\.8B", prose)
    assert "272 and 1792" in prose  # arXiv v1's wider stage 6 and head (docs/paper.md, Table 7)


def test_recipe_text_gives_adamw_decoupled_weight_decay_and_rmsprop_the_official_l2():
    def meaning(recipe, setting):
        rows = explain(TrainConfig(model="demo_v2_tiny", recipe=recipe).resolved())
        return next(r for r in rows if r["setting"] == setting)

    adamw = meaning("simple", "weight_decay")
    assert adamw["value"] == "0.05" and "decoupled" in adamw["meaning"]
    assert "L2" not in adamw["meaning"]
    assert "AdamW" in meaning("simple", "optimizer")["meaning"]
    assert "RMSProp" not in meaning("simple", "optimizer")["meaning"]
    rmsprop = meaning("paper", "weight_decay")
    assert rmsprop["value"] == "1e-05" and "L2 term in the loss" in rmsprop["meaning"]
    assert "decoupled" not in rmsprop["meaning"]
    assert "RMSProp" in meaning("paper", "optimizer")["meaning"]


def test_notebook_02_prints_the_meanings_of_its_own_optimizer():
    cell = next(c for c in notebook("02").cells if "explain(config)" in c.source)
    text = output_text(cell)
    optimizer = next(line for line in text.splitlines() if line.startswith("optimizer "))
    decay = next(line for line in text.splitlines() if line.startswith("weight_decay "))
    if " adamw " in optimizer:
        assert "decoupled" in decay and "L2" not in decay and "RMSProp" not in optimizer
    else:
        assert " rmsprop " in optimizer and "L2" in decay


def test_the_fused_stage_3_kernel_accounts_for_a_hand_counted_difference():
    """B4's stage 3 (r2_k5_s2_e6_i24_o40, width 1.4, depth 1.8): 4 blocks, 32 -> 56 channels,
    expansion 6, output 48x48 at 380 px. Fused, a 5x5 instead of a 3x3 expansion conv adds 16
    weights per connection: 16 * (32 * 192 + 3 * 56 * 336) = 1,001,472 parameters, and
    48 * 48 = 2,304 times that in MACs."""
    with torch.device("meta"):
        built = build_model("efficientnet_b4", fused_stages=3)
    params_3x3, macs_3x3 = table3_counts_3x3(3)
    assert count_params(built) - round(params_3x3 * 1e6) == 1_001_472
    assert count_macs(built, 380) - round(macs_3x3 * 1e9) == 1_001_472 * 2_304
    with torch.device("meta"):
        plain = build_model("efficientnet_b4")  # nothing fused: stage 3 keeps its 5x5 depthwise
    assert table3_counts_3x3(0) == (count_params(plain) / 1e6, count_macs(plain, 380) / 1e9)


def test_notebook_03_explains_its_fused_counts_beside_the_papers():
    cell = next(c for c in notebook("03").cells if "print(explain_table3_counts(" in c.source)
    text = output_text(cell)
    assert "GMACs (paper Table 3)" in text and "5x5" in text and "3x3" in text
    assert "fused 1-3:" in text and ("not fully explained" in text or "most likely" in text)


def test_notebook_06_says_base_lr_is_per_256_images():
    cell = next(c for c in notebook("06").cells
                if "finetune_config(" in c.source and "keys" in c.source)
    lines = [line for line in output_text(cell).splitlines() if "base_lr" in line]
    assert lines and all("per 256 images" in line for line in lines)


@pytest.mark.parametrize("prefix", ["01", "02", "03", "04", "05", "06"])
def test_the_profile_table_is_not_printed_twice(prefix):
    cell = next(c for c in notebook(prefix).cells if "profile_from_globals(" in c.source)
    assert "print(cfg)" not in cell.source


# ---- rank correlations over few candidates ------------------------------------------------------

def test_exact_spearman_p_values_by_hand():
    assert spearman_p_value(1.0, 4) == pytest.approx(1 / 24)  # only the identity of 24 orderings
    assert spearman_p_value(0.8, 4) == pytest.approx(4 / 24)  # identity and the 3 adjacent swaps
    assert spearman_p_value(-1.0, 4, "less") == pytest.approx(1 / 24)
    assert spearman_p_value(1.0, 5) == pytest.approx(1 / 120)
    assert spearman_p_value(-1.0, 3) == 1.0
    # 10 candidates: normal approximation, z = 0.6 * 3 = 1.8, upper tail 0.0359
    assert spearman_p_value(0.6, 10) == pytest.approx(0.0359, abs=1e-4)
    with pytest.raises(ValueError):
        spearman_p_value(0.5, 4, "two-sided")


def nas(rho, proxy, longer):
    conditions = Conditions(profile="laptop", model="NAS space s", dataset="imagefolder",
                            num_classes=10, val_images=3925, epochs=3, seeds=[0], device="cpu",
                            device_name="x86_64")
    ranked = [{"trial": i, "reward": 0.5, "accuracy": 50.0 + i} for i in range(len(proxy))]
    retrained = [{"trial": i, "proxy_accuracy": p, "longer_accuracy": q}
                 for i, (p, q) in enumerate(zip(proxy, longer))]
    return NasResult(conditions, "s", len(proxy), ranked, retrained=retrained,
                     proxy_vs_longer_spearman=rho)


def proxy_verdict(result):
    return next(c for c in nas_claims(result) if c.key == "nas_proxy").verdict


def test_four_candidates_ranked_the_same_way_agree_with_p_one_in_24():
    verdict = proxy_verdict(nas(1.0, [40.0, 45.0, 50.0, 55.0], [50.0, 55.0, 60.0, 65.0]))
    assert verdict.label == "agrees" and "p = 0.042" in verdict.why


def test_a_spearman_of_0_8_over_four_candidates_is_no_signal():
    verdict = proxy_verdict(nas(0.8, [40.0, 45.0, 50.0, 55.0], [50.0, 60.0, 55.0, 65.0]))
    assert verdict.label == "no signal" and "p = 0.167 > 0.05" in verdict.why


def test_four_candidates_ranked_backwards_contradict():
    verdict = proxy_verdict(nas(-1.0, [40.0, 45.0, 50.0, 55.0], [65.0, 60.0, 55.0, 50.0]))
    assert verdict.label == "contradicts" and "p = 0.042" in verdict.why


# ---- transfer: a from-scratch baseline at chance ------------------------------------------------

def transfer(pretrained, scratch):
    conditions = Conditions(profile="laptop", model="demo_v2_tiny", dataset="imagefolder",
                            num_classes=5, val_images=1900, epochs=12, seeds=[0], device="cpu",
                            device_name="x86_64", accuracy="final epoch, EMA weights")
    rows = [{"model": "m", "dataset": "d", "start": "pretrained", "top1": pretrained},
            {"model": "m", "dataset": "d", "start": "scratch", "top1": scratch}]
    return TransferResult(conditions, finetune_recipe="paper", steps=60, rows=rows)


def test_a_from_scratch_baseline_at_chance_makes_the_transfer_claim_no_signal():
    # 5 classes: chance 20%; 20.5% is within the binomial noise of chance on 1,900 images
    verdict = transfer_claim(transfer(60.0, 20.5)).verdict
    assert verdict.label == "no signal" and "from-scratch baseline is at chance" in verdict.why
    assert transfer_claim(transfer(60.0, 35.0)).verdict.label == "agrees"
