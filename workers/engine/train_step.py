"""One SGD step of the training loop, eager or replayed from a captured CUDA graph.

`TrainStep(x, y)` runs forward, cross-entropy, backward and `optimizer.step()` on one batch and
adds the batch's summed loss and correct count to two on-device meters (read once per epoch by
`take_meters`, so no step syncs with the host).

CUDA graph (`cuda_graph`, CUDA only). A small CIFAR model at batch 128 is bound by launching its
~600 kernels per step, not by the GPU's arithmetic (bench/step_probe.py on an H100: ResNet-56
21 ms per eager step, 6.8 ms replayed). So after `WARMUP_STEPS` eager steps (on a side stream,
as CUDA graph capture wants: lazy initialisation, cudnn autotuning, momentum buffers created) the
whole step is captured once for the full-batch shape and then replayed for every full batch: the
batch is copied into the graph's static input buffers, one launch runs the step. The maths is the
eager step's, kernel for kernel. What a captured graph needs and how it is kept true here:
- the step is captured with each param group's lr swapped for a device tensor, which the fused
  SGD kernel then reads at every replay; `sync_lr()` (after every scheduler step) copies the
  schedule's value, still a Python float everywhere else, into that tensor;
- gradients are the graph's own tensors after capture: a batch of another shape (the epoch's
  last, partial batch) runs eagerly and zeroes them in place instead of dropping them;
- the meters are tensors the graph adds into, zeroed in place by `take_meters`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WARMUP_STEPS = 3  # eager steps before capture (CUDA graph docs: warm up on a side stream first)


class TrainStep:
    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        device: torch.device,
        *,
        amp: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        self.model, self.optimizer, self.device, self.amp = model, optimizer, device, amp
        self.cuda_graph = cuda_graph and device.type == "cuda"
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        self.correct = torch.zeros((), dtype=torch.int64, device=device)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: tuple[Tensor, Tensor] | None = None
        self._key: tuple[Any, ...] | None = None  # shape and strides of the graphed batches
        self._warmed = 0
        self.capture_error: str | None = None  # why capture failed, if it did (the run went on eagerly)
        self._lr: list[Tensor] = []
        self.sync_lr()

    def sync_lr(self) -> None:
        """Copy each param group's lr (a Python float, as the scheduler and checkpoints keep it)
        into the device tensor the captured optimizer step reads; call after every scheduler step."""
        if not self.cuda_graph:
            return
        groups = self.optimizer.param_groups
        if not self._lr:  # float32: what the fused kernel does with a Python float lr too
            self._lr = [torch.zeros((), dtype=torch.float32, device=self.device) for _ in groups]
        for group, holder in zip(groups, self._lr, strict=True):
            holder.fill_(float(group["lr"]))

    def __call__(self, x: Tensor, y: Tensor) -> None:
        if not self.cuda_graph:
            self._eager(x, y)
            return
        with torch.cuda.device(self.device):  # streams and graphs belong to the run's GPU, not GPU 0
            self._graphed_call(x, y)

    def _graphed_call(self, x: Tensor, y: Tensor) -> None:
        key = (tuple(x.shape), x.stride(), tuple(y.shape), x.dtype, y.dtype)
        if self._key is None:
            self._key = key  # the first batch of a run is a full one (or the whole, small set)
        if key != self._key:
            self._eager(x, y)  # the last, partial batch of an epoch
        elif self._graph is not None:
            static_x, static_y = self._static  # type: ignore[misc]
            static_x.copy_(x)
            static_y.copy_(y)
            self._graph.replay()
        elif self._warmed < WARMUP_STEPS:
            self._warmed += 1
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                self._eager(x, y)
            torch.cuda.current_stream(self.device).wait_stream(side)
        elif self._capture():
            self._graphed_call(x, y)
        else:
            self._eager(x, y)  # capture failed: this run goes on eagerly (recorded)

    def take_meters(self) -> tuple[float, int]:
        """(summed loss, correct count) since the last call, then zeroed: the epoch's one host sync."""
        loss_sum, correct = self.loss_sum.item(), int(self.correct.item())
        self.loss_sum.zero_()
        self.correct.zero_()
        return loss_sum, correct

    @property
    def graphed(self) -> bool:
        return self._graph is not None

    def _eager(self, x: Tensor, y: Tensor) -> None:
        # after capture the gradients belong to the graph: zero them in place (0 + g == g exactly)
        self.optimizer.zero_grad(set_to_none=self._graph is None)
        self._step(x, y)

    def _step(self, x: Tensor, y: Tensor) -> None:
        with self._autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach() * y.shape[0]
        self.correct += (logits.detach().argmax(dim=1) == y).sum()

    def _capture(self) -> bool:
        """Capture the step into a graph; False (and `capture_error` set) if this model cannot be."""
        x_shape, x_stride, y_shape, x_dtype, y_dtype = self._key  # type: ignore[misc]
        static_x = torch.empty_strided(x_shape, x_stride, dtype=x_dtype, device=self.device)
        static_y = torch.empty(y_shape, dtype=y_dtype, device=self.device)
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates them in the graph's pool
        torch.cuda.synchronize(self.device)
        groups = self.optimizer.param_groups
        floats = [g["lr"] for g in groups]
        for group, holder in zip(groups, self._lr, strict=True):
            group["lr"] = holder  # captured: the fused kernel reads lr from this tensor at replay
        graph = self._new_graph()
        try:
            with torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device)):
                self._step(static_x, static_y)
        except RuntimeError as exc:  # an op that cannot be captured: run eagerly, say why
            self.capture_error = f"{type(exc).__name__}: {exc}"[:500]
            self.cuda_graph = False
            self.optimizer.zero_grad(set_to_none=True)
            torch.cuda.synchronize(self.device)
            return False
        finally:
            for group, value in zip(groups, floats, strict=True):
                group["lr"] = value  # eager steps, the scheduler and checkpoints keep floats
        self._graph, self._static = graph, (static_x, static_y)
        return True

    def _new_graph(self) -> torch.cuda.CUDAGraph:
        """The graph to capture into (a subclass registers the custom generators its step draws from)."""
        return torch.cuda.CUDAGraph()

    def close(self) -> None:
        """Release the graph and its memory pool (the gradients live there) when the run ends."""
        if self._graph is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self._graph.reset()
            self._graph = self._static = None

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp and self.device.type == "cuda":
            # no weight-cast cache: a graph must not keep casts from its capture (same values)
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16, cache_enabled=False)
        return contextlib.nullcontext()
