"""Data sets of prunescape, read from local files in their standard formats (nothing downloads).

Two kinds of holder behind one interface (`Data`):

- `TensorData` (digits, cifar10, fashionmnist, synthetic): the whole set as uint8 NCHW tensors,
  copied to each device once. A training epoch draws every random decision (shuffle, crop
  offsets, flips) up front from the caller's `torch.Generator`, then crops, flips and normalises
  whole batches on the device. Same generator state -> same epoch, so training resumes exactly.
- `ImageFolderData` (imagefolder): torchvision `ImageFolder` with the ImageNet transforms through
  a `DataLoader` (worker processes, pinned memory on CUDA).

Augmentation per set (only when `augment=True`):
- cifar10: zero-pad 4, random 32x32 crop, random horizontal flip (the study's recipe).
- fashionmnist: zero-pad 2, random 28x28 crop, random horizontal flip (clothes stay clothes when
  mirrored; the smaller pad keeps the same ~1/8 relative shift as CIFAR).
- digits: none (a mirrored digit is another glyph, and 8x8 leaves no room to shift).
- synthetic: none (benchmarks only).

Validation split: cifar10 and fashionmnist use their official test files; digits and synthetic
use a seeded stratified `val_fraction` split. Normalisation uses the training split's per-channel
mean and std (imagefolder: the ImageNet constants, as torchvision's recipes).

Files named by a user are hostile until read: `load_dataset` confines the path to the data roots
it is given, caps the decoded bytes (`max_bytes`) before allocating them, and reads CIFAR pickles
with an unpickler that can build nothing but the dicts, lists, bytes and uint8 arrays the format
holds (no pickle can run code here).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from workers.engine.catalog import (
    CIFAR10_FILES,
    CIFAR_BATCH_MAX_BYTES,
    DATASETS,
    FASHIONMNIST_FILES,
    MAX_BYTES_SETTING,
    MAX_DATASET_BYTES,
    SYNTHETIC_DEFAULT_SHAPE,
    SYNTHETIC_DEFAULT_SIZE,
    check_dataset_path,
    check_synthetic_size,
    cifar10_dir,
    fashionmnist_file,
    resolve_dataset_path,
)
from workers.engine.cifar_pickle import read_cifar_batch
from workers.engine.errors import DataError
from workers.engine.idx import read_idx

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Batch = tuple[Tensor, Tensor]


# --------------------------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    path: str | None = None
    seed: int = 0
    val_fraction: float = 0.2
    synthetic_shape: tuple[int, int, int] = SYNTHETIC_DEFAULT_SHAPE
    synthetic_classes: int = 10
    synthetic_size: int = SYNTHETIC_DEFAULT_SIZE
    image_size: int = 224  # imagefolder only: side of the square crop fed to the model

    @classmethod
    def from_dict(cls, d: dict) -> DatasetSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise DataError(
                f"dataset: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if "name" not in d:
            raise DataError("dataset: field 'name' is required")
        # None means "the default" (the API's pydantic model dumps unset optional fields as None).
        values = {key: value for key, value in d.items() if value is not None or key == "path"}
        if values.get("path") is not None:
            values["path"] = str(values["path"])
        if "synthetic_shape" in values:
            values["synthetic_shape"] = tuple(int(v) for v in values["synthetic_shape"])
        return cls(**values)

    def to_dict(self) -> dict:
        return {**asdict(self), "synthetic_shape": list(self.synthetic_shape)}


def dataset_names() -> list[str]:
    return list(DATASETS)


def check_dataset(spec: DatasetSpec, *, max_bytes: int = MAX_DATASET_BYTES) -> None:
    """Cheap check before any run is planned: names, sizes and files only, nothing parsed."""
    if spec.name not in DATASETS:
        raise DataError(f"dataset.name: unknown data set {spec.name!r}; known: {', '.join(DATASETS)}")
    if not 0.0 < spec.val_fraction < 1.0:
        raise DataError(f"dataset.val_fraction must be in (0, 1), got {spec.val_fraction}")
    if spec.name == "synthetic":
        shape = spec.synthetic_shape
        if len(shape) != 3 or any(d < 1 for d in shape):
            raise DataError(f"dataset.synthetic_shape must be (C, H, W) positive, got {shape}")
        if spec.synthetic_classes < 2:
            raise DataError(f"dataset.synthetic_classes must be >= 2, got {spec.synthetic_classes}")
        if spec.synthetic_size < 2:
            raise DataError(f"dataset.synthetic_size must be >= 2, got {spec.synthetic_size}")
        check_synthetic_size(shape, spec.synthetic_size, max_bytes)
    if spec.name == "imagefolder" and spec.image_size < 16:
        raise DataError(f"dataset.image_size must be >= 16, got {spec.image_size}")
    check_dataset_path(spec.name, spec.path)


# ---------------------------------------------------------------------------------------- holders


@dataclass(frozen=True)
class Augment:
    pad: int = 0  # zero padding before a random crop back to the original size; 0 = no crop
    flip: bool = False  # random horizontal flip with probability 1/2


AUGMENT = {
    "cifar10": Augment(pad=4, flip=True),
    "fashionmnist": Augment(pad=2, flip=True),
    "digits": Augment(),
    "synthetic": Augment(),
}


class Data(ABC):
    """What training and evaluation see of a data set."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    n_train: int
    n_val: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @abstractmethod
    def train_batches(
        self, batch_size: int, *, device: torch.device | str, generator: torch.Generator, augment: bool = True
    ) -> Iterator[Batch]:
        """One epoch of shuffled `(x float32 normalised NCHW, y int64)` batches on `device`."""

    @abstractmethod
    def val_batches(self, batch_size: int, *, device: torch.device | str) -> Iterator[Batch]:
        """The whole validation split in a fixed order, normalised, on `device`."""

    @abstractmethod
    def calibration_batches(self, n_batches: int, batch_size: int) -> list[Tensor]:
        """Normalised, un-augmented training images on the CPU in a fixed order (int8 calibration)."""


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def random_crop_flip(images: Tensor, offsets: Tensor, flips: Tensor, pad: int) -> Tensor:
    """Per-sample crop of the zero-padded batch at `offsets` (N, 2: row, col), mirrored where `flips`.

    One gather for the whole batch, on whatever device `images` lives.
    """
    n, _, height, width = images.shape
    if pad > 0:
        images = F.pad(images, (pad, pad, pad, pad))
    device = images.device
    rows = offsets[:, :1] + torch.arange(height, device=device)  # (N, H)
    cols_forward = torch.arange(width, device=device)
    cols = offsets[:, 1:] + torch.where(flips[:, None], width - 1 - cols_forward, cols_forward)  # (N, W)
    batch_index = torch.arange(n, device=device)[:, None, None]
    hwc = images.permute(0, 2, 3, 1)
    cropped = hwc[batch_index, rows[:, :, None], cols[:, None, :]]  # (N, H, W, C)
    return cropped.permute(0, 3, 1, 2).contiguous()


