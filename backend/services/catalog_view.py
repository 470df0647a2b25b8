"""What a study may name, as the API serves it (GET /catalog): the models and data sets of the
torch-free engine catalog, the variant kinds, the FLOPs convention. The new-study page and the
command line read it, so the list of models exists once (workers/engine/catalog.py)."""

from __future__ import annotations

from typing import Any

from backend.spec import PRUNED_KINDS, QUANTISED_KINDS
from workers.engine.catalog import DATASETS, FLOPS_CONVENTION, MODELS


def catalog_view() -> dict[str, Any]:
    return {
        "models": [
            {
                "name": m.name,
                "input_shape": list(m.input_shape),
                "num_classes": m.num_classes,
                "family": m.family,
                "description": m.description,
                "min_side": m.min_side,
                "structured_pruning": m.no_structured_pruning is None,
                "no_structured_pruning": m.no_structured_pruning,
            }
            for m in MODELS.values()
        ],
        "datasets": [
            {
                "name": d.name,
                "input_shape": None if d.input_shape is None else list(d.input_shape),
                "num_classes": d.num_classes,
                "needs_path": d.needs_path,
                "layout": d.layout,
            }
            for d in DATASETS.values()
        ],
        "variant_kinds": ["base", *PRUNED_KINDS, *QUANTISED_KINDS],
        "flops_convention": FLOPS_CONVENTION,
    }
