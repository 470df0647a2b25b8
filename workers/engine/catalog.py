"""What models and data sets prunescape knows, without importing torch.

The API validates study specs against this module, so it must stay cheap to import: plain frozen
dataclasses and filesystem checks on names only (no file is parsed here; `data.py` does that).

It also holds what both sides enforce on a data set named by a user: the allowed data roots
(`resolve_dataset_path`) and the caps on what a run may load (`MAX_DATASET_BYTES`, the synthetic
bounds), so the API refuses a spec with the same numbers the worker would.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.engine.errors import DataError

# How every FLOPs figure is counted (docs/spec.md section 3; workers/engine/flops.py counts them), shown
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
    # smallest input height / width the architecture accepts
    min_side: int = 4
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
        # Stride-32 torchvision nets work down to 16 px (28x28 FashionMNIST included, as in the
        # compression reports); AlexNet's three 3x3 max pools and 11x11/4 stem need 63 px; the CIFAR
        # nets need one pixel per unit of their total stride.
        ModelInfo("resnet18", (3, 224, 224), 1000, "torchvision", "torchvision ResNet-18", min_side=16),
        ModelInfo("resnet50", (3, 224, 224), 1000, "torchvision", "torchvision ResNet-50", min_side=16),
        ModelInfo("mobilenet_v2", (3, 224, 224), 1000, "torchvision", "torchvision MobileNetV2", min_side=16),
        ModelInfo(
            "shufflenet_v2_x1_0",
            (3, 224, 224),
            1000,
            "torchvision",
            "torchvision ShuffleNetV2 1.0x",
            min_side=16,
            no_structured_pruning="its channel split and shuffle tie channels across branches in a way "
            "the pruning dependency graph cannot trace",
        ),
        ModelInfo("alexnet", (3, 224, 224), 1000, "torchvision", "torchvision AlexNet", min_side=63),
        ModelInfo(
            "digits_cnn",
            (1, 8, 8),
            10,
            "small",
            "small CNN for the 8x8 digits demo: stem conv, two prunable hidden convs, linear",
            min_side=2,
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


# --------------------------------------------------------------------------------- caps and roots

# What a run may load, in bytes of decoded uint8 data (the `max_dataset_bytes` setting's default).
# 4 GiB holds CIFAR-10 (184 MB) and FashionMNIST (55 MB) many times over; the holder keeps a copy on
# each device and the training split's statistics are taken in float64 (8 bytes a pixel), so a set
# at the cap needs tens of GiB of RAM: raise it only on a machine that has them.
MAX_DATASET_BYTES = 4 * 2**30
# One CIFAR-10 batch file is 10000 x 3072 pixels + labels + file names, about 31 MB; twice that is
# far more than the format holds, so a bigger file is refused before it is read.
CIFAR_BATCH_MAX_BYTES = 64 * 2**20
# Synthetic tensors (benchmarks): no side above this (ImageNet crops are 224), and the whole set,
# size x C x H x W bytes, within the dataset cap.
SYNTHETIC_MAX_SIDE = 4096
SYNTHETIC_DEFAULT_SHAPE = (3, 32, 32)
SYNTHETIC_DEFAULT_SIZE = 512
# Longest dataset path and longest name in it (Linux PATH_MAX and NAME_MAX).
DATASET_PATH_MAX = 4096
DATASET_NAME_MAX = 255
# The settings an operator changes, quoted in the messages (the engine does not read settings).
DATA_ROOTS_SETTING = "PRUNESCAPE_DATA_ROOTS"
MAX_BYTES_SETTING = "PRUNESCAPE_MAX_DATASET_BYTES"


def synthetic_bytes(shape: Sequence[int] | None, size: int | None) -> int:
    """Bytes of a synthetic set: size x C x H x W uint8 (None: the engine's defaults)."""
    shape = SYNTHETIC_DEFAULT_SHAPE if shape is None else shape
    size = SYNTHETIC_DEFAULT_SIZE if size is None else size
    return int(size) * math.prod(int(d) for d in shape)


def check_synthetic_size(shape: Sequence[int] | None, size: int | None, max_bytes: int) -> None:
    """DataError when a synthetic set has a side above SYNTHETIC_MAX_SIDE or exceeds `max_bytes`."""
    shape = tuple(SYNTHETIC_DEFAULT_SHAPE if shape is None else shape)
    size = SYNTHETIC_DEFAULT_SIZE if size is None else size
    if any(d > SYNTHETIC_MAX_SIDE for d in shape):
        raise DataError(
            f"synthetic: every dimension of synthetic_shape must be <= {SYNTHETIC_MAX_SIDE}, got {list(shape)}"
        )
    total = synthetic_bytes(shape, size)
    if total > max_bytes:
        dims = " x ".join(str(d) for d in (size, *shape))
        raise DataError(
            f"synthetic: {dims} = {total} bytes, above the cap of {max_bytes} bytes a run may load "
            f"({MAX_BYTES_SETTING}); use a smaller synthetic_size or synthetic_shape"
        )


def resolve_dataset_path(path: str | os.PathLike[str], roots: Sequence[str | os.PathLike[str]]) -> Path:
    """The real path a dataset `path` names, refused with a DataError unless it lies inside a root.

    - `~` and `~user` are never expanded (that would enumerate home directories, and the API and the
      worker may not agree on whose home it is);
    - a relative path is taken from the first root;
    - symlinks and `..` are resolved first (`os.path.realpath`), so neither can leave the roots;
    - NUL characters, over-long paths and names are refused.
    The messages quote only the caller's own `path` and the setting to change, never a root or where
    a symlink points: API error bodies must not show readers the server's directories.
    """
    text = os.fspath(path)
    if "\x00" in text:
        raise DataError("dataset.path must not contain NUL characters")
    if text == "":
        raise DataError("dataset.path is required")
    if len(text) > DATASET_PATH_MAX:
        raise DataError(f"dataset.path is {len(text)} characters, above the limit of {DATASET_PATH_MAX}")
    if any(len(os.fsencode(part)) > DATASET_NAME_MAX for part in text.split("/")):
        raise DataError(f"dataset.path has a name longer than {DATASET_NAME_MAX} bytes")
    if text.startswith("~"):
        raise DataError(
            f"dataset.path {text!r} starts with '~', which is never expanded; give an absolute path "
            f"inside the allowed data roots ({DATA_ROOTS_SETTING}) or one relative to the first of them"
        )
    real_roots = [Path(os.path.realpath(root)) for root in roots]
    candidate = Path(text) if os.path.isabs(text) else Path(real_roots[0] if real_roots else "/", text)
    resolved = Path(os.path.realpath(candidate))
    if not any(resolved.is_relative_to(root) for root in real_roots):
        raise DataError(
            f"dataset.path {text!r} is outside the allowed data roots; an operator can add its "
            f"directory to {DATA_ROOTS_SETTING} (the data directory is always allowed)"
        )
    return resolved


# --------------------------------------------------------------------------------------- layouts


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
    root = Path(path)  # never expanduser: `~` is refused by resolve_dataset_path, not guessed at
    try:
        _check_layout(name, root, info)
    except OSError as exc:  # e.g. a name too long, a directory we may not list
        raise DataError(f"{name}: {root} cannot be read ({exc.strerror}); expected {info.layout}") from None


def _check_layout(name: str, root: Path, info: DatasetInfo) -> None:
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