class TensorData(Data):
    """A small data set held whole as uint8 NCHW tensors (see the module docstring)."""

    def __init__(
        self,
        name: str,
        train_x: Tensor,
        train_y: Tensor,
        val_x: Tensor,
        val_y: Tensor,
        num_classes: int,
        augment: Augment,
        calibration_seed: int = 0,
    ) -> None:
        assert train_x.dtype == torch.uint8 and val_x.dtype == torch.uint8
        self.name = name
        self.num_classes = num_classes
        self.input_shape = tuple(int(d) for d in train_x.shape[1:])  # type: ignore[assignment]
        self.n_train = int(train_x.shape[0])
        self.n_val = int(val_x.shape[0])
        self.augment = augment
        self.calibration_seed = calibration_seed
        self._cpu = (train_x, train_y.long(), val_x, val_y.long())
        # Statistics of the training split only, in [0, 1] pixel units.
        pixels = train_x.to(torch.float64).div_(255.0).transpose(0, 1).reshape(train_x.shape[1], -1)
        self.mean = tuple(float(v) for v in pixels.mean(dim=1))
        self.std = tuple(max(float(v), 1e-6) for v in pixels.std(dim=1))
        self._on_device: dict[str, tuple[Tensor, ...]] = {}

    def _tensors(self, device: torch.device | str) -> tuple[Tensor, ...]:
        """(train_x, train_y, val_x, val_y, scale, shift) on `device`, copied there once."""
        key = str(torch.device(device))
        if key not in self._on_device:
            mean = torch.tensor(self.mean, dtype=torch.float32)
            std = torch.tensor(self.std, dtype=torch.float32)
            scale = (1.0 / (255.0 * std)).view(1, -1, 1, 1)
            shift = (mean / std).view(1, -1, 1, 1)
            self._on_device[key] = tuple(t.to(device) for t in (*self._cpu, scale, shift))
        return self._on_device[key]

    @staticmethod
    def _normalise(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
        return x.float().mul_(scale).sub_(shift)

    def train_batches(
        self, batch_size: int, *, device: torch.device | str, generator: torch.Generator, augment: bool = True
    ) -> Iterator[Batch]:
        """One epoch of shuffled (and, by default, augmented) batches.

        Every random number of the epoch is drawn here, before the first batch is yielded, so the
        generator's state afterwards does not depend on how much of the epoch is consumed.
        """
        _check_batch_size(batch_size)
        if not isinstance(generator, torch.Generator):
            raise ValueError("train_batches: generator must be a torch.Generator (it makes resumes exact)")
        n = self.n_train
        _, height, width = self.input_shape
        order = torch.randperm(n, generator=generator, device=generator.device)
        policy = self.augment if augment else Augment()
        offsets = flips = None
        if policy.pad > 0:
            offsets = torch.randint(
                0, 2 * policy.pad + 1, (n, 2), generator=generator, device=generator.device
            )
        if policy.flip:
            flips = torch.rand(n, generator=generator, device=generator.device) < 0.5
        return self._iterate_train(batch_size, device, order, offsets, flips, policy.pad)

    def _iterate_train(
        self,
        batch_size: int,
        device: torch.device | str,
        order: Tensor,
        offsets: Tensor | None,
        flips: Tensor | None,
        pad: int,
    ) -> Iterator[Batch]:
        train_x, train_y, _, _, scale, shift = self._tensors(device)
        order = order.to(train_x.device)
        if offsets is None and flips is not None:
            offsets = torch.full((self.n_train, 2), pad, dtype=torch.long)
        if offsets is not None:
            offsets = offsets.to(train_x.device)
            flips = (
                flips.to(train_x.device)
                if flips is not None
                else torch.zeros(self.n_train, dtype=torch.bool, device=train_x.device)
            )
        for start in range(0, self.n_train, batch_size):
            index = order[start : start + batch_size]
            x = train_x[index]
            if offsets is not None:
                x = random_crop_flip(
                    x, offsets[start : start + batch_size], flips[start : start + batch_size], pad
                )
            yield self._normalise(x, scale, shift), train_y[index]

    def val_batches(self, batch_size: int, *, device: torch.device | str) -> Iterator[Batch]:
        _check_batch_size(batch_size)
        _, _, val_x, val_y, scale, shift = self._tensors(device)
        for start in range(0, self.n_val, batch_size):
            yield (
                self._normalise(val_x[start : start + batch_size], scale, shift),
                val_y[start : start + batch_size],
            )

    def calibration_batches(self, n_batches: int, batch_size: int) -> list[Tensor]:
        """Un-augmented, normalised training images in a fixed seeded order (CPU), for int8 calibration."""
        _check_batch_size(batch_size)
        train_x, _, _, _, scale, shift = self._tensors("cpu")
        order = torch.randperm(self.n_train, generator=torch.Generator().manual_seed(self.calibration_seed))
        batches = []
        for i in range(n_batches):
            index = order[i * batch_size : (i + 1) * batch_size]
            if len(index) == 0:
                break
            batches.append(self._normalise(train_x[index], scale, shift))
        return batches


# ---------------------------------------------------------------------------------------- readers


def _digits(spec: DatasetSpec) -> TensorData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    # Pixels are 0..16 integers; scale to the 0..255 range every other set uses.
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=spec.val_fraction, random_state=spec.seed, stratify=labels
    )
    train_idx, val_idx = np.sort(train_idx), np.sort(val_idx)
    return TensorData(
        "digits",
        torch.from_numpy(images[train_idx]),
        torch.from_numpy(labels[train_idx]),
        torch.from_numpy(images[val_idx]),
        torch.from_numpy(labels[val_idx]),
        num_classes=10,
        augment=AUGMENT["digits"],
        calibration_seed=spec.seed,
    )


