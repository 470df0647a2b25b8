"""B models of one architecture as one fused model, and back (`fuse` / `FusedModel.write_back` / `split`).

Why vmap over stacked parameters, not a rewritten module. HFTA rewrites every layer into its
fused form (grouped conv, BN over B x C, grouped 1x1 conv for linear) and keeps activations as
(N, B*C, H, W). That breaks every functional op of a forward that acts on the channel dimension:
ShuffleNetV2's chunk / cat / channel shuffle, the option-A shortcut's zero channel padding,
flatten before a classifier. Here one member's own forward runs under `torch.func.vmap` with
`functional_call` over the stacked (B, ...) parameters and buffers: the conv batching rule *is*
the grouped conv (and a conv whose input is shared by all models one conv with B x O outputs),
linear becomes a batched matmul, and functional glue acts per model with no code of ours.
Activations stay in the grouped layout (N, B, C, H, W) = (N, B*C, H, W) between convs, so there
is no transpose per layer. BatchNorm and Dropout have rules of our own (`fused/rules.py`).
Autograd records the physical ops, so backward is one grouped backward, not B of them. The
fused rules and the per-model loss make the fused computation, on the CPU in float64, bit for bit
the solo runs' for the registry's CIFAR nets (channels_last or not) and the torchvision nets in
NCHW (tests/engine/test_fused_*.py).

Stacked layout: parameter `name` of model k is `stacked[name][k]`; conv weights are stacked in the
run's memory format (channels_last: each model's slice is an NHWC weight, and B x O merges into
the grouped conv's weight as a view). Unstructured variants keep `weight_orig` and `weight_mask`
stacked and compute `weight = weight_orig * weight_mask` before every forward, exactly what the
pruning hook of a solo run does, so gradients reach `weight_orig` through the mask.

Inputs: a batch shared by every model (the runs share a seed) is (N, C, H, W) and goes to the
first conv unbatched; per-model batches are stacked as (N, B, C, H, W) (`stack_inputs`), labels
as (B, N). `FusedModel(x, y)` returns each model's mean cross-entropy (B,), computed outside vmap
by the solo op on that model's logits, and the logits (B, N, K).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from workers.engine.fused.rules import has_foreign_hooks, template
from workers.engine.training import TrainingError

_ORIG, _MASK = "_orig", "_mask"


def _architecture(model: nn.Module) -> tuple:
    """What must agree for models to be fused: modules (type, settings, hooks) and tensors (name,
    shape, dtype, trainable). Devices may differ: the stacked tensors go to the group's device."""
    modules = tuple(
        (name, type(m).__name__, m.extra_repr(), has_foreign_hooks(m)) for name, m in model.named_modules()
    )
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, getattr(t, "requires_grad", False))
        for name, t in [*model.named_parameters(), *model.named_buffers()]
    )
    return modules, tensors


def check_same_architecture(models: Sequence[nn.Module]) -> None:
    """Raise TrainingError unless every model has the first one's modules and tensor shapes."""
    if not models:
        raise TrainingError("a fused group needs at least one model")
    first = _architecture(models[0])
    for index, model in enumerate(models[1:], start=1):
        other = _architecture(model)
        if other == first:
            continue
        for kind, a, b in (("module", first[0], other[0]), ("tensor", first[1], other[1])):
            for x, y in zip(a, b, strict=False):
                if x != y:
                    raise TrainingError(
                        f"model {index} differs from model 0 in {kind} {y} vs {x}: cannot fuse"
                    )
        raise TrainingError(
            f"model {index} has a different number of modules or tensors than model 0: cannot fuse"
        )


def stack_tensors(
    tensors: Sequence[Tensor], memory_format: torch.memory_format, device: torch.device
) -> Tensor:
    """Per-model tensors as one (B, ...) tensor on `device` (detached); 4-d ones in `memory_format`."""
    if tensors[0].dim() == 4 and memory_format == torch.channels_last:
        # physical (B, O, kh, kw, C): model k's slice is an NHWC conv weight
        return torch.stack([t.detach().to(device).permute(0, 2, 3, 1) for t in tensors]).permute(
            0, 1, 4, 2, 3
        )
    return torch.stack([t.detach().to(device) for t in tensors])


def stack_inputs(batches: Sequence[Tensor], memory_format: torch.memory_format) -> Tensor:
    """Per-model batches (N, C, H, W) as one (N, B, C, H, W) tensor laid out as the grouped conv
    reads it: (N, B*C, H, W), NHWC for channels_last (physically (N, H, W, B, C))."""
    if batches[0].dim() == 4 and memory_format == torch.channels_last:
        return torch.stack([b.permute(0, 2, 3, 1) for b in batches], dim=3).permute(0, 3, 4, 1, 2)
    return torch.stack(batches, dim=1)


