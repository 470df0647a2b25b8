"""Images per second of one CIFAR training epoch: a plain reference loop vs prunescape's engine.

Both sides train the same model (He init, fp32 unless --amp), with the same recipe (SGD momentum
0.9, coupled weight decay, batch 128, pad-4 crop + flip + normalise) on the same synthetic
CIFAR-shaped uint8 images, and then evaluate the same validation split (n/5 images, CIFAR's
10k:50k). An epoch = one pass over the training images + one evaluation, as a landscape run does.

(a) reference: the way well-known CIFAR ResNet reference implementations train: a Dataset of HWC
    uint8 images turned into PIL images per sample, torchvision RandomCrop(32, padding=4) +
    RandomHorizontalFlip + ToTensor + Normalize per sample, a DataLoader (shuffle, worker
    processes, pinned memory on CUDA, cudnn.benchmark on), the default `torch.optim.SGD`, eager
    fp32, loss and accuracy read with `.item()` every step, evaluation at batch 128.
(b) prunescape: `data.TensorData` (uint8 on the device, batched crop/flip there) + `training.train`
    with its fast path as the recipe's defaults set it (see workers/engine/training.py). It trains
    two epochs and the second is the one timed: the first also pays what a run pays once (on CUDA
    three warm-up steps and the graph capture, ~4 s for ResNet-56 on an H100), and is printed as
    "first epoch"; the projection of a long run adds it once.
(c) with --ablation also "prunescape-plain": the same engine with the layout and allocator
    switches off (channels_last=False, cpu_malloc_cache=False), i.e. the CPU path before they
    took effect there, to show what each side owes to them; on CUDA also "prunescape-eager", the
    engine without its CUDA graph (cuda_graph=False).

Each side first runs two warm-up batches (cudnn autotuning, allocator, --compile), untimed; the
engine's warm-up and timed epoch share one `cpu_malloc_cache` block, as the epochs of a long run
do (the heap it keeps is grown once per run, not once per epoch).

Every measurement runs in a fresh Python process (one model, one side), so no side inherits the
other's allocator state, threads or loader workers, and `--trials` repeats them interleaved
(trial 1: A B, trial 2: B A, ...) because a shared machine's load drifts. The summary gives each
side's median images/s with its spread, the ratio of the medians, the median of the per-trial
ratios, and the load average around each measurement.

    .venv/bin/python bench/train_throughput.py                  # CPU: 512 images; CUDA: 50,000
    .venv/bin/python bench/train_throughput.py --trials 5 --images 1024 --models resnet56 --ablation
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.data import AUGMENT, TensorData  # noqa: E402
from workers.engine.models import build_model, init_kaiming  # noqa: E402
from workers.engine.training import Recipe, cpu_malloc_cache, pick_device, train  # noqa: E402

SIDES = {  # side -> the prunescape recipe switches it overrides (None: the reference loop)
    "reference": None,
    "prunescape": {},
    "prunescape-plain": {"channels_last": False, "cpu_malloc_cache": False},
    "prunescape-eager": {"cuda_graph": False},
}
RESULT_TAG = "TRAIN_THROUGHPUT_RESULT "


def synthetic_cifar(n_train: int, n_val: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n_train + n_val, 3, 32, 32), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n_train + n_val,), generator=g)
    return images[:n_train], labels[:n_train], images[n_train:], labels[n_train:]


# ------------------------------------------------------------------------------ (a) reference


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does: HWC uint8 array -> PIL image -> transform, per sample."""

    def __init__(self, images_nchw: torch.Tensor, labels: torch.Tensor, transform) -> None:
        self.images = images_nchw.permute(0, 2, 3, 1).contiguous().numpy()
        self.labels = labels.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def reference_epoch(model_name, tensors, recipe, device, workers, warmup_batches=2) -> float:
    from torchvision import transforms

    train_x, train_y, val_x, val_y = tensors
    stats = TensorData("stats", train_x, train_y, val_x, val_y, 10, AUGMENT["cifar10"])
    normalise = transforms.Normalize(stats.mean, stats.std)
    train_tf = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            normalise,
        ]
    )
    val_tf = transforms.Compose([transforms.ToTensor(), normalise])
    pin = device.type == "cuda"
    train_loader = torch.utils.data.DataLoader(
        PILImages(train_x, train_y, train_tf),
        batch_size=recipe.batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )
    val_loader = torch.utils.data.DataLoader(
        PILImages(val_x, val_y, val_tf), batch_size=128, num_workers=workers, pin_memory=pin
    )
    torch.manual_seed(recipe.seed)
    model = build_model(model_name, num_classes=10)
    init_kaiming(model)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )

    def run(train_limit: int | None) -> None:
        model.train()
        loss_sum = correct = seen = 0.0
        for i, (x, y) in enumerate(train_loader):
            if train_limit is not None and i >= train_limit:
                return
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(y)  # the reference's per-step meters: a host sync each
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(y)
        model.eval()
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                logits = model(x)
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(1) == y).sum().item()

    run(train_limit=warmup_batches)  # warm-up (also starts the persistent loader workers)
    _sync(device)
    started = time.perf_counter()
    run(train_limit=None)
    _sync(device)
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ (b) prunescape


