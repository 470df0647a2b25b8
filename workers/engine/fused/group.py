"""`train_group`: several runs of one architecture and recipe trained as one fused model.

Each run keeps what makes it the run it is (SPEC section 8): its He init (`torch.manual_seed(seed)`
then `init_kaiming`, as `train()` does), its data order and augmentation (a CPU generator seeded
with its seed), its dropout masks (a generator holding the torch RNG state right after its init:
the stream its solo run's dropout draws from), its lr and weight decay. Runs whose data
generators are in the same state (same seed, same epoch) share one batch per step, fed to every
model; otherwise each model gets its own batch and the batches are stacked. Milestones, momentum,
batch size, epochs, augmentation and the speed switches are the group's: recipes may differ only
in lr, weight_decay and seed (`check_group_recipes`).

The loop is `train()`'s, per member: an epoch of fused steps (`FusedTrainStep`, CUDA-graphed like
the solo step), per-model evaluation, then for each member in order: its EpochMetrics, divergence
(a non-finite train loss), its checkpoint, its snapshot, `on_epoch(i, metrics)` and
`should_stop(i)` (not after its last epoch). A member that diverges, is cancelled or is done
leaves the group: the others are fused again without it, so its weights stop changing exactly
where the solo run's would, and nothing of it reaches the others.

Checkpoints are per member and in the solo format (`training._save`): `checkpoint_paths[i]` is
written after each epoch with that run's model, SGD state (its momentum buffers), MultiStepLR
state, data generator and dropout RNG state. A member resumes from its file (or a solo run from
the file a group wrote), members may resume at different epochs, and on the CPU a resumed group
finishes bit for bit as an uninterrupted one.

Results: one `TrainResult` per model, as `train()` returns it; `seconds` are the wall times of the
epochs it trained in (shared with the group), `optimizer` is "sgd-group-fused" (or -foreach:
the kernel solo SGD uses there), and `fast_path` adds `fused: True` and `group_size` (the most
models it shared steps with in this call; 0 when it trained no epoch here, e.g. resumed already
finished). `torch.compile` is not supported (a TrainingError: train such runs one by one).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from workers.engine.checkpoint import save_atomic
from workers.engine.data import Data
from workers.engine.fused.model import FusedModel, check_same_architecture, stack_inputs, stack_tensors
from workers.engine.fused.precision import CastData, parse_dtype
from workers.engine.fused.rules import FusedDropout
from workers.engine.fused.sgd import FusedSGD, scheduled_lr, sgd_implementation
from workers.engine.fused.step import FusedTrainStep
from workers.engine.models import init_kaiming
from workers.engine.training import (
    EpochMetrics,
    Recipe,
    Status,
    TrainingError,
    TrainResult,
    _autocast,
    _check_snapshot_args,
    _resume,
    _save,
    _Stateful,
    cpu_malloc_cache,
    eval_sums,
    fast_path,
    make_optimizer,
    milestone_epochs,
    pick_device,
)

PER_MODEL_FIELDS = ("lr", "weight_decay", "seed")
PathLike = str | os.PathLike[str]


def check_group_recipes(recipes: Sequence[Recipe]) -> None:
    """Raise TrainingError unless the recipes differ only in lr, weight_decay and seed."""
    if not recipes:
        raise TrainingError("a fused group needs at least one recipe")
    for index, recipe in enumerate(recipes):
        if not isinstance(recipe, Recipe):
            raise TrainingError(f"recipes[{index}] must be a Recipe, got {type(recipe).__name__}")
    first = recipes[0].to_dict()
    for index, recipe in enumerate(recipes[1:], start=1):
        other = recipe.to_dict()
        differing = sorted(k for k in first if k not in PER_MODEL_FIELDS and first[k] != other[k])
        if differing:
            details = ", ".join(f"{k}: {other[k]!r} vs {first[k]!r}" for k in differing)
            raise TrainingError(
                f"recipes[{index}] differs from recipes[0] in {details}; a fused group shares every "
                f"recipe field but {', '.join(PER_MODEL_FIELDS)}"
            )
    if recipes[0].compile:
        raise TrainingError("recipe.compile is not supported by fused training; train these runs one by one")


@dataclass
class _Member:
    index: int
    model: nn.Module
    recipe: Recipe
    generator: torch.Generator  # data order and augmentation, as the solo run's
    dropout: torch.Generator  # the solo run's torch RNG stream after its init
    checkpoint: Path | None
    snapshot: tuple[int, Path] | None
    identity: Mapping[str, Any] | None = None  # the solo run's checkpoint identity
    history: list[EpochMetrics] = field(default_factory=list)
    state: str = "running"
    momentum: list[Tensor] | None = None  # between fused phases, and after a resume
    group_size: int = 0

    @property
    def training(self) -> bool:
        return self.state == "running" and len(self.history) < self.recipe.epochs


def _rng_after_init(device: torch.device) -> torch.Generator:
    """A generator in the state the process RNG has now (the solo run's dropout stream)."""
    if device.type == "cuda":
        generator = torch.Generator(device)
        generator.set_state(torch.cuda.get_rng_state(device))
    else:
        generator = torch.Generator()
        generator.set_state(torch.get_rng_state())
    return generator


def _solo_state(member: _Member, device: torch.device) -> _Stateful:
    """The solo run's optimizer and scheduler for this member's model, as train() builds them."""
    optimizer, _ = make_optimizer(member.model, member.recipe)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestone_epochs(member.recipe), gamma=member.recipe.gamma
    )
    return _Stateful(member.model, optimizer, scheduler, member.generator, device)


