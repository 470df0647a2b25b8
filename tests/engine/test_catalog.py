"""The torch-free catalog: the API validates specs with it, so it must import without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workers.engine.catalog import DATASETS, MODELS, check_dataset_path
from workers.engine.errors import DataError


def test_catalog_imports_without_torch():
    code = "import sys, workers.engine.catalog; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_catalog_lists_the_spec_models_and_datasets():
    assert {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "mobilenetv2_cifar"} <= set(MODELS)
    assert {"resnet18", "resnet50", "mobilenet_v2", "shufflenet_v2_x1_0", "alexnet", "digits_cnn"} <= set(
        MODELS
    )
    assert MODELS["resnet56"].input_shape == (3, 32, 32)
    assert MODELS["resnet50"].input_shape == (3, 224, 224)
    assert MODELS["digits_cnn"].input_shape == (1, 8, 8)
    assert set(DATASETS) == {"digits", "cifar10", "fashionmnist", "imagefolder", "synthetic"}
    assert not DATASETS["digits"].needs_path and DATASETS["cifar10"].needs_path


def test_pathless_datasets_need_no_path():
    check_dataset_path("digits", None)
    check_dataset_path("synthetic", None)


def test_unknown_dataset_is_named():
    with pytest.raises(DataError, match="'mnist'"):
        check_dataset_path("mnist", None)


@pytest.mark.parametrize("name", ["cifar10", "fashionmnist", "imagefolder"])
def test_missing_path_names_the_layout(name):
    with pytest.raises(DataError, match="path is required"):
        check_dataset_path(name, None)


def test_cifar_missing_batch_names_the_file(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for fname in ["data_batch_1", "data_batch_2", "data_batch_4", "data_batch_5", "test_batch"]:
        (folder / fname).write_bytes(b"x")
    with pytest.raises(DataError, match=r"cifar-10-batches-py/data_batch_3 is missing.*data_batch_1\.\.5"):
        check_dataset_path("cifar10", tmp_path)
    (folder / "data_batch_3").write_bytes(b"x")
    check_dataset_path("cifar10", tmp_path)  # the parent directory
    check_dataset_path("cifar10", folder)  # or the batches directory itself


def test_fashionmnist_accepts_raw_or_gz(tmp_path):
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    for fname in names:
        (tmp_path / fname).write_bytes(b"x")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        check_dataset_path("fashionmnist", tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"x")
    check_dataset_path("fashionmnist", tmp_path)


def test_imagefolder_needs_train_and_val_with_same_classes(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="val is missing"):
        check_dataset_path("imagefolder", tmp_path)
    (tmp_path / "val" / "dog").mkdir(parents=True)
    with pytest.raises(DataError, match="different classes"):
        check_dataset_path("imagefolder", tmp_path)
    (tmp_path / "val" / "cat").mkdir()
    (tmp_path / "train" / "dog").mkdir()
    check_dataset_path("imagefolder", tmp_path)


def test_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        check_dataset_path("cifar10", tmp_path / "nope")