def engine_epoch(model_name, tensors, recipe, device) -> tuple[float, dict]:
    train_x, train_y, val_x, val_y = tensors
    data = TensorData("synthetic-cifar", train_x, train_y, val_x, val_y, 10, AUGMENT["cifar10"])
    warm = recipe.batch_size * 2
    warm_data = TensorData(  # two training batches and one evaluation batch
        "warm-up",
        train_x[:warm],
        train_y[:warm],
        val_x[: recipe.eval_batch_size],
        val_y[: recipe.eval_batch_size],
        10,
        AUGMENT["cifar10"],
    )
    model = build_model(model_name, num_classes=10)
    # one allocator block around warm-up and epoch, as around all epochs of a run (train() nests)
    with cpu_malloc_cache(recipe.cpu_malloc_cache and device.type == "cpu"):
        train(model, warm_data, recipe, device=device)  # warm-up: cudnn autotuning, compile, heap
        _sync(device)
        result = train(model, data, dataclasses.replace(recipe, epochs=2), device=device)
    first, steady = result.history
    return steady.seconds, result.fast_path, first.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, device: torch.device) -> dict:
    """One side, one model, in this process: the timed epoch's seconds and what was in effect."""
    n_train = args.images
    tensors = synthetic_cifar(n_train, max(1, n_train // 5))
    recipe = Recipe(
        epochs=1, batch_size=args.batch_size, amp=args.amp, compile=args.compile, **(SIDES[args.child] or {})
    )
    if SIDES[args.child] is None:
        seconds = reference_epoch(args.models, tensors, recipe, device, args.workers)
        fast, first = {"loader_workers": args.workers}, seconds
    else:
        seconds, fast, first = engine_epoch(args.models, tensors, recipe, device)
    return {"seconds": seconds, "first_epoch_s": first, "images_per_s": n_train / seconds, "fast_path": fast}


def run_child(side: str, model_name: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", side, "--models", model_name,
               "--images", str(args.images), "--batch-size", str(args.batch_size),
               "--workers", str(args.workers), *(["--device", args.device] if args.device else []),
               *(["--amp"] if args.amp else []), *(["--compile"] if args.compile else [])]  # fmt: skip
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{side} {model_name} failed:\n{done.stdout}\n{done.stderr}")
    line = next(x for x in done.stdout.splitlines() if x.startswith(RESULT_TAG))
    return {**json.loads(line[len(RESULT_TAG) :]), "load": (load_before, os.getloadavg()[0])}


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):8.1f}  [{min(values):.1f} .. {max(values):.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if present)")
    parser.add_argument("--models", default="resnet56,mobilenetv2_cifar")
    parser.add_argument("--images", type=int, default=None, help="training images (CPU 512, CUDA 50000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="reference loader")
    parser.add_argument("--trials", type=int, default=3, help="interleaved repetitions of every side")
    parser.add_argument("--ablation", action="store_true", help="also time prunescape-plain (see above)")
    parser.add_argument("--project-epochs", type=int, default=180, help="epochs of the projected run")
    parser.add_argument(
        "--project-images", type=int, default=50_000, help="training images of the projection"
    )
    parser.add_argument("--amp", action="store_true", help="prunescape side with bf16 autocast (CUDA)")
    parser.add_argument("--compile", action="store_true", help="prunescape side with torch.compile")
    parser.add_argument("--only", choices=("reference", "prunescape"), default=None)
    parser.add_argument("--child", choices=tuple(SIDES), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    device = pick_device(args.device)
    args.images = args.images or (50_000 if device.type == "cuda" else 512)
    if args.child is not None:  # one measurement, reported to the parent
        print(RESULT_TAG + json.dumps(measure(args, device)), flush=True)
        return

    sides = [args.only] if args.only else ["reference", "prunescape"]
    if args.ablation:
        sides += ["prunescape-plain", "prunescape-eager"] if device.type == "cuda" else ["prunescape-plain"]
    n_val = max(1, args.images // 5)
    recipe = Recipe(epochs=1, batch_size=args.batch_size, amp=args.amp, compile=args.compile)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {os.cpu_count()} logical CPUs, {torch.get_num_threads()} torch threads"
    )
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(f"{args.images} training + {n_val} validation images (synthetic, CIFAR-shaped uint8), "
          f"batch {args.batch_size}; {args.trials} interleaved trials, each side in a fresh process")  # fmt: skip
    print(f"reference: DataLoader with {args.workers} workers; prunescape recipe switches: "
          f"channels_last={recipe.channels_last} cpu_malloc_cache={recipe.cpu_malloc_cache} "
          f"amp={recipe.amp} compile={recipe.compile}")  # fmt: skip
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, dict[str, list[dict]]] = {}
    fast_paths: dict[tuple[str, str], dict] = {}
    for trial in range(args.trials):
        order = sides[trial % len(sides) :] + sides[: trial % len(sides)]  # A B, B A, ...
        for model_name in args.models.split(","):
            for side in order:
                r = run_child(side, model_name, args)
                results.setdefault(model_name, {}).setdefault(side, []).append(r)
                fast_paths[(model_name, side)] = r["fast_path"]
                print(f"trial {trial + 1} {model_name:18s} {side:16s} epoch {r['seconds']:8.2f} s "
                      f"{r['images_per_s']:8.1f} img/s (first epoch {r['first_epoch_s']:.2f} s)   "
                      f"load {r['load'][0]:.2f} -> {r['load'][1]:.2f}", flush=True)  # fmt: skip
    print()
    for (model_name, side), fast in fast_paths.items():
        if side != "reference":
            print(f"{model_name} {side} fast path in effect: {fast}")
    per_image = args.project_images / args.images  # the projection's epochs are this many of ours
    loads = [x for per_model in results.values() for rs in per_model.values() for r in rs for x in r["load"]]
    print(f"load average (1 min) during the measurements: median {statistics.median(loads):.2f}, "
          f"{min(loads):.2f} .. {max(loads):.2f}")  # fmt: skip
    print(f"{'model':18s} {'side':16s} {'img/s median [min .. max]':>30s}  projected {args.project_epochs} "
          f"epochs x {args.project_images} images (first epoch + the rest at the median)")  # fmt: skip
    for model_name, per_side in results.items():
        for side, rs in per_side.items():
            rates = [r["images_per_s"] for r in rs]
            first = statistics.median(r["first_epoch_s"] for r in rs) * per_image
            rest = (args.project_epochs - 1) * args.project_images / statistics.median(rates)
            print(f"{model_name:18s} {side:16s} {_spread(rates):>30s}  "
                  f"{(first + rest) / 60:7.1f} min")  # fmt: skip
        for side in per_side:
            if side == "reference" or "reference" not in per_side:
                continue
            ref = [r["images_per_s"] for r in per_side["reference"]]
            ours = [r["images_per_s"] for r in per_side[side]]
            paired = [o / r for o, r in zip(ours, ref, strict=True)]
            print(f"{model_name:18s} speed-up {side} / reference: {statistics.median(ours) / statistics.median(ref):.2f}x "
                  f"(ratio of medians); per trial {', '.join(f'{x:.2f}' for x in paired)} "
                  f"-> median {statistics.median(paired):.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
