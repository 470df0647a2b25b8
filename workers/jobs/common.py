"""Pieces every job shares: the study's data set (kept between runs), the model's shape, one run's
recipe, the rewind epoch, the prior point, and the masks that keep an unstructured variant sparse."""

from __future__ import annotations

import json
from typing import Any

from workers.jobs.inputs import RunInput

_data_cache: dict[str, Any] = {}


def get_data(inp: RunInput) -> Any:
    """The engine's Data for the run's dataset; the last one is kept (a worker runs many runs of
    one study in a row). The path is confined to this worker's data roots again (the study may
    have been stored before they changed) and the decoded size capped, both from the settings
    (`RunInput.data_roots`, `RunInput.max_dataset_bytes`)."""
    from workers.engine.data import DatasetSpec, load_dataset

    dataset, roots = inp.spec["dataset"], list(inp.data_roots)
    key = json.dumps([dataset, [str(r) for r in roots], inp.max_dataset_bytes], sort_keys=True)
    if key not in _data_cache:
        _data_cache.clear()
        _data_cache[key] = load_dataset(
            DatasetSpec.from_dict(dataset), roots=roots, max_bytes=inp.max_dataset_bytes
        )
    return _data_cache[key]


def model_shape(spec: dict[str, Any], data: Any) -> tuple[int, tuple[int, int, int]]:
    """(num_classes, input_shape) of the study's model: the spec's override, else the data's."""
    model = spec.get("model") or {}
    num_classes = model.get("num_classes") or data.num_classes
    input_shape = tuple(model.get("input_shape") or data.input_shape)
    return int(num_classes), input_shape  # type: ignore[return-value]


def recipe_for(inp: RunInput, *, epochs: int | None = None) -> Any:
    from backend.spec import RecipeSpec
    from workers.engine.training import Recipe

    recipe = RecipeSpec.model_validate(inp.spec.get("recipe") or {})
    values = recipe.to_recipe_dict(lr=float(inp.lr), weight_decay=float(inp.wd), seed=int(inp.seed))
    if epochs is not None:
        values["epochs"] = epochs
    return Recipe.from_dict(values)


def rewind_epoch_of(spec: dict[str, Any]) -> int | None:
    """The epoch whose base weights the study's rewind variants start from (one per study)."""
    epochs = sorted({v["rewind_epoch"] for v in spec.get("variants", []) if v.get("retrain") == "rewind"})
    return epochs[0] if epochs else None


def is_prior(inp: RunInput) -> bool:
    return inp.grid_i == 0 and inp.grid_j == 0 and inp.seed == 0


def attach_masks(model: Any) -> Any:
    """Attach `torch.nn.utils.prune` masks that keep the zero weights of every conv/linear at zero
    while retraining (an unstructured variant's sparsity pattern is its zero pattern)."""
    from torch.nn.utils import prune

    from workers.engine.pruning.unstructured import prunable_weight_modules

    for _, module in prunable_weight_modules(model):
        prune.custom_from_mask(module, "weight", mask=(module.weight.detach() != 0))
    return model
