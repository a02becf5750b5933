"""torchvision weights map onto our modules exactly: the proof that the architectures are right."""

import urllib.error

import pytest
import torch
import torchvision

import effnetv2_mini.compat as compat
from effnetv2_mini import from_torchvision
from effnetv2_mini.compat import load_torchvision_pretrained, torchvision_key_map


def randomized(tv_name, **kwargs):
    """A torchvision model with random weights *and* non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(tv_name, **kwargs)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.normal_(0, 0.2)
    return model.eval()


@pytest.mark.parametrize(
    "tv_name, ours, size",
    [("efficientnet_v2_s", "efficientnetv2_s", 96), ("efficientnet_v2_m", "efficientnetv2_m", 64),
     ("efficientnet_b0", "efficientnet_b0", 96)],
)
def test_eval_logits_equal_torchvision(tv_name, ours, size):
    tv = randomized(tv_name)
    model = from_torchvision(tv).eval()
    assert model.config.name == ours  # found by trying the candidates
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected, got = tv(x), model(x)
    assert expected.abs().max() > 0.05  # the comparison is not between two near-zero outputs
    assert (expected - got).abs().max().item() < 1e-4


def test_training_gradients_equal_torchvision():
    tv = randomized("efficientnet_v2_s", stochastic_depth_prob=0.0, dropout=0.0).train()
    model = from_torchvision(tv, drop_path_rate=0.0).train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([3, 7])
    for m in (tv, model):
        torch.nn.functional.cross_entropy(m(x), y).backward()
    theirs = dict(tv.named_parameters())
    key_map = torchvision_key_map(model)
    worst = max((p.grad - theirs[key_map[n]].grad).abs().max().item() for n, p in model.named_parameters())
    assert worst < 1e-5


def test_every_tensor_is_mapped_once():
    tv = torchvision.models.efficientnet_b0()
    model = from_torchvision(tv, "efficientnet_b0")
    key_map = torchvision_key_map(model)
    assert set(key_map) == set(model.state_dict())
    assert sorted(key_map.values()) == sorted(tv.state_dict())


def test_torchvision_bn_eps_is_carried_over():
    assert from_torchvision(torchvision.models.efficientnet_b0()).config.bn_eps == 1e-5  # torchvision's B0..B4
    assert from_torchvision(torchvision.models.efficientnet_v2_s()).config.bn_eps == 1e-3


def test_mismatched_architecture_is_refused_naming_the_layer():
    tv = torchvision.models.efficientnet_v2_s()
    with pytest.raises(ValueError) as error:
        from_torchvision(tv, "efficientnetv2_m")
    message = str(error.value)
    assert "efficientnetv2_m" in message and "stages." in message and "features." in message


def test_offline_download_gives_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    for load in (load_torchvision_pretrained, from_torchvision):  # by name through either entry point
        with pytest.raises(RuntimeError) as error:
            load("efficientnetv2_s")
        message = str(error.value)
        assert "efficientnet_v2_s" in message and "checkpoints" in message and "offline" in message


def test_pretrained_weights_map_when_the_download_works(monkeypatch):
    real_get_model = torchvision.models.get_model

    def fake_download(name, weights=None, progress=True):  # what torchvision returns once the file is there
        assert weights is not None and name == "efficientnet_v2_s"
        return real_get_model(name)

    monkeypatch.setattr(torchvision.models, "get_model", fake_download)
    model = from_torchvision("EfficientNet_V2_S")
    assert model.config.name == "efficientnetv2_s"


def test_pretrained_is_refused_for_models_torchvision_lacks():
    with pytest.raises(ValueError, match="no weights for efficientnetv2_xl"):
        compat.load_torchvision_pretrained("efficientnetv2_xl")
