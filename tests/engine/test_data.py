"""Data sets read from tiny files written in the real formats, and the on-device augmentation."""

from __future__ import annotations

import gzip
import pickle
import struct
import tracemalloc

import numpy as np
import pytest
import torch

from workers.engine.catalog import CIFAR10_FILES, resolve_dataset_path
from workers.engine.data import DatasetSpec, check_dataset, dataset_names, load_dataset, random_crop_flip
from workers.engine.errors import DataError

# ------------------------------------------------------------------------------------ file writers


def write_cifar(root, n_per_batch=4, seed=0):
    """The CIFAR-10 python version: pickled dicts with b'data' (uint8 N x 3072) and b'labels'."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"data": images, b"labels": labels}, f)
        written[name] = (images, labels)
    return folder, written


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 2051 if array.ndim == 3 else 2049
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.astype(np.uint8).tobytes()


def write_fashion(root, gz: bool, n_train=6, n_val=3, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_val, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_val, dtype=np.uint8),
    }
    for stem, array in arrays.items():
        if gz:
            with gzip.open(root / f"{stem}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            (root / stem).write_bytes(idx_bytes(array))
    return arrays


# ---------------------------------------------------------------------------------------- CIFAR-10


def test_cifar10_reads_the_pickle_format(tmp_path):
    folder, written = write_cifar(tmp_path)
    data = load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    assert (data.n_train, data.n_val, data.num_classes, data.input_shape) == (20, 4, 10, (3, 32, 32))
    # Validation is the test batch, in file order, normalised by the training statistics.
    train_pixels = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 1024)
    mean = train_pixels.transpose(1, 0, 2).reshape(3, -1).mean(axis=1) / 255
    std = train_pixels.transpose(1, 0, 2).reshape(3, -1).std(axis=1, ddof=1) / 255
    np.testing.assert_allclose(data.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(data.std, std, rtol=1e-6)
    x, y = next(data.val_batches(10, device="cpu"))
    assert y.tolist() == written["test_batch"][1]
    raw = torch.from_numpy(written["test_batch"][0].reshape(4, 3, 32, 32)).float() / 255
    expected = (raw - torch.tensor(mean).view(1, 3, 1, 1).float()) / torch.tensor(std).view(
        1, 3, 1, 1
    ).float()
    torch.testing.assert_close(x, expected, atol=1e-5, rtol=1e-5)
    # The batches directory itself is accepted as the path too.
    assert load_dataset(DatasetSpec("cifar10", path=str(folder))).n_train == 20


def test_cifar10_malformed_and_missing_files_name_the_path(tmp_path):
    folder, _ = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR-10 pickle.*data_batch_1\.\.5"):
        load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    with open(folder / "data_batch_3", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"data_batch_3 b'data' is uint8 \(2, 100\)"):
        load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_3 is missing"):
        check_dataset(DatasetSpec("cifar10", path=str(tmp_path)))


# ------------------------------------------------------------------------------------ FashionMNIST


@pytest.mark.parametrize("gz", [False, True])
def test_fashionmnist_reads_idx_raw_and_gz(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    data = load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
    assert (data.n_train, data.n_val, data.input_shape) == (6, 3, (1, 28, 28))
    x, y = next(data.val_batches(100, device="cpu"))
    assert y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    restored = x * data.std[0] + data.mean[0]
    torch.testing.assert_close(
        restored[:, 0] * 255, torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float(), atol=1e-3, rtol=0
    )


def test_fashionmnist_bad_magic_and_truncation_name_the_path(tmp_path):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(struct.pack(">ii", 1234, 6) + bytes(6))
    with pytest.raises(DataError, match=rf"{path} has magic number 1234, expected 2049"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
    path.write_bytes(struct.pack(">ii", 2049, 6) + bytes(5))
    with pytest.raises(DataError, match=rf"{path} holds 5 bytes after the header"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
    path.write_bytes(struct.pack(">ii", 2049, 5) + bytes(5))
    with pytest.raises(DataError, match="has 6 images but .* has 5 labels"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))


def test_fashionmnist_corrupt_gzip_names_the_path(tmp_path):
    write_fashion(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match=rf"{path} cannot be read"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))


# ------------------------------------------------------------------------------------------ digits


def test_digits_split_is_deterministic_stratified_and_seeded():
    a = load_dataset(DatasetSpec("digits", seed=3))
    b = load_dataset(DatasetSpec("digits", seed=3))
    c = load_dataset(DatasetSpec("digits", seed=4))
    assert (a.n_train, a.n_val) == (1437, 360)  # 1797 images, 20 % held out
    ya = torch.cat([y for _, y in a.val_batches(1000, device="cpu")])
    yb = torch.cat([y for _, y in b.val_batches(1000, device="cpu")])
    xa = torch.cat([x for x, _ in a.val_batches(1000, device="cpu")])
    xc = torch.cat([x for x, _ in c.val_batches(1000, device="cpu")])
    assert torch.equal(ya, yb)
    assert not torch.equal(xa, xc)
    counts = torch.bincount(ya, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # each class ~ 20 % of its ~180 images
    assert a.input_shape == (1, 8, 8) and a.num_classes == 10


def test_digits_is_not_augmented_and_mean_std_come_from_training_set():
    data = load_dataset(DatasetSpec("digits"))
    generator = torch.Generator().manual_seed(0)
    x = torch.cat([x for x, _ in data.train_batches(500, device="cpu", generator=generator)])
    # Without augmentation an epoch is a permutation of the normalised training set: mean 0, std 1.
    assert x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert x.std().item() == pytest.approx(1.0, abs=1e-3)
    assert 0.2 < data.mean[0] < 0.4  # digits are mostly background


# ------------------------------------------------------------------------------------ augmentation


def test_augmentation_is_reproducible_from_the_generator_state(tmp_path):
    write_cifar(tmp_path, n_per_batch=8)
    data = load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    generator = torch.Generator().manual_seed(123)
    state = generator.get_state()
    first = list(data.train_batches(16, device="cpu", generator=generator))
    after_first = generator.get_state()
    generator.set_state(state)
    # Consuming only part of an epoch leaves the generator where a full epoch leaves it.
    partial = data.train_batches(16, device="cpu", generator=generator)
    assert torch.equal(generator.get_state(), after_first)
    again = [next(partial)] + list(partial)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert [x.shape for x, _ in first] == [(16, 3, 32, 32), (16, 3, 32, 32), (8, 3, 32, 32)]
    assert all(x.dtype == torch.float32 and y.dtype == torch.int64 for x, y in first)
    # A different epoch differs.
    second = list(data.train_batches(16, device="cpu", generator=generator))
    assert not torch.equal(first[0][0], second[0][0])


def test_cifar_augmentation_crops_and_flips(tmp_path):
    write_cifar(tmp_path, n_per_batch=8)
    data = load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    plain = torch.cat(
        [
            x
            for x, _ in data.train_batches(
                40, device="cpu", generator=torch.Generator().manual_seed(1), augment=False
            )
        ]
    )
    augmented = torch.cat(
        [x for x, _ in data.train_batches(40, device="cpu", generator=torch.Generator().manual_seed(1))]
    )
    assert plain.shape == augmented.shape == (40, 3, 32, 32)
    assert not torch.equal(plain, augmented)
    # Zero padding shows up as pixels equal to the normalised value of 0.
    zero = torch.tensor([-m / s for m, s in zip(data.mean, data.std, strict=True)]).view(1, 3, 1, 1)
    assert (augmented - zero).abs().amax(dim=(1, 2)).min() < 1e-5  # some column/row is all padding


def test_random_crop_flip_moves_pixels_as_told():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    identity = random_crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([False]), pad=1)
    assert torch.equal(identity, x)
    flipped = random_crop_flip(x, torch.tensor([[1, 1]]), torch.tensor([True]), pad=1)
    assert torch.equal(flipped, x.flip(-1))
    shifted = random_crop_flip(x, torch.tensor([[0, 2]]), torch.tensor([False]), pad=1)
    assert shifted[0, 0, 0].tolist() == [0, 0, 0, 0]  # top row came from the padding
    assert shifted[0, 0, 1].tolist() == [1, 2, 3, 0]  # shifted left by one, zero on the right


# ----------------------------------------------------------------------- synthetic, spec, misc


def test_synthetic_is_seeded_and_shaped():
    spec = DatasetSpec(
        "synthetic", synthetic_shape=(3, 16, 16), synthetic_classes=5, synthetic_size=50, seed=7
    )
    a, b = load_dataset(spec), load_dataset(spec)
    assert (a.n_train, a.n_val, a.input_shape, a.num_classes) == (40, 10, (3, 16, 16), 5)
    xa, ya = next(a.val_batches(10, device="cpu"))
    xb, yb = next(b.val_batches(10, device="cpu"))
    assert torch.equal(xa, xb) and torch.equal(ya, yb) and int(ya.max()) < 5


def test_calibration_batches_are_fixed_normalised_cpu_tensors():
    data = load_dataset(DatasetSpec("synthetic", synthetic_size=100))
    first = data.calibration_batches(3, 8)
    second = data.calibration_batches(3, 8)
    assert [t.shape for t in first] == [(8, 3, 32, 32)] * 3
    assert all(torch.equal(p, q) and p.device.type == "cpu" for p, q in zip(first, second, strict=True))


def test_spec_from_dict_rejects_unknown_fields_and_names():
    spec = DatasetSpec.from_dict({"name": "synthetic", "synthetic_shape": [1, 8, 8]})
    assert spec.synthetic_shape == (1, 8, 8)
    assert DatasetSpec.from_dict(spec.to_dict()) == spec
    unset = DatasetSpec.from_dict(
        {"name": "synthetic", "path": None, "synthetic_shape": None, "synthetic_size": None}
    )
    assert (unset.synthetic_shape, unset.synthetic_size) == ((3, 32, 32), 512)
    with pytest.raises(DataError, match="unknown field.*colour"):
        DatasetSpec.from_dict({"name": "digits", "colour": 1})
    with pytest.raises(DataError, match="'imagenet'"):
        check_dataset(DatasetSpec("imagenet"))
    assert set(dataset_names()) == {"digits", "cifar10", "fashionmnist", "imagefolder", "synthetic"}


def test_imagefolder_reads_train_and_val(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for label in ("cat", "dog"):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / label / f"{i}.png")
    data = load_dataset(DatasetSpec("imagefolder", path=str(tmp_path), image_size=32))
    data.num_workers = 0  # keep the test in one process
    assert (data.num_classes, data.n_train, data.n_val, data.input_shape) == (2, 4, 4, (3, 32, 32))
    x, y = next(iter(data.train_batches(4, device="cpu", generator=torch.Generator().manual_seed(0))))
    assert x.shape == (4, 3, 32, 32) and sorted(y.tolist()) == [0, 0, 1, 1]
    x, y = next(iter(data.val_batches(4, device="cpu")))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 0, 1, 1]
    assert [t.shape for t in data.calibration_batches(2, 2)] == [(2, 3, 32, 32)] * 2


# ------------------------------------------------------------------- hostile files (issue 13)
# Every loader refuses what its format never holds before it builds anything from it: a pickle's
# globals, a file or a header bigger than the data set can be, a path outside the data roots.

NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]  # numpy's array reconstructor, whatever its module


class _Python2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for the published CIFAR-10 batches (protocol 2): every
    str and bytes as a Python 2 `str` (BINSTRING) and the reconstructor under numpy 1.x's module."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        raw = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str
    dispatch[str] = _save_py2_str

    def save_global(self, obj, name=None):
        if obj is NP_RECONSTRUCT:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def write_cifar_as(root, protocol, n_per_batch=3):
    """CIFAR-10 batches with every key of the real files, pickled by `protocol` ("py2": as published)."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            b"batch_label": f"{name} of 6".encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, n_per_batch)],
            b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n_per_batch)],
        }
        with open(folder / name, "wb") as f:
            if protocol == "py2":
                _Python2Pickler(f, protocol=2).dump(entry)
            else:
                pickle.dump(entry, f, protocol=protocol)
        written[name] = entry
    return folder, written