def _confined(path: Path, roots: Sequence[str | os.PathLike[str]] | None) -> Path:
    """`path` itself resolved inside the roots (a file symlinked out of its directory is refused)."""
    return path if roots is None else resolve_dataset_path(path, roots)


def _cifar10(spec: DatasetSpec, roots: Sequence[str | os.PathLike[str]] | None, max_bytes: int) -> TensorData:
    check_dataset_path("cifar10", spec.path)
    expected = DATASETS["cifar10"].layout
    folder = cifar10_dir(Path(spec.path))  # type: ignore[arg-type]
    paths = [_confined(folder / name, roots) for name in CIFAR10_FILES]
    # Sizes before any byte is read: the decoded arrays are about as big as the files.
    total = 0
    for path in paths:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise DataError(f"cifar10: {path} cannot be read ({exc.strerror}); expected {expected}") from None
        if size > CIFAR_BATCH_MAX_BYTES:
            raise DataError(
                f"cifar10: {path} is {size} bytes, above the {CIFAR_BATCH_MAX_BYTES} bytes a CIFAR-10 batch "
                f"can be; expected {expected}"
            )
        total += size
    if total > max_bytes:
        raise DataError(
            f"cifar10: the files at {folder} hold {total} bytes, above the cap of {max_bytes} bytes a run "
            f"may load ({MAX_BYTES_SETTING})"
        )
    train = [read_cifar_batch(path) for path in paths[:-1]]
    val_x, val_y = read_cifar_batch(paths[-1])
    return TensorData(
        "cifar10",
        torch.from_numpy(np.concatenate([x for x, _ in train])),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        torch.from_numpy(val_x),
        torch.from_numpy(val_y),
        num_classes=10,
        augment=AUGMENT["cifar10"],
        calibration_seed=spec.seed,
    )