class FusedModel:
    """The stacked tensors of B same-architecture models and their fused forward (module docstring)."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        device: torch.device | str | None = None,
        memory_format: torch.memory_format = torch.contiguous_format,
        generators: Sequence[torch.Generator] | None = None,
    ) -> None:
        check_same_architecture(models)
        first = next(iter(models[0].parameters()), None)
        self.device = (
            torch.device(device)
            if device is not None
            else (first.device if first is not None else torch.device("cpu"))
        )
        self.size = len(models)
        self.memory_format = memory_format
        # dropout streams, one per model: their states are the caller's (fused/group.py keeps them)
        self.generators = (
            list(generators) if generators is not None else [torch.Generator(self.device) for _ in models]
        )
        if len(self.generators) != self.size:
            raise TrainingError(f"{len(self.generators)} dropout generators for {self.size} models")
        self.template = template(models[0], self.generators)
        named = [dict(m.named_parameters()) for m in models]
        self.param_names = list(named[0])
        self.params = {}
        for name in self.param_names:
            stacked = stack_tensors([n[name] for n in named], memory_format, self.device)
            self.params[name] = stacked.requires_grad_(named[0][name].requires_grad)
        buffers = [dict(m.named_buffers()) for m in models]
        self.buffers = {
            name: stack_tensors([b[name] for b in buffers], memory_format, self.device) for name in buffers[0]
        }
        # unstructured masks: the template computes with `prefix.weight`, the group keeps orig and mask
        self._masked = {
            name[: -len(_ORIG)]: (name, name[: -len(_ORIG)] + _MASK)
            for name in self.param_names
            if name.endswith(_ORIG) and name[: -len(_ORIG)] + _MASK in self.buffers
        }
        self._batched = {}  # the vmapped forward, for a shared and for a per-model input
        self.train()

    # ---- state

    def trainable(self) -> list[Tensor]:
        """The stacked parameters the optimizer updates, in the models' `parameters()` order."""
        return [p for p in self.params.values() if p.requires_grad]

    def train(self, mode: bool = True) -> FusedModel:
        self.template.train(mode)
        return self

    def eval(self) -> FusedModel:
        return self.train(False)

    @torch.no_grad()
    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy model k's slice of every stacked tensor into `models[k]` (same architecture)."""
        if len(models) != self.size:
            raise TrainingError(f"write_back got {len(models)} models for a group of {self.size}")
        for k, model in enumerate(models):
            targets = {**dict(model.named_parameters()), **dict(model.named_buffers())}
            for name, stacked in (*self.params.items(), *self.buffers.items()):
                targets[name].copy_(stacked[k])
            for module in model.modules():  # the visible masked weight, as init_kaiming keeps it
                if hasattr(module, "weight_mask") and hasattr(module, "weight_orig"):
                    module.weight = module.weight_orig * module.weight_mask

    def split(self, like: nn.Module) -> list[nn.Module]:
        """B ordinary models: copies of `like` (a member, masks attached or not) holding each
        model's tensors, on this group's device, ready for `save_model` as after a solo run."""
        models = [copy.deepcopy(like).to(self.device) for _ in range(self.size)]
        self.write_back(models)
        for model in models:
            model.to(memory_format=torch.contiguous_format)
        return models

    # ---- forward

    def _functional_state(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        params = {
            name: p
            for name, p in self.params.items()
            if not name.endswith(_ORIG) or name[: -len(_ORIG)] not in self._masked
        }
        buffers = {
            name: b
            for name, b in self.buffers.items()
            if not name.endswith(_MASK) or name[: -len(_MASK)] not in self._masked
        }
        for visible, (orig, mask) in self._masked.items():
            params[visible] = (
                self.params[orig] * self.buffers[mask]
            )  # the pruning hook's weight_orig * weight_mask
        return params, buffers

    def _vmapped(self, batched_input: bool):
        if batched_input not in self._batched:
            model = self.template

            def forward(params, buffers, x):
                return functional_call(model, (params, buffers), (x,))

            x_dim = 1 if batched_input else None
            self._batched[batched_input] = vmap(
                forward, in_dims=(0, 0, x_dim), out_dims=0, randomness="error"
            )
        return self._batched[batched_input]

    def __call__(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(mean cross-entropy per model (B,), logits (B, N, K)) of one training batch: x shared
        (N, C, H, W) with y (N,), or per model (N, B, C, H, W) with y (B, N). Each model's loss is
        the solo run's op on its own logits (vmap's cross-entropy rounds its backward differently)."""
        batched = self._check_batch(x, y)
        params, buffers = self._functional_state()
        logits = self._vmapped(batched)(params, buffers, x).contiguous()
        labels = y.unbind(0) if batched else [y] * self.size
        losses = torch.stack([F.cross_entropy(z, t) for z, t in zip(logits.unbind(0), labels, strict=True)])
        return losses, logits

    def logits(self, x: Tensor) -> Tensor:
        """(B, N, K) logits of one input batch shared by every model (evaluation)."""
        params, buffers = self._functional_state()
        return self._vmapped(False)(params, buffers, x)

    def _check_batch(self, x: Tensor, y: Tensor) -> bool:
        batched = y.dim() == 2
        if batched and (x.dim() < 2 or x.shape[1] != self.size or y.shape[0] != self.size):
            raise TrainingError(
                f"per-model batches must be (N, {self.size}, ...) with labels ({self.size}, N), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        return batched