def _trainable(model: nn.Module) -> list[Tensor]:
    return [p for p in model.parameters() if p.requires_grad]


def _resume_member(member: _Member, device: torch.device) -> None:
    run = _solo_state(member, device)
    member.history, member.state = _resume(member.checkpoint, member.recipe, run, member.identity)
    # _resume restored the run's RNG into the process: that is this member's dropout stream
    member.dropout.set_state(
        torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()
    )
    buffers = [run.optimizer.state.get(p, {}).get("momentum_buffer") for p in _trainable(member.model)]
    member.momentum = None if any(b is None for b in buffers) else buffers


def _save_member(member: _Member, device: torch.device, optimizer: FusedSGD, position: int) -> None:
    run = _solo_state(member, device)
    with warnings.catch_warnings():  # stepped to the epoch without optimizer.step(): only its state is wanted
        warnings.simplefilter("ignore", UserWarning)
        for _ in member.history:
            run.scheduler.step()
    params = _trainable(member.model)
    # momentum 0: SGD keeps None
    buffers = [b[position].clone() for b in optimizer.buffers] if optimizer.buffers else [None] * len(params)
    for param, buffer in zip(params, buffers, strict=True):
        run.optimizer.state[param]["momentum_buffer"] = buffer
    rng = (
        (torch.get_rng_state(), member.dropout.get_state())
        if device.type == "cuda"
        else (member.dropout.get_state(), None)
    )
    _save(
        member.checkpoint,
        member.recipe,
        run,
        member.history,
        member.state,
        optimizer.implementation,
        member.identity,
        rng=rng,
    )