@pytest.mark.parametrize("protocol", ["py2", 2, 3, 4, 5])
def test_cifar10_real_format_loads_through_the_restricted_unpickler(tmp_path, protocol):
    folder, written = write_cifar_as(tmp_path, protocol)
    if protocol == "py2":  # the stand-in really is shaped like the published files
        raw = (folder / "data_batch_1").read_bytes()
        assert raw.startswith(b"\x80\x02}") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
        assert b"_codecs" not in raw
    data = load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    assert (data.n_train, data.n_val) == (15, 3)
    x, y = next(data.val_batches(10, device="cpu"))
    assert y.tolist() == written["test_batch"][b"labels"]
    restored = x * torch.tensor(data.std).view(1, 3, 1, 1) + torch.tensor(data.mean).view(1, 3, 1, 1)
    expected = torch.from_numpy(written["test_batch"][b"data"].reshape(3, 3, 32, 32)).float()
    torch.testing.assert_close(restored * 255, expected, atol=1e-3, rtol=0)


class _RunsCode:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


def _calling(module: str, name: str, argument: str) -> bytes:
    """A protocol-2 pickle that calls module.name(argument) while it loads."""
    text = argument.encode()
    return (
        b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(text)) + text + b"\x85R."
    )


@pytest.mark.parametrize("how", ["reduce", "builtins.exec", "__builtin__.eval", "numpy gadget"])
def test_cifar10_pickle_that_runs_code_is_refused_before_it_runs(tmp_path, how):
    folder, _ = write_cifar(tmp_path)
    marker = tmp_path / "ran"
    batch = folder / "data_batch_2"
    if how == "reduce":
        entry = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_RunsCode(f"touch {marker}")]}
        with open(batch, "wb") as f:
            pickle.dump(entry, f)
        refused = "posix.system"
    elif how == "builtins.exec":
        batch.write_bytes(_calling("builtins", "exec", f"open({str(marker)!r}, 'w').close()"))
        refused = "builtins.exec"
    elif how == "__builtin__.eval":  # Python 2's name, which the stock unpickler maps to builtins
        batch.write_bytes(_calling("__builtin__", "eval", f"open({str(marker)!r}, 'w').close()"))
        refused = "__builtin__.eval"
    else:  # a numpy function that is not one of the array reconstructors
        batch.write_bytes(_calling("numpy", "fromfile", str(folder / "data_batch_1")))
        refused = "numpy.fromfile"
    with pytest.raises(DataError) as info:
        load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
    assert str(info.value) == (
        f"cifar10: {batch} refers to {refused}, which a CIFAR-10 batch never holds; refused"
    )
    assert not marker.exists()


