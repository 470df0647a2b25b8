"""Model registry of prunescape: `build_model`, `model_names`, `get_model_info`, `init_kaiming`.

Every classifier is the attribute `fc` except in the torchvision nets, which keep torchvision's
names (`fc` for ResNets and ShuffleNet, `classifier` for MobileNetV2 and AlexNet).
"""

from workers.engine.catalog import ModelInfo
from workers.engine.models.init import init_kaiming
from workers.engine.models.registry import build_model, get_model_info, load_weights, model_names

__all__ = [
    "ModelInfo",
    "build_model",
    "get_model_info",
    "init_kaiming",
    "load_weights",
    "model_names",
]
