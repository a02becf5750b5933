"""effnetv2-mini: a small, readable PyTorch reproduction of EfficientNetV2 (Tan & Le, ICML 2021)."""

from .paper.configs import ModelConfig, StageArgs, decode_arch, encode_arch, get_config, list_models

__version__ = "0.1.0"

__all__ = [
    "EfficientNet",
    "ModelConfig",
    "StageArgs",
    "build_model",
    "decode_arch",
    "encode_arch",
    "get_config",
    "list_models",
    "from_torchvision",
    "load_torchvision_pretrained",
    "count_params",
    "count_macs",
    "experiments",
    "__version__",
]


# keep `import effnetv2_mini` light: torch and torchvision are imported only when needed
def __getattr__(name):
    if name == "EfficientNet":
        from .paper.model import EfficientNet

        return EfficientNet
    if name == "build_model":  # the paper's networks and torchvision's ResNets of Table 12
        from .models import build_model

        return build_model
    if name in ("from_torchvision", "load_torchvision_pretrained"):
        from . import compat

        return getattr(compat, name)
    if name in ("count_params", "count_macs"):
        from . import measure

        return getattr(measure, name)
    # `from effnetv2_mini import experiments`: the paper's experiments, one function each
    if name == "experiments":
        from .study import experiments

        return experiments
    raise AttributeError(f"module 'effnetv2_mini' has no attribute {name!r}")
