"""The layers `torch.func.vmap` does not batch the way a fused group needs, and the template.

A fused forward is one model's forward run under `vmap` over stacked parameters (see
`fused/model.py`). Stock vmap batching rules cover everything in the registry's models (a conv
with a batched weight becomes a grouped conv, a linear a batched matmul; flatten, pad, cat,
chunk, view/transpose act per model) except:

- BatchNorm. Its stock rule normalises with a dummy weight and applies the affine part as two
  extra elementwise passes, and moves the running statistics through copies. Ours reshapes the
  activations (N, B, C, ...) to (N, B*C, ...) and runs one `F.batch_norm` over B*C channels with
  the stacked weight, bias and running statistics viewed as (B*C,): per-model statistics fall out
  of per-channel statistics, and the running statistics are updated in place in the stacked
  buffers. Its output is handed back through `_unsafe_view` (a reshape autograd does not treat as
  a view), so that a following in-place op does not make autograd copy the whole activation.
- Linear. vmap's rule adds the bias after a batched matmul; the solo `F.linear` is an addmm that
  adds it inside the product, which rounds differently. Ours is one `baddbmm` over the group,
  per model bit for bit the solo addmm on the CPU (forward and backward).
- Pooling modules. vmap's rules fold the group into the batch dimension (a copy into NCHW where
  the solo run is NHWC, or a slow per-model fallback for adaptive pooling); ours pool the
  (N, B*C, H, W) activations as they lie: pooling acts per channel.
- Dropout. vmap's randomness modes draw one mask for the batch from the global generator. A fused
  model must draw model k's mask from model k's own stream, in the op order of the solo run on
  the CPU (`empty_like(x).bernoulli_(1 - p)`, then `div_(1 - p)`, then `x * noise`), so that on
  the CPU it is bit for bit the solo mask. Each `FusedDropout` reads the group's per-model
  generators, a list the fused model owns.

Each rule is a `torch.autograd.Function` with a `vmap` staticmethod whose body is ordinary torch
ops on the physical (stacked) tensors, so autograd records and differentiates those ops; their
own `forward`/`backward` are never used (outside vmap they raise).

`template(model)` is the module whose forward runs under vmap: a copy of one member with pruning
hooks folded away (the fused model applies the stacked masks itself), every BatchNorm2d, Linear,
pooling and Dropout module replaced by the layers here, and in-place activations made
out-of-place (same values; an in-place op on a vmapped activation would make autograd copy the
tensor it is a view of).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from workers.engine.pruning.unstructured import make_permanent
from workers.engine.training import TrainingError

_PRUNING_HOOK_PREFIX = "torch.nn.utils.prune"


class _NotBatched(torch.autograd.Function):
    """Base of the rules: usable only under vmap (a fused model never calls them otherwise)."""

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("fused rules are differentiated through their vmap body")


class _BatchNormFn(_NotBatched):
    @staticmethod
    def forward(x, weight, bias, running_mean, running_var, training, momentum, eps):
        raise RuntimeError("_BatchNormFn runs only under vmap (a fused model's forward)")

    @staticmethod
    def vmap(info, in_dims, x, weight, bias, running_mean, running_var, training, momentum, eps):
        size = info.batch_size
        x_dim = in_dims[0]
        if x_dim is None:
            x = x.unsqueeze(1).expand(x.shape[0], size, *x.shape[1:])
        elif x_dim != 1:
            x = x.movedim(x_dim, 1)
        n, _, channels = x.shape[:3]
        flat = x.reshape(n, size * channels, *x.shape[3:])  # a view in the usual (N, B, C) layout

        def per_channel(t: Tensor | None, dim: int | None) -> Tensor | None:
            if t is None:
                return None
            return t.reshape(size * channels) if dim == 0 else t.repeat(size)

        stats = []
        for t, dim in ((running_mean, in_dims[3]), (running_var, in_dims[4])):
            if t is not None and (dim != 0 or not t.is_contiguous()):
                raise TrainingError("fused BatchNorm needs stacked, contiguous running statistics")
            stats.append(None if t is None else t.view(size * channels))  # updated in place
        out = F.batch_norm(
            flat,
            stats[0],
            stats[1],
            per_channel(weight, in_dims[1]),
            per_channel(bias, in_dims[2]),
            training,
            momentum,
            eps,
        )
        return torch.ops.aten._unsafe_view(out, x.shape), 1


class _DropoutFn(_NotBatched):
    @staticmethod
    def forward(x, p, generators):
        raise RuntimeError("_DropoutFn runs only under vmap (a fused model's forward)")

    @staticmethod
    def vmap(info, in_dims, x, p, generators):
        if in_dims[0] is None:
            x = x.unsqueeze(0).expand(info.batch_size, *x.shape)
        else:
            x = x.movedim(in_dims[0], 0)
        if len(generators) != info.batch_size:
            raise TrainingError(
                f"fused dropout has {len(generators)} generators for {info.batch_size} models"
            )
        if p == 1:
            return x * torch.zeros((), dtype=x.dtype, device=x.device), 0
        # the CPU solo op order (aten _dropout_impl): noise = empty_like(x).bernoulli_(1 - p); noise /= 1 - p
        noise = torch.stack(
            [
                torch.empty(x.shape[1:], dtype=x.dtype, device=x.device).bernoulli_(1 - p, generator=g)
                for g in generators
            ]
        )
        noise.div_(1 - p)
        return x * noise, 0


class _LinearFn(_NotBatched):
    @staticmethod
    def forward(x, weight, bias):
        raise RuntimeError("_LinearFn runs only under vmap (a fused model's forward)")

    @staticmethod
    def vmap(info, in_dims, x, weight, bias):
        size = info.batch_size
        x = x.unsqueeze(0).expand(size, *x.shape) if in_dims[0] is None else x.movedim(in_dims[0], 0)
        weight = weight.unsqueeze(0).expand(size, *weight.shape) if in_dims[1] is None else weight
        if bias is not None and in_dims[2] is None:
            bias = bias.unsqueeze(0).expand(size, *bias.shape)
        if x.dim() != 3:  # (B, N, F) is what classifiers see; anything else: the solo op per model
            return torch.stack(
                [
                    F.linear(*args)
                    for args in zip(x, weight, bias if bias is not None else [None] * size, strict=True)
                ]
            ), 0
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2)), 0
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2)), 0


class FusedLinear(nn.Module):
    """Linear as one batched addmm over the group (`baddbmm`: per model, bit for bit F.linear's
    addmm on the CPU, bias added inside the product; vmap's own rule adds it after)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight, self.bias = linear.weight, linear.bias

    def forward(self, x: Tensor) -> Tensor:
        return _LinearFn.apply(x, self.weight, self.bias)


class _ChannelwiseFn(_NotBatched):
    @staticmethod
    def forward(x, op):
        raise RuntimeError("_ChannelwiseFn runs only under vmap (a fused model's forward)")

    @staticmethod
    def vmap(info, in_dims, x, op):
        size = info.batch_size
        if in_dims[0] is None:
            x = x.unsqueeze(1).expand(x.shape[0], size, *x.shape[1:])
        elif in_dims[0] != 1:
            x = x.movedim(in_dims[0], 1)
        out = op(x.reshape(x.shape[0], size * x.shape[2], *x.shape[3:]))
        return torch.ops.aten._unsafe_view(out, (x.shape[0], size, x.shape[2], *out.shape[2:])), 1


class FusedPool(nn.Module):
    """A pooling module applied to the group's (N, B*C, H, W) activations as they lie: pooling acts
    per channel, so this is each model's pooling, in the solo run's memory layout (vmap's rule
    folds the group into the batch dimension instead, a copy into another layout)."""

    def __init__(self, pool: nn.Module) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        return _ChannelwiseFn.apply(x, self.pool)


_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class FusedBatchNorm2d(nn.Module):
    """BatchNorm2d whose forward, under vmap over stacked tensors, is one batch norm over B x C
    channels; the bookkeeping (`num_batches_tracked`, train/eval) is nn.BatchNorm2d's."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        if bn.momentum is None:
            # a cumulative average needs num_batches_tracked as a Python number in every step
            raise TrainingError("fusing a BatchNorm with momentum=None (cumulative average) is not supported")
        self.momentum, self.eps = float(bn.momentum), bn.eps
        self.track_running_stats = bn.track_running_stats
        self.weight, self.bias = bn.weight, bn.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            self.register_buffer(name, getattr(bn, name))
        self.train(bn.training)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        keep_stats = not self.training or self.track_running_stats
        return _BatchNormFn.apply(
            x,
            self.weight,
            self.bias,
            self.running_mean if keep_stats else None,
            self.running_var if keep_stats else None,
            use_batch_stats,
            self.momentum,
            self.eps,
        )


class FusedDropout(nn.Module):
    """Dropout drawing each fused model's mask from that model's generator (`generators[k]`)."""

    def __init__(self, p: float, generators: Sequence[torch.Generator]) -> None:
        super().__init__()
        self.p = p
        self.generators = generators  # the fused model's list: the group's order, shared by reference

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x  # as F.dropout: the input itself
        return _DropoutFn.apply(x, self.p, self.generators)


def has_foreign_hooks(module: nn.Module) -> bool:
    """Whether `module` has hooks other than torch.nn.utils.prune's (a fused forward would skip them)."""
    hooks = [
        *module._forward_hooks.values(),
        *module._forward_pre_hooks.values(),
        *module._backward_hooks.values(),
    ]
    return any(not type(h).__module__.startswith(_PRUNING_HOOK_PREFIX) for h in hooks)


@torch.no_grad()
def masked_weights_as_leaves(model: nn.Module) -> nn.Module:
    """`model` with the visible `weight` of every masked module (`torch.nn.utils.prune`) set to
    `weight_orig * weight_mask` outside autograd. The pruning hook leaves the product of its last
    forward there, a non-leaf tensor that `copy.deepcopy` refuses (a masked model that was not
    re-initialised: rewind or finetune retraining); the hook recomputes it at every forward."""
    for module in model.modules():
        if hasattr(module, "weight_mask") and hasattr(module, "weight_orig"):
            module.weight = module.weight_orig * module.weight_mask
    return model


def template(model: nn.Module, generators: Sequence[torch.Generator]) -> nn.Module:
    """The module a fused forward runs under vmap (see the module docstring); its own tensors live
    on the meta device: every parameter and buffer is supplied by the fused model."""
    for name, module in model.named_modules():
        if has_foreign_hooks(module):
            raise TrainingError(f"cannot fuse {type(model).__name__}: module {name or '(root)'!r} has hooks")
        if isinstance(module, nn.modules.dropout._DropoutNd) and type(module) is not nn.Dropout:
            raise TrainingError(f"cannot fuse {type(model).__name__}: {type(module).__name__} at {name!r}")
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and type(module) is not nn.BatchNorm2d:
            raise TrainingError(f"cannot fuse {type(model).__name__}: {type(module).__name__} at {name!r}")
    copied = make_permanent(copy.deepcopy(masked_weights_as_leaves(model))).to("meta")
    _replace(copied, generators)
    for module in copied.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    return copied


def _replace(parent: nn.Module, generators: Sequence[torch.Generator]) -> None:
    for name, child in parent.named_children():
        if type(child) is nn.BatchNorm2d:
            setattr(parent, name, FusedBatchNorm2d(child))
        elif type(child) in _POOLS and not getattr(child, "return_indices", False):
            setattr(parent, name, FusedPool(child))
        elif type(child) is nn.Linear:
            setattr(parent, name, FusedLinear(child))
        elif type(child) is nn.Dropout:
            setattr(parent, name, FusedDropout(child.p, generators))
        else:
            _replace(child, generators)