def test_cifar10_object_arrays_are_refused(tmp_path):
    folder, _ = write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.array([1, 2], dtype=object), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"test_batch holds a numpy array of dtype 'O8'.*refused"):
        load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))


def test_cifar10_batch_bigger_than_a_batch_can_be_is_refused_unread(tmp_path):
    folder, _ = write_cifar(tmp_path)
    huge = folder / "data_batch_4"
    with open(huge, "r+b") as f:
        f.truncate(2**40)  # sparse: 1 TiB that costs no disk
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{huge} is 1099511627776 bytes, above the 67108864 bytes"):
            load_dataset(DatasetSpec("cifar10", path=str(tmp_path)))
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


def test_cifar10_files_count_against_the_dataset_cap(tmp_path):
    folder, _ = write_cifar(tmp_path)
    total = sum((folder / name).stat().st_size for name in CIFAR10_FILES)
    assert load_dataset(DatasetSpec("cifar10", path=str(tmp_path)), max_bytes=total).n_train == 20
    with pytest.raises(DataError, match=rf"cifar10: the files at {folder} hold {total} bytes, above the cap"):
        load_dataset(DatasetSpec("cifar10", path=str(tmp_path)), max_bytes=total - 1)


def _idx_header(magic: int, *dims: int) -> bytes:
    return struct.pack(f">i{len(dims)}i", magic, *dims)


