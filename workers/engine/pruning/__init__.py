"""Structured (filter, L1) and unstructured (weight, L1) pruning. See docs/spec.md section 4."""

from workers.engine.pruning.layers import LayerInfo, prunable_layers
from workers.engine.pruning.plans import FLOPS_TOLERANCE
from workers.engine.pruning.structured import StructuredResult, prune_structured, prune_with_plan
from workers.engine.pruning.unstructured import (
    UnstructuredResult,
    make_permanent,
    prune_unstructured,
    weight_sparsity,
)

__all__ = [
    "FLOPS_TOLERANCE",
    "LayerInfo",
    "StructuredResult",
    "UnstructuredResult",
    "make_permanent",
    "prunable_layers",
    "prune_structured",
    "prune_unstructured",
    "prune_with_plan",
    "weight_sparsity",
]
