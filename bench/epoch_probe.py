"""Where one CUDA training epoch's time goes (a probe that prints figures, not a target).

One epoch of the data path alone (shuffle, crop/flip/normalise batches on the device, synced), the
engine's train() for 2 epochs (epoch 1 also pays the run's warm-up steps, cudnn autotuning and the
graph capture; epoch 2 is what each further epoch of a run costs), and one evaluation pass.

    python3 bench/epoch_probe.py --model resnet56 --images 50000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import synthetic_cifar  # noqa: E402  (this folder: the same images)

from workers.engine.data import AUGMENT, TensorData  # noqa: E402
from workers.engine.models import build_model  # noqa: E402
from workers.engine.training import Recipe, evaluate, train  # noqa: E402


def timed(fn) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet56")
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    device = torch.device("cuda")
    data = TensorData(
        "synthetic-cifar", *synthetic_cifar(args.images, args.images // 5), 10, AUGMENT["cifar10"]
    )

    def data_epoch() -> None:
        generator = torch.Generator().manual_seed(0)
        for x, _ in data.train_batches(args.batch_size, device=device, generator=generator):
            x.contiguous(memory_format=torch.channels_last)

    for _ in range(2):  # the first also copies the set to the device
        print(f"data path alone: {timed(data_epoch):.3f} s per epoch of {args.images} images")
    model = build_model(args.model, num_classes=10)
    result = train(model, data, Recipe(epochs=2, batch_size=args.batch_size), device=device)
    for m in result.history:
        print(
            f"train() epoch {m.epoch}: {m.seconds:.3f} s = {args.images / m.seconds:,.0f} img/s (with evaluation)"
        )
    for _ in range(2):
        print(
            f"evaluation alone: {timed(lambda: evaluate(model, data, device=device)):.3f} s ({data.n_val} images)"
        )
    print("fast path:", result.fast_path)


if __name__ == "__main__":
    main()