def test_fashionmnist_sparse_huge_file_is_refused_without_reading_it(tmp_path):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(_idx_header(2051, 6, 28, 28))
    with open(path, "r+b") as f:
        f.truncate(2**40)  # the sparse 1 TiB file: MemoryError three times
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{path} holds {2**40 - 16} bytes after the header"):
            load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [False, True])
def test_fashionmnist_header_above_the_cap_is_refused_before_the_body(tmp_path, gz):
    write_fashion(tmp_path, gz=gz)
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))

    def write(content: bytes) -> None:
        if gz:
            with gzip.open(path, "wb") as f:
                f.write(content)
        else:
            path.write_bytes(content)

    write(_idx_header(2051, 60000, 28, 28) + bytes(60000 * 28 * 28))  # the real set: 47 MB of pixels
    with pytest.raises(DataError, match=rf"{path} declares 47040000 bytes .* above the cap of 1048576 bytes"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)), max_bytes=2**20)
    write(_idx_header(2051, 2**31 - 1, 2**31 - 1, 2**31 - 1))  # no body at all
    with pytest.raises(DataError, match=r"declares \d+ bytes .* above the cap of 4294967296 bytes"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
    write(_idx_header(2051, -1, 28, 28))
    with pytest.raises(DataError, match=r"dimensions \(-1, 28, 28\) must not be negative"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))


def test_fashionmnist_gzip_bomb_stops_at_its_header_without_inflating(tmp_path):
    write_fashion(tmp_path, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    zeros = bytes(2**20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(_idx_header(2051, 3, 28, 28))
        for _ in range(64):  # 64 MiB of zeros in ~64 KiB of gzip
            f.write(zeros)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{path} holds more than the 2352 bytes its dimensions"):
            load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)))
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gz", [False, True])
def test_fashionmnist_loads_up_to_the_cap_exactly(tmp_path, gz):
    write_fashion(tmp_path, gz=gz)
    pixels_and_labels = 6 * 784 + 6 + 3 * 784 + 3
    data = load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)), max_bytes=pixels_and_labels)
    assert (data.n_train, data.n_val) == (6, 3)
    with pytest.raises(DataError, match="above the cap"):
        load_dataset(DatasetSpec("fashionmnist", path=str(tmp_path)), max_bytes=pixels_and_labels - 1)


