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
    with its fast path (see workers/engine/training.py).

Each side first runs two warm-up batches (cudnn autotuning, allocator, --compile), untimed.

    .venv/bin/python bench/train_throughput.py                  # CPU: 512 images; CUDA: 50,000
    .venv/bin/python bench/train_throughput.py --images 2048 --models resnet56
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine.data import AUGMENT, TensorData  # noqa: E402
from workers.engine.models import build_model, init_kaiming  # noqa: E402
from workers.engine.training import Recipe, pick_device, train  # noqa: E402


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
    train(model, warm_data, recipe, device=device)  # warm-up: cudnn autotuning, compile
    _sync(device)
    result = train(model, data, recipe, device=device)
    return result.history[-1].seconds, result.fast_path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if present)")
    parser.add_argument("--models", default="resnet56,mobilenetv2_cifar")
    parser.add_argument("--images", type=int, default=None, help="training images (CPU 512, CUDA 50000)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="reference loader")
    parser.add_argument("--project-epochs", type=int, default=180, help="epochs of the projected run")
    parser.add_argument(
        "--project-images", type=int, default=50_000, help="training images of the projection"
    )
    parser.add_argument("--amp", action="store_true", help="prunescape side with bf16 autocast (CUDA)")
    parser.add_argument("--compile", action="store_true", help="prunescape side with torch.compile")
    parser.add_argument("--only", choices=("reference", "prunescape"), default=None)
    args = parser.parse_args()

    device = pick_device(args.device)
    n_train = args.images or (50_000 if device.type == "cuda" else 512)
    n_val = max(1, n_train // 5)
    tensors = synthetic_cifar(n_train, n_val)
    recipe = Recipe(epochs=1, batch_size=args.batch_size, amp=args.amp, compile=args.compile)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"device: {device} ({name}); torch {torch.__version__}")
    print(
        f"{n_train} training + {n_val} validation images (synthetic, CIFAR-shaped uint8), batch {args.batch_size}"
    )
    print(f"reference: DataLoader with {args.workers} workers; prunescape recipe switches: "
          f"channels_last={recipe.channels_last} amp={recipe.amp} compile={recipe.compile}")  # fmt: skip
    scale = args.project_epochs * args.project_images / n_train
    for model_name in args.models.split(","):
        rows = {}
        if args.only in (None, "reference"):
            rows["reference"] = reference_epoch(model_name, tensors, recipe, device, args.workers)
        if args.only in (None, "prunescape"):
            rows["prunescape"], fast = engine_epoch(model_name, tensors, recipe, device)
            print(f"  {model_name} prunescape fast path in effect: {fast}")
        for side, seconds in rows.items():
            print(
                f"{model_name:18s} {side:10s} epoch {seconds:8.2f} s  {n_train / seconds:9.1f} img/s  "
                f"projected {args.project_epochs} epochs x {args.project_images} images: "
                f"{seconds * scale / 3600:7.2f} h"
            )
        if len(rows) == 2:
            print(
                f"{model_name:18s} speed-up prunescape / reference: {rows['reference'] / rows['prunescape']:.2f}x"
            )


if __name__ == "__main__":
    main()
