"""Horizontally fused grid training: B runs of one architecture trained as one model (SPEC section 8).

- `train_group(models, data, recipes, ...) -> list[TrainResult]` (fused/group.py): the solo
  `train()` for a group whose recipes differ only in lr, weight decay and seed.
- `FusedModel(models)` / `.write_back(models)` / `.split(like)` (fused/model.py): fuse same-architecture
  models into stacked tensors with one vmapped forward, and back into ordinary models.
- `FusedSGD` (fused/sgd.py): the study's SGD with a learning rate and weight decay per model.
- `FusedTrainStep` (fused/step.py): the fused step, CUDA-graphed like the solo one.
- `CastData` (fused/precision.py): batches in float64, for equivalence checks on the CPU.
"""

from workers.engine.fused.group import PER_MODEL_FIELDS, check_group_recipes, train_group
from workers.engine.fused.model import FusedModel, check_same_architecture, stack_inputs
from workers.engine.fused.precision import CastData, parse_dtype
from workers.engine.fused.sgd import FusedSGD, scheduled_lr
from workers.engine.fused.step import FusedTrainStep

__all__ = [
    "PER_MODEL_FIELDS",
    "CastData",
    "FusedModel",
    "FusedSGD",
    "FusedTrainStep",
    "check_group_recipes",
    "check_same_architecture",
    "parse_dtype",
    "scheduled_lr",
    "stack_inputs",
    "train_group",
]