def _fashionmnist(
    spec: DatasetSpec, roots: Sequence[str | os.PathLike[str]] | None, max_bytes: int
) -> TensorData:
    check_dataset_path("fashionmnist", spec.path)
    root = Path(spec.path)  # type: ignore[arg-type]
    arrays = {}
    loaded = 0  # the cap counts the four files together
    for stem in FASHIONMNIST_FILES:
        path = fashionmnist_file(root, stem)
        assert path is not None  # check_dataset_path saw it
        path = _confined(path, roots)
        array = read_idx(path, max_bytes=max_bytes, already=loaded)
        loaded += array.nbytes
        want_ndim = 3 if "images" in stem else 1
        if array.ndim != want_ndim:
            raise DataError(
                f"fashionmnist: {path} is a {array.ndim}-d IDX file, expected {want_ndim}-d "
                f"({'images' if want_ndim == 3 else 'labels'})"
            )
        arrays[stem] = (path, array)
    splits = []
    for prefix in ("train", "t10k"):
        (image_path, images), (label_path, labels) = (
            arrays[f"{prefix}-images-idx3-ubyte"],
            arrays[f"{prefix}-labels-idx1-ubyte"],
        )
        if len(images) != len(labels):
            raise DataError(
                f"fashionmnist: {image_path} has {len(images)} images but {label_path} has {len(labels)} labels"
            )
        if labels.size and labels.max() > 9:
            raise DataError(f"fashionmnist: {label_path} has label {labels.max()}, expected 0..9")
        splits.append((torch.from_numpy(images[:, None].copy()), torch.from_numpy(labels.astype(np.int64))))
    (train_x, train_y), (val_x, val_y) = splits
    return TensorData(
        "fashionmnist",
        train_x,
        train_y,
        val_x,
        val_y,
        num_classes=10,
        augment=AUGMENT["fashionmnist"],
        calibration_seed=spec.seed,
    )


def _synthetic(spec: DatasetSpec) -> TensorData:
    generator = torch.Generator().manual_seed(spec.seed)
    n = spec.synthetic_size
    images = torch.randint(0, 256, (n, *spec.synthetic_shape), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, spec.synthetic_classes, (n,), generator=generator)
    n_val = max(1, int(round(n * spec.val_fraction)))
    return TensorData(
        "synthetic",
        images[n_val:],
        labels[n_val:],
        images[:n_val],
        labels[:n_val],
        num_classes=spec.synthetic_classes,
        augment=AUGMENT["synthetic"],
        calibration_seed=spec.seed,
    )


class _Transformed(torch.utils.data.Dataset):
    """The training folder seen through one transform; the folder is scanned only once."""

    def __init__(self, folder, transform) -> None:
        self.folder = folder
        self.transform = transform

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        image, label = self.folder[index]
        return self.transform(image), label