def _group_batches(
    active: Sequence[_Member],
    data: Data,
    recipe: Recipe,
    device: torch.device,
    memory_format: torch.memory_format,
) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of fused batches: shared (N, C, H, W) when every member's generator is in the same
    state, else stacked (N, B, C, H, W) with labels (B, N)."""
    streams: dict[bytes, int] = {}  # generator state -> stream number
    stream_of = [streams.setdefault(m.generator.get_state().numpy().tobytes(), len(streams)) for m in active]
    leaders = [stream_of.index(s) for s in range(len(streams))]
    epochs = [
        data.train_batches(
            recipe.batch_size, device=device, generator=active[k].generator, augment=recipe.augment
        )
        for k in leaders
    ]
    if len(epochs) == 1:
        for x, y in epochs[0]:
            yield x.contiguous(memory_format=memory_format), y
    else:
        for batches in zip(*epochs, strict=True):
            xs = [batches[s][0] for s in stream_of]
            yield stack_inputs(xs, memory_format), torch.stack([batches[s][1] for s in stream_of])
    for k, s in enumerate(stream_of):  # followers drew nothing: give them the epoch's end state
        if leaders[s] != k:
            active[k].generator.set_state(active[leaders[s]].generator.get_state())


@torch.no_grad()
def _evaluate_group(
    fused: FusedModel,
    data: Data,
    device: torch.device,
    batch_size: int,
    amp: bool,
    memory_format: torch.memory_format,
) -> list[tuple[float, float, float]]:
    """Per model (mean cross-entropy, top-1 %, top-k %) on the validation set, summed per model
    as training._evaluate sums them."""
    fused.eval()
    k = min(5, data.num_classes)
    sums = [
        [torch.zeros((), dtype=dtype, device=device) for dtype in (torch.float64, torch.int64, torch.int64)]
        for _ in range(fused.size)
    ]
    seen = 0
    for x, y in data.val_batches(batch_size, device=device):
        with _autocast(device, amp):
            logits = fused.logits(x.contiguous(memory_format=memory_format))
        for model_sums, model_logits in zip(sums, logits, strict=True):
            for total, value in zip(model_sums, eval_sums(model_logits.contiguous(), y, k), strict=True):
                total += value
        seen += y.shape[0]
    fused.train()
    if seen == 0:
        raise TrainingError("the validation set is empty: nothing to evaluate")
    return [
        (loss.item() / seen, 100.0 * top1.item() / seen, 100.0 * topk.item() / seen)
        for loss, top1, topk in sums
    ]


@dataclass
class _Progress:
    graphed: bool = False
    capture_error: str | None = None


def _train_phase(
    active: list[_Member],
    data: Data,
    device: torch.device,
    switches: dict,
    memory_format: torch.memory_format,
    on_epoch: Callable[[int, EpochMetrics], None] | None,
    should_stop: Callable[[int], bool] | None,
    progress: _Progress,
) -> None:
    """Train the members fused until one of them leaves the group (done, diverged, cancelled)."""
    recipe = active[0].recipe  # the group's shared fields
    fused = FusedModel(
        [m.model for m in active],
        device=device,
        memory_format=memory_format,
        generators=[m.dropout for m in active],
    )
    params = fused.trainable()
    momentum = None
    if recipe.momentum > 0 and any(m.momentum is not None for m in active):
        momentum = [
            stack_tensors(
                [m.momentum[j] if m.momentum is not None else torch.zeros_like(p[0]) for m in active],
                memory_format,
                device,
            )
            for j, p in enumerate(params)
        ]
    optimizer = FusedSGD(
        params,
        lrs=[scheduled_lr(m.recipe, len(m.history)) for m in active],
        weight_decays=[m.recipe.weight_decay for m in active],
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        momentum_buffers=momentum,
    )
    for m in active:
        m.momentum = None  # the group's buffers hold it now
        m.group_size = max(m.group_size, len(active))
    dropout = any(isinstance(module, FusedDropout) for module in fused.template.modules())
    step = FusedTrainStep(
        fused, optimizer, device, amp=recipe.amp, cuda_graph=switches["cuda_graph"], dropout=dropout
    )
    models = [m.model for m in active]
    try:
        while all(m.training for m in active):
            started = time.perf_counter()
            lrs = [scheduled_lr(m.recipe, len(m.history)) for m in active]
            optimizer.set_lr(lrs)
            fused.train()
            seen = 0
            for x, y in _group_batches(active, data, recipe, device, memory_format):
                step(x, y)
                seen += y.shape[-1]
            if seen == 0:
                raise TrainingError("the training set yielded no batches: nothing to train on")
            loss_sums, corrects = step.take_meters()  # the epoch's one host sync
            scores = _evaluate_group(fused, data, device, recipe.eval_batch_size, recipe.amp, memory_format)
            seconds = time.perf_counter() - started
            epochs = [len(m.history) + 1 for m in active]
            # the members' own models hold the epoch's weights, as after a solo epoch: checkpoints,
            # snapshots and hooks see them (one copy of the parameters per epoch)
            fused.write_back(models)
            for position, m in enumerate(active):
                train_loss = loss_sums[position] / seen
                metrics = EpochMetrics(
                    epochs[position], train_loss, 100.0 * corrects[position] / seen, *scores[position],
                    lrs[position], seconds,
                )  # fmt: skip
                m.history.append(metrics)
                if not math.isfinite(train_loss):
                    m.state = "diverged"  # a real outcome of this grid point: keep its metrics, stop it
                if m.checkpoint is not None:
                    _save_member(m, device, optimizer, position)
                if m.snapshot is not None and m.snapshot[0] == metrics.epoch:
                    save_atomic(m.model.state_dict(), m.snapshot[1])
                if on_epoch is not None:
                    on_epoch(m.index, metrics)
                if m.training and should_stop is not None and should_stop(m.index):
                    m.state = "cancelled"
    finally:
        fused.write_back(models)
        for position, m in enumerate(active):
            if m.training and optimizer.buffers:  # it goes on in the next group
                m.momentum = [b[position].clone() for b in optimizer.buffers]
        progress.graphed = progress.graphed or step.graphed
        progress.capture_error = progress.capture_error or step.capture_error
        step.close()


def _per_model(values: Sequence | None, count: int, name: str) -> list:
    if values is None:
        return [None] * count
    values = list(values)
    if len(values) != count:
        raise TrainingError(f"{name} has {len(values)} entries for {count} models")
    return values


def train_group(
    models: Sequence[nn.Module],
    data: Data,
    recipes: Sequence[Recipe],
    *,
    device: str | torch.device | None = None,
    checkpoint_paths: Sequence[PathLike | None] | None = None,
    on_epoch: Callable[[int, EpochMetrics], None] | None = None,
    should_stop: Callable[[int], bool] | None = None,
    reinit: bool = True,
    dtype: str | torch.dtype | None = None,
    channels_last: bool | None = None,
    snapshots: Sequence[tuple[int, PathLike] | None] | None = None,
    checkpoint_identities: Sequence[Mapping[str, Any] | None] | None = None,
    on_leave: Callable[[int, TrainResult], None] | None = None,
) -> list[TrainResult]:
    """Train `models[i]` in place by `recipes[i]`, all fused (module docstring); one TrainResult
    per model, in order. `checkpoint_paths[i]` / `snapshots[i]` = (epoch, path) are the solo run's
    `checkpoint_path` / (`snapshot_epoch`, `snapshot_path`); `on_epoch(i, metrics)` and
    `should_stop(i)` are the solo hooks for model i. `dtype` (float32 | float64) converts the
    models and the batches (float64: for equivalence checks). `channels_last` overrides the
    recipe's switch for the fused step (grouped convs may prefer the other layout).
    `checkpoint_identities[i]` is run i's checkpoint identity, as `train(checkpoint_identity=)`:
    a checkpoint of another identity raises ForeignCheckpointError instead of being resumed.
    `on_leave(i, result)` is called once per model as soon as it has left the group (done,
    diverged, cancelled; resumed finished: before returning) with the TrainResult returned for it,
    its model in its final weights: a caller can store a run while the others train on."""
    models, recipes = list(models), list(recipes)
    if not models or len(models) != len(recipes):
        raise TrainingError(
            f"train_group needs one recipe per model, got {len(models)} models, {len(recipes)} recipes"
        )
    if len({id(m) for m in models}) != len(models):
        raise TrainingError("train_group got the same model object twice; give each run its own model")
    check_group_recipes(recipes)
    checkpoints = [
        None if p is None else Path(p) for p in _per_model(checkpoint_paths, len(models), "checkpoint_paths")
    ]
    snapshot_args = _per_model(snapshots, len(models), "snapshots")
    identities = _per_model(checkpoint_identities, len(models), "checkpoint_identities")
    for recipe, snapshot in zip(recipes, snapshot_args, strict=True):
        _check_snapshot_args(recipe, *(snapshot if snapshot is not None else (None, None)))
    device = pick_device(device)
    switches = fast_path(recipes[0], device, data)
    if channels_last is not None:
        switches["channels_last"] = bool(channels_last)
    if dtype is not None:
        dtype = parse_dtype(dtype)
        data = CastData(data, dtype)
        for model in models:
            model.to(dtype)
    check_same_architecture(models)
    memory_format = torch.channels_last if switches["channels_last"] else torch.contiguous_format
    if switches["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cudnn time its kernels once

    members = []
    for index, (model, recipe, checkpoint, snapshot) in enumerate(
        zip(models, recipes, checkpoints, snapshot_args, strict=True)
    ):
        torch.manual_seed(recipe.seed)  # same seed => the solo run's He init (and dropout stream)
        if reinit:
            init_kaiming(model)
        model.to(device, memory_format=memory_format)
        member = _Member(
            index, model, recipe, torch.Generator().manual_seed(recipe.seed), _rng_after_init(device),
            checkpoint,
            None if snapshot is None else (int(snapshot[0]), Path(snapshot[1])),
            identities[index],
        )  # fmt: skip
        if checkpoint is not None and checkpoint.exists():
            _resume_member(member, device)
            if (
                member.snapshot
                and member.snapshot[0] <= len(member.history)
                and not member.snapshot[1].exists()
            ):
                raise TrainingError(
                    f"model {index}: resuming after epoch {len(member.history)} but the snapshot of epoch "
                    f"{member.snapshot[0]} is missing at {os.fspath(member.snapshot[1])!r}; delete the "
                    f"checkpoint {os.fspath(checkpoint)!r} to rerun"
                )
        elif member.snapshot and member.snapshot[0] == 0:
            save_atomic(model.state_dict(), member.snapshot[1])
        members.append(member)

    optimizer_impl = sgd_implementation(next(models[0].parameters()).dtype, device)
    progress = _Progress()
    reported: set[int] = set()

    def leave(done: Sequence[_Member]) -> None:
        for m in done:
            if m.index not in reported and on_leave is not None:
                on_leave(m.index, _result(m, switches, progress, optimizer_impl, device))
            reported.add(m.index)

    with cpu_malloc_cache(switches["cpu_malloc_cache"]) as malloc_cached:
        switches["cpu_malloc_cache"] = malloc_cached
        while active := [m for m in members if m.training]:
            _train_phase(active, data, device, switches, memory_format, on_epoch, should_stop, progress)
            leave([m for m in active if not m.training])
    leave(members)  # those that resumed already finished
    return [_result(m, switches, progress, optimizer_impl, device) for m in members]


def _result(
    m: _Member, switches: dict, progress: _Progress, optimizer_impl: str, device: torch.device
) -> TrainResult:
    """Member m's TrainResult as train() gives it, with the switches that took effect so far."""
    m.model.to(memory_format=torch.contiguous_format)  # callers (pruning, export) get the usual layout
    fast = {**switches, "cuda_graph": progress.graphed}
    if progress.capture_error:
        fast["cuda_graph_error"] = progress.capture_error
    fast.update(optimizer=optimizer_impl, fused=True, group_size=m.group_size)
    status: Status = "succeeded" if m.state == "running" else m.state  # type: ignore[assignment]
    last = m.history[-1]
    return TrainResult(
        status,
        len(m.history),
        last.val_top1,
        last.val_top5,
        sum(e.seconds for e in m.history),
        str(device),
        m.history,
        optimizer_impl,
        fast,
    )  # fmt: skip
