"""The training recipe of the study (docs/spec.md section 3) and the loop that runs it.

Recipe: SGD with momentum and weight decay coupled into the gradient exactly as `torch.optim.SGD`
does (g <- g + wd * w before momentum), He initialisation, a step schedule that multiplies the LR by
`gamma` at `round(fraction * epochs)` for each milestone fraction. Every field is recorded.

Loop: airbench / nanoGPT style, no framework. Batches come from `Data.train_batches`, which keeps
the data on the device; one (CPU) `torch.Generator` seeded by `recipe.seed` drives shuffling and
augmentation, and `torch.manual_seed(recipe.seed)` fixes the He init.

Fast path. None of these changes the recipe's meaning (model, optimiser, schedule, batch size,
augmentation distribution, epochs); each is a recorded Recipe field or a constant named here, and
`TrainResult.fast_path` says which ones took effect on the device the run used. What each buys,
measured, is in docs/performance.md.
- data on the device: small sets live there as uint8 and are cropped/flipped there in whole batches
  (`data.TensorData`); nothing crosses the host per step.
- no host sync per step: loss and correct counts accumulate in device tensors and are read once per
  epoch. Consequently divergence (a NaN/inf loss) is detected at epoch granularity: the epoch in
  which the loss blows up still runs to its end.
- `channels_last` (default on, every device): NHWC model and batches (the layout tensor-core convs
  want; on CPU oneDNN runs NHWC convs without reordering on every call). The model is handed back in
  the default layout.
- `cpu_malloc_cache` (default on, CPU with glibc only): for the length of the run glibc keeps
  freed memory instead of unmapping it (`mallopt`: no mmap'd chunks, no trimming), so the large
  activation buffers of every step are reused rather than page-faulted and zeroed again by the
  kernel; the settings go back to glibc's defaults when the run ends. Numerics are untouched, so a
  run resumes exactly whatever this switch was.
- cudnn.benchmark (constant, CUDA): input shapes are fixed, so cudnn times its kernels once.
- fused SGD (CUDA; CPU where this torch has it), else the multi-tensor foreach SGD: one kernel for
  all parameters instead of one per tensor; same update rule as the plain loop.
- evaluation in large batches (`eval_batch_size`, default 1000) under `torch.no_grad`.
- `cuda_graph` (default on, CUDA without `compile`): after three eager warm-up steps the whole
  training step is captured once as a CUDA graph and replayed for every full batch; the epoch's
  last, partial batch runs eagerly (workers/engine/train_step.py).
- `compile` (default off): `torch.compile` of the training forward/backward. Same maths, different
  kernels; its first epoch pays the compilation. Evaluation stays eager (no eval-mode recompile).
- `amp` (default off, CUDA only): bf16 autocast. It changes numerics, so it is never implied.

Every epoch ends with an atomic checkpoint (model, optimizer, scheduler, generator and torch RNG
states, metrics history, recipe, and the caller's identity of the run). A `train()` call that finds
its own checkpoint resumes from it, and on CPU finishes with bit-for-bit the same weights and
metrics as an uninterrupted run; a checkpoint of another identity is refused. On CUDA,
cudnn.benchmark picks kernels by timing, so resumed and repeated runs agree only approximately.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from workers.engine.checkpoint import CheckpointError, load_checkpoint, save_atomic
from workers.engine.data import Data
from workers.engine.errors import EngineError
from workers.engine.models import init_kaiming
from workers.engine.train_step import TrainStep

CHECKPOINT_FORMAT = 1
INITS = ("kaiming",)
Status = Literal["succeeded", "diverged", "cancelled"]


class TrainingError(EngineError):
    """A training run that cannot start or resume as asked (device, snapshot, checkpoint)."""


class RecipeError(TrainingError):
    """A recipe field with an unknown name, a wrong type or a value out of range."""


class ForeignCheckpointError(CheckpointError):
    """The checkpoint at the run's path was written by another run (its identity differs): it must
    not be resumed. The caller removes it and trains from scratch."""


_INT_FIELDS = ("epochs", "batch_size", "seed", "eval_batch_size")
_FLOAT_FIELDS = ("lr", "weight_decay", "momentum", "gamma")
_BOOL_FIELDS = (
    "nesterov", "augment", "amp", "channels_last", "compile", "cpu_malloc_cache", "cuda_graph", "fused",
)  # fmt: skip
# speed switches a checkpoint resumes across: the allocator cannot change a bit of the results, a
# CUDA graph replays the kernels the eager step launches (nothing at all on CPU), and a fused group
# writes and resumes each run's checkpoint in the solo format (fused/group.py)
_RESUME_NEUTRAL = frozenset({"cpu_malloc_cache", "cuda_graph", "fused"})


@dataclass(frozen=True)
class Recipe:
    """How one model is trained. Defaults are the study's CIFAR recipe (docs/spec.md section 3)."""

    epochs: int = 180
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    milestones: tuple[float, ...] = (0.5, 0.75)
    gamma: float = 0.1
    seed: int = 0
    augment: bool = True
    init: str = "kaiming"
    amp: bool = False  # bf16 autocast, CUDA only; ignored on CPU
    eval_batch_size: int = 1000
    channels_last: bool = True  # NHWC model and batches (CUDA tensor cores; CPU oneDNN without reorders)
    compile: bool = False  # torch.compile the training step's model; same maths, other kernels
    cpu_malloc_cache: bool = True  # CPU: glibc keeps freed memory for the run (no page-fault storms)
    cuda_graph: bool = True  # CUDA: each full-batch step replayed from one captured graph (train_step.py)
    fused: bool = True  # the service may train this run in a fused group (fused/; train() ignores it)

    def __post_init__(self) -> None:
        for name in _INT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecipeError(f"recipe.{name} must be an integer, got {value!r}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise RecipeError(f"recipe.{name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))  # frozen: normalise ints like lr=1 to 1.0
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), bool):
                raise RecipeError(f"recipe.{name} must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.milestones, str | bytes) or not isinstance(self.milestones, tuple | list):
            raise RecipeError(f"recipe.milestones must be a list of fractions, got {self.milestones!r}")
        for m in self.milestones:
            if isinstance(m, bool) or not isinstance(m, int | float) or not 0 < m < 1:
                raise RecipeError(f"recipe.milestones must lie in (0, 1), got {m!r}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise RecipeError(f"recipe.milestones must be strictly ascending, got {list(self.milestones)}")
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        checks = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("momentum", 0 <= self.momentum < 1, "in [0, 1)"),
            ("gamma", 0 < self.gamma <= 1, "in (0, 1]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise RecipeError(f"recipe.{name} must be {rule}, got {getattr(self, name)!r}")
        if self.nesterov and self.momentum == 0:
            raise RecipeError(
                "recipe.nesterov needs recipe.momentum > 0 (Nesterov momentum without momentum)"
            )
        if self.init not in INITS:
            raise RecipeError(f"recipe.init must be one of {list(INITS)}, got {self.init!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Recipe:
        """Build from JSON-like data; unknown keys are an error that names them."""
        if not isinstance(d, Mapping):
            raise RecipeError(f"recipe must be an object of fields, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise RecipeError(f"unknown recipe field(s) {unknown}; known fields: {sorted(known)}")
        values = dict(d)
        if isinstance(values.get("milestones"), list):
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (milestones as a list); `from_dict(to_dict())` gives an equal recipe."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


@dataclass
class EpochMetrics:
    """One epoch: train loss/top-1 over the epoch's batches (train mode, augmented), then the
    validation set with the weights at the end of the epoch. Accuracies in percent; `lr` is the
    learning rate the epoch's steps used; `seconds` is that epoch's wall time (train + eval)."""

    epoch: int  # 1-based
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """Outcome of `train()`. `top1`/`top5` are the last epoch's validation accuracies (percent);
    `epochs` counts completed epochs including resumed ones; `seconds` sums their wall times.
    `history`, `optimizer` (which SGD implementation ran) and `fast_path` (which speed switches
    took effect on this device, see the module docstring) are additions to the contract."""

    status: Status
    epochs: int
    top1: float
    top5: float
    seconds: float
    device: str
    history: list[EpochMetrics] = dataclasses.field(default_factory=list)
    optimizer: str = ""
    fast_path: dict[str, Any] = dataclasses.field(default_factory=dict)


def pick_device(prefer: str | torch.device | None = None) -> torch.device:
    """CUDA when available, else CPU; `prefer` ("cpu", "cuda", "cuda:1") forces one or fails.
    Only `torch.cuda.is_available()` is touched, so no CUDA context exists before training starts."""
    if prefer is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(prefer)
    except (RuntimeError, TypeError) as exc:
        raise TrainingError(f"unknown device {prefer!r}; use 'cpu', 'cuda' or 'cuda:N'") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(f"device {prefer!r} was asked for but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainingError(
                f"device {prefer!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise TrainingError(f"device type {device.type!r} is not supported; use 'cpu' or 'cuda'")
    return device


def milestone_epochs(recipe: Recipe) -> list[int]:
    """Epochs after which the LR is multiplied by gamma: round(fraction * epochs), at least 1
    (a milestone at 0 would decay the LR before the first step). Two fractions that round to the
    same epoch decay twice there, as MultiStepLR does with repeated milestones."""
    return [max(1, round(f * recipe.epochs)) for f in recipe.milestones]


def make_optimizer(model: nn.Module, recipe: Recipe) -> tuple[torch.optim.SGD, str]:
    """SGD with coupled weight decay; fused kernels where this torch build has them (CUDA, and CPU
    since torch 2.4), else the multi-tensor foreach path. Returns (optimizer, implementation)."""
    params = [p for p in model.parameters() if p.requires_grad]
    kwargs = dict(
        lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=recipe.nesterov
    )
    try:
        return torch.optim.SGD(params, **kwargs, fused=True), "sgd-fused"
    except (RuntimeError, ValueError):  # fused unsupported for this device/dtype
        return torch.optim.SGD(params, **kwargs, foreach=True), "sgd-foreach"


def eval_sums(logits: torch.Tensor, y: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """One validation batch's summed cross-entropy, top-1 and top-k hit counts (in float32, also
    for a float64 or bf16 model): the one definition of the validation numbers."""
    logits = logits.float()
    hits = logits.topk(k, dim=1).indices == y[:, None]
    return F.cross_entropy(logits, y, reduction="sum"), hits[:, 0].sum(), hits.any(dim=1).sum()


@torch.no_grad()
def _evaluate(
    model: nn.Module,
    data: Data,
    device: torch.device,
    batch_size: int,
    amp: bool,
    memory_format: torch.memory_format = torch.contiguous_format,
) -> tuple[float, float, float]:
    was_training = model.training
    model.eval()
    k = min(5, data.num_classes)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct1 = torch.zeros((), dtype=torch.int64, device=device)
    correctk = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in data.val_batches(batch_size, device=device):
        x = x.contiguous(memory_format=memory_format)
        with _autocast(device, amp):
            logits = model(x)
        batch_loss, batch_top1, batch_topk = eval_sums(logits, y, k)
        loss_sum += batch_loss
        correct1 += batch_top1
        correctk += batch_topk
        seen += y.shape[0]
    model.train(was_training)
    if seen == 0:
        raise TrainingError("the validation set is empty: nothing to evaluate")
    return loss_sum.item() / seen, 100.0 * correct1.item() / seen, 100.0 * correctk.item() / seen


def evaluate(
    model: nn.Module, data: Data, *, device: str | torch.device | None = None, batch_size: int = 1000
) -> tuple[float, float, float]:
    """(mean cross-entropy, top-1 %, top-5 %) on the validation set, top-5 meaning top-min(5, classes).
    With device=None the model is evaluated where its parameters are (it is not moved)."""
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = pick_device(device)
    model.to(device)
    return _evaluate(model, data, device, batch_size, amp=False)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    # bf16 needs no GradScaler; on CPU amp is ignored so CPU runs stay exact fp32
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def fast_path(recipe: Recipe, device: torch.device, data: Data | None = None) -> dict[str, Any]:
    """Which speed switches take effect for `recipe` on `device` (recorded in TrainResult)."""
    from workers.engine.data import TensorData  # imagefolder streams through a DataLoader instead

    cuda = device.type == "cuda"
    return {
        "data_on_device": isinstance(data, TensorData),
        "channels_last": recipe.channels_last,
        "cpu_malloc_cache": recipe.cpu_malloc_cache and device.type == "cpu" and _glibc() is not None,
        "cudnn_benchmark": cuda,
        "compile": recipe.compile,
        "cuda_graph": recipe.cuda_graph and cuda and not recipe.compile,  # compile has its own
        "amp_bf16": recipe.amp and cuda,
        "eval_batch_size": recipe.eval_batch_size,
    }


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # mallopt parameters (malloc.h)
_GLIBC_MMAP_MAX, _GLIBC_TRIM_THRESHOLD = 65536, 128 * 1024  # glibc's defaults, restored afterwards
_malloc_lock = threading.Lock()
_malloc_depth = 0


@functools.cache
def _glibc() -> Any:
    """The process's glibc (for mallopt / malloc_trim), or None elsewhere (macOS, musl, Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def cpu_malloc_cache(enabled: bool = True) -> Iterator[bool]:
    """While inside, glibc keeps freed memory mapped (see `cpu_malloc_cache` in the module
    docstring); yields whether that took effect. Nests: glibc's defaults come back when the
    outermost block exits, and the free memory is then returned to the OS."""
    global _malloc_depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _malloc_lock:
        active = _malloc_depth > 0
        if not active:
            # -1 disables trimming altogether (mallopt(3)); no mmap'd chunks: every block comes
            # from the heap, where a freed block is reused without a page fault
            active = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1
            if not active:
                _restore_malloc(libc)
        if active:
            _malloc_depth += 1
    if not active:
        yield False
        return
    try:
        yield True
    finally:
        with _malloc_lock:
            _malloc_depth -= 1
            if _malloc_depth == 0:
                _restore_malloc(libc)
                libc.malloc_trim(0)


def _restore_malloc(libc: Any) -> None:
    libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
    libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_TRIM_THRESHOLD)


def train(
    model: nn.Module,
    data: Data,
    recipe: Recipe,
    *,
    device: str | torch.device | None = None,
    checkpoint_path: str | os.PathLike[str] | None = None,
    on_epoch: Callable[[EpochMetrics], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    reinit: bool = True,
    snapshot_epoch: int | None = None,
    snapshot_path: str | os.PathLike[str] | None = None,
    checkpoint_identity: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train `model` in place by `recipe`; see the module docstring. `reinit=False` keeps the given
    weights (finetune). `checkpoint_identity` (JSON-like: which run, which data) is written into
    every checkpoint, and a checkpoint holding another identity is refused with
    ForeignCheckpointError instead of being resumed. `snapshot_epoch` t saves the weights after epoch t (0 = initial) to
    `snapshot_path` for rewind retraining. `on_epoch` runs after each epoch's checkpoint is written;
    `should_stop()` is asked after each epoch but the last and, when true, ends the run as
    `cancelled` with the checkpoint kept. `on_epoch` is not replayed for epochs done before a resume."""
    device = pick_device(device)
    _check_snapshot_args(recipe, snapshot_epoch, snapshot_path)
    torch.manual_seed(recipe.seed)  # same seed => same He init (and same dropout, if any)
    if reinit:
        init_kaiming(model)
    switches = fast_path(recipe, device, data)
    memory_format = torch.channels_last if switches["channels_last"] else torch.contiguous_format
    model.to(device, memory_format=memory_format)
    if switches["cudnn_benchmark"]:
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cudnn time its kernels once
    # compiled forward/backward for training steps only; it shares `model`'s parameters, so the
    # optimizer, checkpoints and evaluation keep using the plain module
    step_model = torch.compile(model) if recipe.compile else model
    optimizer, optimizer_impl = make_optimizer(model, recipe)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestone_epochs(recipe), gamma=recipe.gamma)
    # shuffling + augmentation. On the CPU even for CUDA runs: DataLoader samplers (imagefolder) only
    # take a CPU generator, and tensor sets draw an epoch's few random numbers at once, then copy them
    generator = torch.Generator().manual_seed(recipe.seed)
    stateful = _Stateful(model, optimizer, scheduler, generator, device)  # what a checkpoint holds
    history: list[EpochMetrics] = []
    state = "running"
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        history, state = _resume(checkpoint_path, recipe, stateful, checkpoint_identity)
        if snapshot_epoch is not None and snapshot_epoch <= len(history) and not Path(snapshot_path).exists():
            raise TrainingError(
                f"resuming after epoch {len(history)} but the snapshot of epoch {snapshot_epoch} is missing "
                f"at {os.fspath(snapshot_path)!r}; delete the checkpoint {os.fspath(checkpoint_path)!r} to rerun"
            )
    elif snapshot_epoch == 0:
        save_atomic(model.state_dict(), snapshot_path)

    # on-device meters, and a CUDA graph of the step once warmed up (lr pinned in a tensor for it)
    step = TrainStep(step_model, optimizer, device, amp=recipe.amp, cuda_graph=switches["cuda_graph"])
    try:
        # page-fault-free CPU allocations for the run (see the module docstring); ends with the run
        with cpu_malloc_cache(switches["cpu_malloc_cache"]) as malloc_cached:
            switches["cpu_malloc_cache"] = malloc_cached  # what took effect (mallopt may refuse)
            while state == "running" and len(history) < recipe.epochs:
                epoch, started = len(history) + 1, time.perf_counter()
                lr = float(optimizer.param_groups[0]["lr"])
                model.train()
                seen = 0
                for x, y in data.train_batches(
                    recipe.batch_size, device=device, generator=generator, augment=recipe.augment
                ):
                    step(x.contiguous(memory_format=memory_format), y)  # no copy unless channels_last
                    seen += y.shape[0]
                scheduler.step()
                step.sync_lr()
                if seen == 0:
                    raise TrainingError("the training set yielded no batches: nothing to train on")
                loss_sum, correct = step.take_meters()  # the one host sync of the epoch
                train_loss = loss_sum / seen
                val_loss, val_top1, val_top5 = _evaluate(
                    model, data, device, recipe.eval_batch_size, recipe.amp, memory_format
                )
                metrics = EpochMetrics(
                    epoch, train_loss, 100.0 * correct / seen, val_loss, val_top1, val_top5, lr,
                    time.perf_counter() - started,
                )  # fmt: skip
                history.append(metrics)
                if not math.isfinite(train_loss):
                    state = "diverged"  # a real outcome of this grid point: keep its metrics, stop training
                if checkpoint_path is not None:
                    _save(
                        checkpoint_path, recipe, stateful, history, state, optimizer_impl, checkpoint_identity
                    )
                if snapshot_epoch == epoch:
                    save_atomic(model.state_dict(), snapshot_path)
                if on_epoch is not None:
                    on_epoch(metrics)
                if state == "running" and epoch < recipe.epochs and should_stop is not None and should_stop():
                    state = "cancelled"
    finally:
        graphed = step.graphed
        step.close()  # the graph's pool (it holds the gradients) goes back with the run
    switches["cuda_graph"] = graphed  # what took effect (a run of < 4 full batches never is)
    if step.capture_error:
        switches["cuda_graph_error"] = step.capture_error
    model.to(memory_format=torch.contiguous_format)  # callers (pruning, export) get the usual layout
    status: Status = "succeeded" if state == "running" else state  # type: ignore[assignment]
    last = history[-1]
    return TrainResult(
        status, len(history), last.val_top1, last.val_top5, sum(m.seconds for m in history), str(device),
        history, optimizer_impl, {**switches, "optimizer": optimizer_impl},
    )  # fmt: skip


def _check_snapshot_args(recipe: Recipe, snapshot_epoch: int | None, snapshot_path: Any) -> None:
    if snapshot_epoch is None:
        return
    if snapshot_path is None:
        raise TrainingError(f"snapshot_epoch={snapshot_epoch} needs a snapshot_path to write the weights to")
    if (
        isinstance(snapshot_epoch, bool)
        or not isinstance(snapshot_epoch, int)
        or not 0 <= snapshot_epoch <= recipe.epochs
    ):
        raise TrainingError(
            f"snapshot_epoch must be an integer in [0, {recipe.epochs}], got {snapshot_epoch!r}"
        )


@dataclass
class _Stateful:
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    device: torch.device


def _save(
    path,
    recipe: Recipe,
    run: _Stateful,
    history: list[EpochMetrics],
    state: str,
    optimizer_impl: str,
    identity: Mapping[str, Any] | None = None,
    rng: tuple[torch.Tensor, torch.Tensor | None] | None = None,
) -> None:
    # rng: (torch CPU, CUDA) RNG states of this run when they are not the process's (a fused group
    # keeps one dropout stream per model; workers/engine/fused/group.py)
    torch_rng, cuda_rng = rng if rng is not None else (torch.get_rng_state(), None)
    if rng is None and run.device.type == "cuda":
        cuda_rng = torch.cuda.get_rng_state(run.device)
    save_atomic(
        {
            "format": CHECKPOINT_FORMAT,
            "identity": None if identity is None else dict(identity),
            "recipe": recipe.to_dict(),
            "epoch": len(history),
            "state": state,  # "running" | "diverged": a diverged run resumes straight to its result
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "optimizer_impl": optimizer_impl,
            "scheduler": run.scheduler.state_dict(),
            "generator": run.generator.get_state(),
            "device_type": run.device.type,
            "torch_rng": torch_rng,
            "cuda_rng": cuda_rng,
            "history": [dataclasses.asdict(m) for m in history],
        },
        path,
    )


def _resume(
    path, recipe: Recipe, run: _Stateful, identity: Mapping[str, Any] | None = None
) -> tuple[list[EpochMetrics], str]:
    ckpt = load_checkpoint(path)
    where = f"checkpoint {os.fspath(path)!r}"
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{where} has format {ckpt.get('format')!r}, expected {CHECKPOINT_FORMAT}")
    if identity is not None and ckpt.get("identity") != dict(identity):
        raise ForeignCheckpointError(
            f"{where} belongs to {ckpt.get('identity')!r}, not to {dict(identity)!r}; not resumed"
        )
    saved, ours = ckpt["recipe"], recipe.to_dict()
    differing = sorted(
        k for k in set(saved) | set(ours) if saved.get(k) != ours.get(k) and k not in _RESUME_NEUTRAL
    )
    if differing:
        details = ", ".join(f"{k}: {saved.get(k)!r} there vs {ours.get(k)!r} here" for k in differing)
        raise CheckpointError(
            f"{where} was written by a different recipe ({details}); delete it or use its recipe"
        )
    if ckpt["device_type"] != run.device.type:
        raise CheckpointError(
            f"{where} was written on {ckpt['device_type']}, cannot resume it exactly on {run.device.type}"
        )
    try:
        run.model.load_state_dict(ckpt["model"])
        run.optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{where} does not fit this model ({exc})") from exc
    _match_state_layout(run.optimizer)
    run.scheduler.load_state_dict(ckpt["scheduler"])
    run.generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    if ckpt["cuda_rng"] is not None:
        torch.cuda.set_rng_state(ckpt["cuda_rng"], run.device)
    return [EpochMetrics(**m) for m in ckpt["history"]], ckpt["state"]


def _match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (momentum buffers) its parameter's memory layout.
    A checkpoint keeps the strides it was written with, and the fused SGD kernel walks parameter
    and buffer as flat memory: an NCHW buffer stepped against a channels_last parameter (a
    checkpoint from before channels_last took effect on CPU) would update the wrong elements."""
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == param.shape
                and value.stride() != param.stride()
            ):
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)