def test_synthetic_size_is_capped_before_anything_is_allocated():
    with pytest.raises(DataError, match=r"synthetic_shape must be <= 4096, got \[3, 100000, 100000\]"):
        load_dataset(DatasetSpec("synthetic", synthetic_shape=(3, 100000, 100000)))
    with pytest.raises(
        DataError, match=r"synthetic: 512 x 3 x 4096 x 4096 = 25769803776 bytes, above the cap"
    ):
        load_dataset(DatasetSpec("synthetic", synthetic_shape=(3, 4096, 4096)))
    small = DatasetSpec("synthetic", synthetic_shape=(1, 4, 4), synthetic_size=10)
    assert load_dataset(small, max_bytes=160).n_train == 8
    with pytest.raises(DataError, match="160 bytes, above the cap of 159 bytes"):
        load_dataset(small, max_bytes=159)


# ------------------------------------------------------------------------------------ confinement


def _roots(tmp_path):
    """tmp/roots/shared (an allowed root holding cifar/) and tmp/outside (a valid set, not allowed)."""
    shared = tmp_path / "roots" / "shared"
    shared.mkdir(parents=True)
    write_cifar(shared / "cifar")
    write_cifar(tmp_path / "outside")
    return shared


def test_paths_inside_a_root_load_absolute_relative_or_through_an_inner_symlink(tmp_path):
    shared = _roots(tmp_path)
    roots = [tmp_path / "unrelated", shared]
    assert load_dataset(DatasetSpec("cifar10", path=str(shared / "cifar")), roots=roots).n_train == 20
    # relative paths are taken from the first root
    assert load_dataset(DatasetSpec("cifar10", path="cifar"), roots=[shared]).n_train == 20
    (shared / "alias").symlink_to(shared / "cifar")
    assert load_dataset(DatasetSpec("cifar10", path=str(shared / "alias")), roots=roots).n_train == 20
    assert resolve_dataset_path("cifar/../cifar", [shared]) == (shared / "cifar").resolve()


def test_paths_outside_every_root_are_refused_without_naming_the_roots(tmp_path):
    shared = _roots(tmp_path)
    outside = tmp_path / "outside"
    (shared / "escape").symlink_to(outside)
    attempts = {
        "absolute": str(outside),
        "dotdot": str(shared / ".." / ".." / "outside"),
        "relative dotdot": "../../outside",
        "symlink": str(shared / "escape"),
    }
    for how, path in attempts.items():
        with pytest.raises(DataError) as info:
            load_dataset(DatasetSpec("cifar10", path=path), roots=[shared])
        message = str(info.value)
        assert "outside the allowed data roots" in message and "PRUNESCAPE_DATA_ROOTS" in message, how
        assert str(shared) not in message.replace(path, ""), how  # the roots are not listed
        assert str(outside) not in message.replace(path, ""), how  # nor where a symlink points


def test_a_file_symlinked_out_of_the_root_is_refused(tmp_path):
    shared = _roots(tmp_path)
    batch = shared / "cifar" / "cifar-10-batches-py" / "data_batch_1"
    batch.unlink()
    batch.symlink_to(tmp_path / "outside" / "cifar-10-batches-py" / "data_batch_1")
    with pytest.raises(DataError, match="outside the allowed data roots"):
        load_dataset(DatasetSpec("cifar10", path=str(shared / "cifar")), roots=[shared])


@pytest.mark.parametrize("path", ["~/cifar", "~root/cifar", "~nosuchuser/cifar", "~"])
def test_home_directories_are_never_expanded(tmp_path, path):
    import os

    shared = _roots(tmp_path)
    with pytest.raises(DataError) as info:
        resolve_dataset_path(path, [shared])
    message = str(info.value)
    assert "'~'" in message and "never expanded" in message
    home = os.path.expanduser(path.split("/")[0])
    assert home == path.split("/")[0] or home not in message


def test_nul_empty_and_overlong_paths_are_refused(tmp_path):
    shared = _roots(tmp_path)
    for path, words in [
        ("cifar\x00/etc", "NUL"),
        ("", "required"),
        ("a/" * 2100, "4200 characters, above the limit of 4096"),
        ("x" * 300, "longer than 255 bytes"),
    ]:
        with pytest.raises(DataError, match=words):
            resolve_dataset_path(path, [shared])