class ImageFolderData(Data):
    """ImageNet-style `train/` + `val/` folders decoded on the fly by DataLoader workers."""

    def __init__(self, root: Path, image_size: int, seed: int, num_workers: int | None = None) -> None:
        from torchvision import datasets, transforms

        resize = round(image_size * 256 / 224)  # 256 for the standard 224 crop
        normalise = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)
        self._train_transform = transforms.Compose(
            [
                transforms.Resize(resize),
                transforms.RandomCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                normalise,
            ]
        )
        self._eval_transform = transforms.Compose(
            [transforms.Resize(resize), transforms.CenterCrop(image_size), transforms.ToTensor(), normalise]
        )
        try:
            self._train = datasets.ImageFolder(str(root / "train"))
            self._val = datasets.ImageFolder(str(root / "val"), transform=self._eval_transform)
        except (FileNotFoundError, OSError) as exc:
            raise DataError(f"imagefolder: {root}: {exc}; expected {DATASETS['imagefolder'].layout}") from exc
        if self._train.classes != self._val.classes:
            raise DataError(f"imagefolder: {root}/train and {root}/val hold different classes")
        self.name = "imagefolder"
        self.num_classes = len(self._train.classes)
        self.input_shape = (3, image_size, image_size)
        self.n_train = len(self._train)
        self.n_val = len(self._val)
        self.mean = IMAGENET_MEAN
        self.std = IMAGENET_STD
        self.seed = seed
        self.num_workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers

    def _loader(self, dataset, batch_size: int, device, **kwargs) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=self.num_workers,
            pin_memory=torch.device(device).type == "cuda",
            **kwargs,
        )

    def train_batches(
        self, batch_size: int, *, device: torch.device | str, generator: torch.Generator, augment: bool = True
    ) -> Iterator[Batch]:
        # Shuffle order and the workers' base seed both come from `generator`; with num_workers > 0
        # the random crops/flips are therefore reproducible from its state too.
        _check_batch_size(batch_size)
        dataset = _Transformed(self._train, self._train_transform if augment else self._eval_transform)
        loader = self._loader(dataset, batch_size, device, shuffle=True, generator=generator)
        return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)

    def val_batches(self, batch_size: int, *, device: torch.device | str) -> Iterator[Batch]:
        _check_batch_size(batch_size)
        loader = self._loader(self._val, batch_size, device, shuffle=False)
        return ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)

    def calibration_batches(self, n_batches: int, batch_size: int) -> list[Tensor]:
        _check_batch_size(batch_size)
        order = torch.randperm(self.n_train, generator=torch.Generator().manual_seed(self.seed))
        subset = torch.utils.data.Subset(
            _Transformed(self._train, self._eval_transform), order[: n_batches * batch_size].tolist()
        )
        return [x for x, _ in self._loader(subset, batch_size, "cpu", shuffle=False)]


def load_dataset(
    spec: DatasetSpec,
    *,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    max_bytes: int = MAX_DATASET_BYTES,
) -> Data:
    """Read the data set `spec` names; missing, malformed or oversized files raise DataError naming
    the path.

    roots: the directories a dataset path may lie in (`catalog.resolve_dataset_path`); the worker
        passes the settings' data roots, so a stored spec is confined again before any file is
        read. None trusts the path as given: the engine CLI and benchmarks, run by the machine's
        own user on their own files.
    max_bytes: the most decoded uint8 data the set may hold (default 4 GiB, `catalog.MAX_DATASET_BYTES`),
        checked against file sizes, IDX headers and synthetic shapes before anything is allocated.
        Image folders are decoded on the fly and not counted.
    """
    info = DATASETS.get(spec.name)
    if roots is not None and info is not None and info.needs_path and spec.path:
        spec = replace(spec, path=str(resolve_dataset_path(spec.path, roots)))
    check_dataset(spec, max_bytes=max_bytes)
    if spec.name == "digits":
        return _digits(spec)
    if spec.name == "cifar10":
        return _cifar10(spec, roots, max_bytes)
    if spec.name == "fashionmnist":
        return _fashionmnist(spec, roots, max_bytes)
    if spec.name == "synthetic":
        return _synthetic(spec)
    return ImageFolderData(Path(spec.path), spec.image_size, spec.seed)  # type: ignore[arg-type]
