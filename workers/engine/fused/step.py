"""One fused SGD step for B models, eager or replayed from a captured CUDA graph.

`FusedTrainStep` is `TrainStep` (workers/engine/train_step.py) with the group's step: the fused
forward gives each model's mean cross-entropy, their sum is backpropagated (d sum / d loss_k = 1,
so every model gets exactly its own gradient, and a NaN in one model's loss reaches no other
model), `FusedSGD.step` updates all models, and the meters are per model: (B,) summed losses and
correct counts, read once per epoch. Capture, warm-up, static input buffers and the eager partial
batch are TrainStep's. The lr needs no pinning for the graph (FusedSGD keeps it in a device
tensor); per-model CUDA dropout generators are registered with the graph so that each replay
draws fresh masks.
"""

from __future__ import annotations

import torch
from torch import Tensor

from workers.engine.fused.model import FusedModel
from workers.engine.fused.sgd import FusedSGD
from workers.engine.train_step import TrainStep


class FusedTrainStep(TrainStep):
    def __init__(
        self,
        model: FusedModel,
        optimizer: FusedSGD,
        device: torch.device,
        *,
        amp: bool = False,
        cuda_graph: bool = False,
        dropout: bool = False,
    ) -> None:
        super().__init__(model, optimizer, device, amp=amp, cuda_graph=cuda_graph)  # type: ignore[arg-type]
        self.size = model.size
        self.loss_sum = torch.zeros(self.size, dtype=torch.float64, device=device)
        self.correct = torch.zeros(self.size, dtype=torch.int64, device=device)
        self.dropout = dropout  # whether the step draws from the group's dropout generators

    def sync_lr(self) -> None:
        """Nothing to copy: FusedSGD.set_lr writes the tensor the captured step reads."""

    def _step(self, x: Tensor, y: Tensor) -> None:
        with self._autocast():
            losses, logits = self.model(x, y)
        losses.sum().backward()
        self.optimizer.step()
        self.loss_sum += losses.detach() * y.shape[-1]
        labels = y if y.dim() == 2 else y.expand(self.size, -1)
        self.correct += (logits.detach().argmax(dim=2) == labels).sum(dim=1)

    def take_meters(self) -> tuple[list[float], list[int]]:  # type: ignore[override]
        """Per model (summed loss, correct count) since the last call, then zeroed (one host sync)."""
        loss_sum, correct = self.loss_sum.tolist(), [int(c) for c in self.correct.tolist()]
        self.loss_sum.zero_()
        self.correct.zero_()
        return loss_sum, correct

    def _new_graph(self) -> torch.cuda.CUDAGraph:
        graph = super()._new_graph()
        if self.dropout:
            for generator in self.model.generators:  # type: ignore[attr-defined]
                graph.register_generator_state(generator)
        return graph
