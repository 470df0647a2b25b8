"""One model registry: names -> builders, input checks, local weights.

The names and their default input shapes live in the torch-free `catalog.MODELS`; this module adds
the builders. Structure and weights are separate: `build_model` makes a freshly initialised module
and only loads weights from a local state_dict file when asked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from workers.engine.catalog import MODELS, ModelInfo
from workers.engine.errors import ModelError
from workers.engine.models import cifar_resnet
from workers.engine.models.digits_cnn import digits_cnn
from workers.engine.models.mobilenetv2_cifar import mobilenetv2_cifar
from workers.engine.models.torchvision_nets import BUILDERS as TORCHVISION_BUILDERS
from workers.engine.models.torchvision_nets import build_torchvision

# Builders taking (num_classes, in_channels).
_BUILDERS: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet20": cifar_resnet.resnet20,
    "resnet32": cifar_resnet.resnet32,
    "resnet44": cifar_resnet.resnet44,
    "resnet56": cifar_resnet.resnet56,
    "resnet110": cifar_resnet.resnet110,
    "mobilenetv2_cifar": mobilenetv2_cifar,
    "digits_cnn": digits_cnn,
}
for _name in TORCHVISION_BUILDERS:
    _BUILDERS[_name] = lambda num_classes, in_channels, _name=_name: build_torchvision(
        _name, num_classes, in_channels
    )

assert set(_BUILDERS) == set(MODELS), "catalog and registry disagree"


def model_names() -> list[str]:
    return list(MODELS)


def get_model_info(name: str) -> ModelInfo:
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"model: unknown name {name!r}; known: {', '.join(MODELS)}") from None


def _check_input_shape(name: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelError(f"model {name}: input_shape must be (C, H, W) positive integers, got {shape}")
    channels, height, width = shape
    minimum = MODELS[name].min_side
    if height < minimum or width < minimum:
        raise ModelError(
            f"model {name}: input {height}x{width} is too small for the architecture; "
            f"it needs at least {minimum}x{minimum}"
        )
    return channels, height, width


def load_weights(model: nn.Module, weights_path: str | os.PathLike[str]) -> None:
    """Load a local state_dict strictly; any mismatch names the file and the first bad key."""
    path = Path(weights_path)
    if not path.is_file():
        raise ModelError(f"weights_path: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelError(f"weights_path: {path} is not a readable torch state_dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelError(f"weights_path: {path} holds a {type(state).__name__}, not a state_dict")

    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ModelError(f"weights_path: {path} does not fit the model: missing key {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ModelError(
                f"weights_path: {path} does not fit the model: key {key!r} has shape "
                f"{tuple(state[key].shape)}, the model expects {tuple(tensor.shape)}"
            )
    for key in state:
        if key not in expected:
            raise ModelError(f"weights_path: {path} does not fit the model: unexpected key {key!r}")
    model.load_state_dict(state, strict=True)


def build_model(
    name: str,
    *,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    weights_path: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """A freshly initialised model (the builder's own init), optionally with local weights."""
    info = get_model_info(name)
    classes = info.num_classes if num_classes is None else num_classes
    if not isinstance(classes, int) or classes < 1:
        raise ModelError(f"model {name}: num_classes must be a positive integer, got {classes!r}")
    channels, _, _ = _check_input_shape(name, info.input_shape if input_shape is None else input_shape)
    model = _BUILDERS[name](classes, channels)
    if weights_path is not None:
        load_weights(model, weights_path)
    return model
