"""What models and data sets prunescape knows, without importing torch.

The API validates study specs against this module, so it must stay cheap to import: plain frozen
dataclasses and filesystem checks on names only (no file is parsed here; `data.py` does that).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workers.engine.errors import DataError

# How every FLOPs figure is counted (SPEC section 3; workers/engine/flops.py counts them), shown
# next to each one. Here, torch-free, so the API states it without importing torch.
FLOPS_CONVENTION = (
    "FLOPs = 2 x multiply-accumulates of conv and linear layers, batch 1; "
    "BN, activations, pooling and adds not counted"
)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W) the architecture was designed for
    num_classes: int
    family: str  # "cifar_resnet" | "mobilenetv2_cifar" | "torchvision" | "small"
    description: str
    # why structured (filter) pruning is not offered for this model; None: it is
    no_structured_pruning: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int] | None  # None: decided by the spec (synthetic)
    num_classes: int | None  # None: decided by the files (imagefolder) or the spec (synthetic)
    needs_path: bool
    layout: str  # what the user must put at `path`, quoted in every DataError


def _cifar_resnet(depth: int) -> ModelInfo:
    blocks = (depth - 2) // 6
    return ModelInfo(
        name=f"resnet{depth}",
        input_shape=(3, 32, 32),
        num_classes=10,
        family="cifar_resnet",
        description=f"CIFAR ResNet-{depth} (He et al. 2015): 3 stages x {blocks} BasicBlocks, "
        "16/32/64 channels, option-A shortcuts",
    )


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        *(_cifar_resnet(depth) for depth in (20, 32, 44, 56, 110)),
        ModelInfo(
            "mobilenetv2_cifar",
            (3, 32, 32),
            10,
            "mobilenetv2_cifar",
            "MobileNetV2 for 32x32 inputs (Chen 2018 / kuangliu): stride-1 stem, 17 inverted residuals",
        ),
        ModelInfo("resnet18", (3, 224, 224), 1000, "torchvision", "torchvision ResNet-18"),
        ModelInfo("resnet50", (3, 224, 224), 1000, "torchvision", "torchvision ResNet-50"),
        ModelInfo("mobilenet_v2", (3, 224, 224), 1000, "torchvision", "torchvision MobileNetV2"),
        ModelInfo(
            "shufflenet_v2_x1_0",
            (3, 224, 224),
            1000,
            "torchvision",
            "torchvision ShuffleNetV2 1.0x",
            no_structured_pruning="its channel split and shuffle tie channels across branches in a way "
            "the pruning dependency graph cannot trace",
        ),
        ModelInfo("alexnet", (3, 224, 224), 1000, "torchvision", "torchvision AlexNet"),
        ModelInfo(
            "digits_cnn",
            (1, 8, 8),
            10,
            "small",
            "small CNN for the 8x8 digits demo: stem conv, two prunable hidden convs, linear",
        ),
    )
}


CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
FASHIONMNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

DATASETS: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(
        "digits",
        (1, 8, 8),
        10,
        needs_path=False,
        layout="none: scikit-learn's bundled 8x8 digits, split 80/20 with the spec's seed",
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (3, 32, 32),
        10,
        needs_path=True,
        layout="a directory holding cifar-10-batches-py/ (or that directory itself) with the pickles "
        "data_batch_1..5 and test_batch of the CIFAR-10 python version",
    ),
    "fashionmnist": DatasetInfo(
        "fashionmnist",
        (1, 28, 28),
        10,
        needs_path=True,
        layout="a directory with the IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (each may end in .gz)",
    ),
    "imagefolder": DatasetInfo(
        "imagefolder",
        (3, 224, 224),
        None,
        needs_path=True,
        layout="a directory with train/ and val/, each holding one subfolder of images per class "
        "(the same class names in both)",
    ),
    "synthetic": DatasetInfo(
        "synthetic",
        None,
        None,
        needs_path=False,
        layout="none: seeded random tensors of the spec's shape (benchmarks only)",
    ),
}


def cifar10_dir(path: Path) -> Path:
    """The directory that holds the CIFAR pickles: `path/cifar-10-batches-py` or `path` itself."""
    nested = path / "cifar-10-batches-py"
    return nested if nested.is_dir() else path


def fashionmnist_file(path: Path, stem: str) -> Path | None:
    """The raw or gzipped IDX file for `stem`, raw preferred; None when neither exists."""
    for candidate in (path / stem, path / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def check_dataset_path(name: str, path: str | os.PathLike[str] | None) -> None:
    """Raise DataError naming the path and the expected layout when the files are not there.

    Existence and names only; nothing is opened, so the API can call this on every spec.
    """
    info = DATASETS.get(name)
    if info is None:
        raise DataError(f"dataset: unknown name {name!r}; known: {', '.join(sorted(DATASETS))}")
    if not info.needs_path:
        return
    if path is None or str(path) == "":
        raise DataError(f"{name}: dataset.path is required; expected {info.layout}")
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"{name}: {root} is not a directory; expected {info.layout}")

    if name == "cifar10":
        folder = cifar10_dir(root)
        for fname in CIFAR10_FILES:
            if not (folder / fname).is_file():
                raise DataError(f"{name}: {folder / fname} is missing; expected {info.layout}")
    elif name == "fashionmnist":
        for stem in FASHIONMNIST_FILES:
            if fashionmnist_file(root, stem) is None:
                raise DataError(f"{name}: {root / stem} (or .gz) is missing; expected {info.layout}")
    elif name == "imagefolder":
        class_sets = {}
        for split in ("train", "val"):
            split_dir = root / split
            if not split_dir.is_dir():
                raise DataError(f"{name}: {split_dir} is missing; expected {info.layout}")
            classes = {entry.name for entry in split_dir.iterdir() if entry.is_dir()}
            if not classes:
                raise DataError(f"{name}: {split_dir} has no class subfolders; expected {info.layout}")
            class_sets[split] = classes
        if class_sets["train"] != class_sets["val"]:
            missing = sorted(class_sets["train"] ^ class_sets["val"])
            raise DataError(
                f"{name}: {root}/train and {root}/val hold different classes "
                f"(only in one: {', '.join(missing[:5])}); expected {info.layout}"
            )
