"""How many runs one fused group may hold on a device: the `auto` of the worker's group size.

On CUDA the answer comes from memory, measured: a few fused training steps (and one evaluation
batch) of the run's model at group sizes 1 and 2 give the memory one more model costs and what a
group costs whatever its size; the group size is what fits in `SAFETY_MARGIN` of the device's free
memory, capped at `AUTO_GROUP_CAP`. The probe uses random batches of the run's shape (memory does
not depend on the values) and copies of the run's model (the run's own weights are untouched).

On the CPU the answer is one constant, `CPU_AUTO_GROUP_SIZE`, set from `bench/grid_throughput.py`.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from workers.engine.fused.model import FusedModel, stack_inputs
from workers.engine.fused.rules import FusedDropout, masked_weights_as_leaves
from workers.engine.fused.sgd import FusedSGD
from workers.engine.fused.step import FusedTrainStep
from workers.engine.training import Recipe

# The largest group bench/grid_throughput.py measures (groups 1, 3, 9, 27): beyond it the figures
# are not known, and one group's failure (a crash mid-epoch) would requeue that many runs.
AUTO_GROUP_CAP = 27
# CPU: off. On the loaded 2-core EPYC (docs/performance.md, "Fused grid training")
# `bench/grid_throughput.py --device cpu` (512 images) put fused groups of 3 and 9 at 0.77-0.88x
# solo images/s for digits_cnn and resnet20 on CIFAR-shaped images (oneDNN's grouped convolutions
# are slower than its plain ones), while the overhead-bound embedded digits demo ran 1.7-2.1x
# faster in groups of 5 and ~4x with its whole grid in one group. The lead's quiet-machine run
# of the bench sets this one constant (a CPU group also costs RAM: ~3x one run's for 3 runs).
CPU_AUTO_GROUP_SIZE = 1
SAFETY_MARGIN = 0.7  # of the free memory: the CUDA graph's pool, the allocator's fragmentation
PROBE_STEPS = 3  # the first step allocates the momentum buffers; the peak is reached by the third


def group_size_for_memory(
    peak_one: int, peak_two: int, free: int, *, margin: float = SAFETY_MARGIN, cap: int = AUTO_GROUP_CAP
) -> int:
    """The largest group whose extrapolated peak (`peak_one` + (n - 1) x the cost of one more model,
    the difference of the peaks of groups of 2 and 1, in bytes) fits in `margin` x `free` bytes;
    1 to `cap`."""
    per_model = peak_two - peak_one if peak_two > peak_one else max(peak_one, 1)
    fixed = max(peak_one - per_model, 0)
    budget = margin * free - fixed
    fits = math.floor(budget / per_model) if budget > 0 else 0
    return max(1, min(cap, fits))


def probe_steps(
    model: nn.Module,
    recipe: Recipe,
    input_shape: tuple[int, int, int],
    num_classes: int,
    size: int,
    device: torch.device,
) -> None:
    """`PROBE_STEPS` fused training steps of `size` copies of `model` (distinct batches: the
    larger case of the fused step), then one evaluation batch; everything is freed afterwards."""
    memory_format = torch.channels_last if recipe.channels_last else torch.contiguous_format
    source = masked_weights_as_leaves(model)  # deepcopy-able also when masked and not re-initialised
    models = [copy.deepcopy(source).to(device, memory_format=memory_format) for _ in range(size)]
    fused = FusedModel(models, device=device, memory_format=memory_format)
    optimizer = FusedSGD(
        fused.trainable(),
        lrs=[recipe.lr] * size,
        weight_decays=[recipe.weight_decay] * size,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
    )
    dropout = any(isinstance(m, FusedDropout) for m in fused.template.modules())
    step = FusedTrainStep(fused, optimizer, device, amp=recipe.amp, cuda_graph=False, dropout=dropout)
    try:
        batches = [torch.randn(recipe.batch_size, *input_shape, device=device) for _ in range(size)]
        x = stack_inputs(batches, memory_format)
        y = torch.randint(0, num_classes, (size, recipe.batch_size), device=device)
        for _ in range(PROBE_STEPS):
            step(x, y)
        del batches, x, y
        with torch.no_grad():
            fused.eval()
            x_eval = torch.randn(recipe.eval_batch_size, *input_shape, device=device)
            fused.logits(x_eval.contiguous(memory_format=memory_format))
    finally:
        step.close()


def probe_peak_bytes(
    model: nn.Module,
    recipe: Recipe,
    input_shape: tuple[int, int, int],
    num_classes: int,
    size: int,
    device: torch.device,
) -> int:
    """Peak CUDA bytes `probe_steps` allocates for a group of `size`."""
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    try:
        probe_steps(model, recipe, input_shape, num_classes, size, device)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    finally:
        torch.cuda.empty_cache()


def auto_group_size(
    model: nn.Module,
    recipe: Recipe,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: torch.device,
) -> int:
    """The `auto` group size for runs of `model` trained by `recipe` on `device` (module docstring)."""
    if device.type != "cuda":
        return CPU_AUTO_GROUP_SIZE
    try:
        one = probe_peak_bytes(model, recipe, input_shape, num_classes, 1, device)
        two = probe_peak_bytes(model, recipe, input_shape, num_classes, 2, device)
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return 1  # two do not fit: train alone
    torch.cuda.empty_cache()  # what the probe held is free again
    free, _ = torch.cuda.mem_get_info(device)
    return group_size_for_memory(one, two, free)
