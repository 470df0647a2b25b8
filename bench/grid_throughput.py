"""Grid training throughput: the solo fast path vs fused groups of G = 1, 3, 9, 27 runs (issue 15).

For each model, in this one process, on synthetic CIFAR-shaped uint8 images (pad-4 crop + flip,
batch 128, the study's SGD):
- solo: `training.train()` of one run with its whole fast path (channels_last, the CUDA graph,
  ...); a grid trained this way runs its points one after another, so its aggregate rate is one
  run's.
- fused G, per layout: `fused.train_group()` of G runs at different (lr, wd), all fused; the
  layout is the fused step's `channels_last` switch (nhwc / nchw), which grouped convs may want
  the other way round than plain ones.
Each configuration trains 2 epochs (--epochs) and the last is timed (the first pays cudnn
autotuning and the CUDA graph capture once per run); an epoch is the training images plus a
one-batch evaluation. Figures: aggregate images/s (G x training images / epoch wall time),
x vs solo, runs/hour of the study's full recipe (180 epochs of 50,000 images, extrapolated from
that rate), and peak memory (CUDA: `max_memory_allocated`; CPU: growth of the resident set,
sampled every 10 ms, an underestimate after the first configuration: glibc keeps what the
earlier ones freed). A group that does not fit is reported as OOM and the larger ones skipped.

    .venv/bin/python bench/grid_throughput.py --device cpu --quick   # digits_cnn, resnet20; G 1, 3
    .venv/bin/python bench/grid_throughput.py --device cuda          # resnet20, resnet56, mobilenetv2_cifar
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train_throughput import synthetic_cifar  # noqa: E402  (this folder: the same images)

from workers.engine.data import AUGMENT, TensorData  # noqa: E402
from workers.engine.fused import train_group  # noqa: E402
from workers.engine.models import build_model  # noqa: E402
from workers.engine.training import Recipe, TrainResult, train  # noqa: E402

STUDY_EPOCHS, STUDY_IMAGES = 180, 50_000  # the full recipe a runs/hour figure stands for


def _resident_bytes() -> int:
    """This process's resident set (Linux /proc; no psutil on the lent GPU machines)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak bytes a block allocates: CUDA's allocator statistics, or the CPU resident set sampled."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            self.base = _resident_bytes()
            self._stop = threading.Event()

            def sample() -> None:
                while not self._stop.wait(0.01):
                    self.peak = max(self.peak, _resident_bytes() - self.base)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self._stop.set()
            self._thread.join()


def grid_recipes(count: int, epochs: int, batch_size: int, channels_last: bool = True) -> list[Recipe]:
    """`count` points of a learning-rate x weight-decay grid around the study's prior (one seed)."""
    base = Recipe(
        epochs=epochs, batch_size=batch_size, eval_batch_size=batch_size, channels_last=channels_last
    )
    return [
        dataclasses.replace(
            base, lr=0.05 * 10 ** (0.2 * (i % 3 - 1)), weight_decay=5e-4 * 10 ** (0.4 * (i // 3 % 3 - 1))
        )
        for i in range(count)
    ]  # fmt: skip


def measure(run: Callable[[], list[TrainResult]], device: torch.device, images: int) -> dict:
    with PeakMemory(device) as memory:
        results = run()
    seconds = results[0].history[-1].seconds  # the last epoch: every member trained it together
    rate = len(results) * images / seconds
    return {
        "images_per_s": rate,
        "runs_per_hour": 3600 * rate / (STUDY_EPOCHS * STUDY_IMAGES),
        "peak_mb": memory.peak / 2**20,
        "graphed": results[0].fast_path.get("cuda_graph"),
        "status": {r.status for r in results},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: CUDA if present)")
    parser.add_argument("--models", default=None, help="default resnet20,resnet56,mobilenetv2_cifar")
    parser.add_argument("--groups", default="1,3,9,27", help="fused group sizes")
    parser.add_argument(
        "--layouts", default=None, help="fused step layouts: nhwc,nchw (default: both on CUDA)"
    )
    parser.add_argument("--images", type=int, default=None, help="training images (CPU 512, CUDA 10,240)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--quick", action="store_true", help="digits_cnn and resnet20, groups 1 and 3, 256 images"
    )
    args = parser.parse_args()

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    models = (
        args.models or ("digits_cnn,resnet20" if args.quick else "resnet20,resnet56,mobilenetv2_cifar")
    ).split(",")
    groups = [int(g) for g in ("1,3" if args.quick and args.groups == "1,3,9,27" else args.groups).split(",")]
    layouts = (args.layouts or ("nhwc,nchw" if cuda else "nhwc")).split(",")
    images = args.images or (256 if args.quick else 10_240 if cuda else 512)
    data = TensorData(
        "synthetic-cifar", *synthetic_cifar(images, args.batch_size), 10, AUGMENT["cifar10"]
    )  # one evaluation batch per epoch
    name = torch.cuda.get_device_name(device) if cuda else f"{os.cpu_count()} CPU cores"
    print(f"device {device} ({name}); torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"{images} training images 3x32x32, batch {args.batch_size}, {args.epochs} epochs, the last timed; "
          f"runs/h = the study's {STUDY_EPOCHS} epochs x {STUDY_IMAGES:,} images at that rate")  # fmt: skip
    print(f"{'model':<18} {'config':<14} {'images/s':>10} {'x solo':>7} {'runs/h':>8} {'peak MB':>9}  notes")
    for model_name in models:

        def make(model_name: str = model_name) -> torch.nn.Module:
            return build_model(model_name, num_classes=10, input_shape=(3, 32, 32))

        solo_recipe = grid_recipes(1, args.epochs, args.batch_size)[0]

        def run_solo(recipe: Recipe = solo_recipe) -> list[TrainResult]:
            return [train(make(), data, recipe, device=device)]

        solo = measure(run_solo, device, images)
        report(model_name, "solo", solo, solo["images_per_s"])
        for layout in layouts:
            for group in groups:
                recipes = grid_recipes(group, args.epochs, args.batch_size)
                channels_last = layout == "nhwc"

                def run(
                    recipes: list[Recipe] = recipes, channels_last: bool = channels_last
                ) -> list[TrainResult]:
                    return train_group(
                        [make() for _ in recipes], data, recipes, device=device, channels_last=channels_last
                    )

                try:
                    figures = measure(run, device, images)
                except torch.OutOfMemoryError:
                    print(
                        f"{model_name:<18} {f'fused {group} {layout}':<14} {'OOM':>10}  "
                        "(larger groups skipped)"
                    )
                    torch.cuda.empty_cache()
                    break
                report(model_name, f"fused {group} {layout}", figures, solo["images_per_s"])


def report(model: str, config: str, figures: dict, solo_rate: float) -> None:
    notes = f"graphed {figures['graphed']}, {'/'.join(sorted(figures['status']))}"
    print(
        f"{model:<18} {config:<14} {figures['images_per_s']:>10.0f} "
        f"{figures['images_per_s'] / solo_rate:>7.2f} "
        f"{figures['runs_per_hour']:>8.2f} {figures['peak_mb']:>9.0f}  {notes}",
        flush=True,
    )


if __name__ == "__main__":
    main()
