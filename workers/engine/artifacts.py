"""Saving and loading (pruned) models without pickling classes, and their sparse size.

The artefact is a `torch.save`d dict of plain types only (loadable with `weights_only=True`):

    {"format": "prunescape-model", "version": 1, "model_name", "num_classes", "input_shape",
     "dtype", "meta", "shapes": {module: {kind, in, out, groups}}, "state_dict"}

`load_model` rebuilds the base architecture with `models.build_model`, resizes every conv / BN /
linear whose stored shape differs (a structurally pruned layer, depthwise groups included) and
loads the state_dict strictly, so the caller never does class surgery.
"""

from __future__ import annotations

import copy
import os
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.engine.errors import ModelError
from workers.engine.models import build_model
from workers.engine.pruning.unstructured import make_permanent

FORMAT = "prunescape-model"
VERSION = 1
# Keys load_model adds to the returned meta; a caller's meta may not use them.
_RESERVED_META = ("model_name", "num_classes", "input_shape")


def _module_shapes(model: nn.Module) -> dict[str, dict[str, Any]]:
    shapes: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            shapes[name] = {
                "kind": "conv",
                "in": module.in_channels,
                "out": module.out_channels,
                "groups": module.groups,
            }
        elif isinstance(module, nn.BatchNorm2d):
            shapes[name] = {"kind": "bn", "in": module.num_features, "out": module.num_features, "groups": 1}
        elif isinstance(module, nn.Linear):
            shapes[name] = {
                "kind": "linear",
                "in": module.in_features,
                "out": module.out_features,
                "groups": 1,
            }
    return shapes


def save_model(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    model_name: str,
    num_classes: int,
    input_shape: Sequence[int],
    meta: Mapping[str, Any] | None = None,
) -> int:
    """Write `model` atomically (temporary file + os.replace) and return the bytes written.

    Attached unstructured-pruning masks are folded into a copy first: the artefact holds the
    weights the model computes with. `meta` must hold plain values (str, numbers, lists, dicts).
    """
    meta = dict(meta or {})
    for key in _RESERVED_META:
        if key in meta:
            raise ModelError(f"meta[{key!r}]: reserved; it is stored from the save_model argument")
    if any(hasattr(m, "weight_mask") for m in model.modules()):
        model = make_permanent(copy.deepcopy(model))
    first = next(model.parameters(), None)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "model_name": model_name,
        "num_classes": int(num_classes),
        "input_shape": [int(d) for d in input_shape],
        "dtype": str(first.dtype).removeprefix("torch.") if first is not None else "float32",
        "meta": meta,
        "shapes": _module_shapes(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target.stat().st_size


def _resized(module: nn.Module, shape: Mapping[str, Any]) -> nn.Module:
    """A module like `module` (same geometry, eps, bias...) with the stored channel counts."""
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(
            shape["in"],
            shape["out"],
            module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=shape["groups"],
            bias=module.bias is not None,
            padding_mode=module.padding_mode,
        )
    if isinstance(module, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            shape["out"],
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
        )
    return nn.Linear(shape["in"], shape["out"], bias=module.bias is not None)


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by `save_model`; returns (model, meta) where meta is the caller's meta
    plus `model_name`, `num_classes` and `input_shape`. The model is on the CPU in eval mode."""
    source = Path(path)
    if not source.is_file():
        raise ModelError(f"model artefact {source} does not exist")
    try:
        payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ModelError(f"model artefact {source} is not readable ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"model artefact {source} is not a {FORMAT} file")
    if payload.get("version") != VERSION:
        raise ModelError(f"model artefact {source} has version {payload.get('version')}, expected {VERSION}")

    input_shape = tuple(payload["input_shape"])
    model = build_model(payload["model_name"], num_classes=payload["num_classes"], input_shape=input_shape)
    modules = dict(model.named_modules())
    built_shapes = _module_shapes(model)
    for name, shape in payload["shapes"].items():
        if name not in built_shapes:
            raise ModelError(f"model artefact {source}: module {name!r} is not in {payload['model_name']}")
        if built_shapes[name] != shape:
            _replace(model, name, _resized(modules[name], shape))
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"model artefact {source} does not fit {payload['model_name']}: {exc}") from exc
    model.to(getattr(torch, payload["dtype"]))
    model.eval()
    meta = dict(payload["meta"])
    meta.update(model_name=payload["model_name"], num_classes=payload["num_classes"], input_shape=input_shape)
    return model, meta


def sparse_size_bytes(model: nn.Module) -> int:
    """Bytes of a compressed sparse encoding of the model's state (masks folded in).

    Encoding, per state_dict entry in order: its name (UTF-8) and shape (int64s), then for a
    floating-point tensor a bitmap of its non-zero positions (1 bit per element, numpy.packbits)
    followed by the non-zero values in their own dtype; other tensors (BN's num_batches_tracked)
    raw. The concatenation is zlib-compressed (level 9) and its length returned. Dense storage
    keeps every zero; this is what unstructured sparsity saves.
    """
    if any(hasattr(m, "weight_mask") for m in model.modules()):
        model = make_permanent(copy.deepcopy(model))
    chunks: list[bytes] = []
    for name, tensor in model.state_dict().items():
        values = tensor.detach().cpu().contiguous()
        chunks.append(name.encode())
        chunks.append(np.asarray(values.shape, dtype=np.int64).tobytes())
        if values.is_floating_point():
            flat = values.flatten()
            nonzero = flat != 0
            chunks.append(np.packbits(nonzero.numpy()).tobytes())
            chunks.append(flat[nonzero].view(torch.uint8).numpy().tobytes())
        else:
            chunks.append(values.numpy().tobytes())
    return len(zlib.compress(b"".join(chunks), 9))
