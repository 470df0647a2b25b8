"""The worker's data loading (workers/jobs.py: get_data) confines a stored spec's dataset path to
this worker's data roots and caps its size, from the settings (issue 13): a study stored before the
roots changed, or written straight into the database, cannot make a worker read elsewhere."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from backend.settings import get_settings
from workers import jobs
from workers.engine.catalog import CIFAR10_FILES
from workers.engine.errors import DataError


def write_cifar(root, n=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((n, 3072), np.uint8), b"labels": [1] * n}, f)
    return root


@pytest.fixture
def worker_env(monkeypatch, tmp_path):
    """The process settings of a worker whose data roots are tmp/shared (and its data dir tmp/data)."""
    monkeypatch.setenv("PRUNESCAPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PRUNESCAPE_DATA_ROOTS", str(tmp_path / "shared"))
    get_settings.cache_clear()
    jobs._data_cache.clear()
    yield monkeypatch
    get_settings.cache_clear()
    jobs._data_cache.clear()


def test_get_data_reads_inside_the_roots_and_refuses_outside(worker_env, tmp_path):
    write_cifar(tmp_path / "shared" / "cifar")
    write_cifar(tmp_path / "elsewhere")
    assert jobs.get_data({"name": "cifar10", "path": "cifar"}).n_train == 10
    assert jobs.get_data({"name": "cifar10", "path": str(tmp_path / "shared" / "cifar")}).n_train == 10
    with pytest.raises(DataError, match="outside the allowed data roots.*PRUNESCAPE_DATA_ROOTS"):
        jobs.get_data({"name": "cifar10", "path": str(tmp_path / "elsewhere")})
    with pytest.raises(DataError, match="never expanded"):
        jobs.get_data({"name": "cifar10", "path": "~/cifar"})


def test_get_data_caps_the_size_from_the_settings(worker_env):
    worker_env.setenv("PRUNESCAPE_MAX_DATASET_BYTES", str(10 * 3 * 8 * 8 - 1))
    get_settings.cache_clear()
    spec = {"name": "synthetic", "synthetic_shape": [3, 8, 8], "synthetic_size": 10}
    with pytest.raises(DataError, match="above the cap of 1919 bytes"):
        jobs.get_data(spec)
    worker_env.setenv("PRUNESCAPE_MAX_DATASET_BYTES", str(10 * 3 * 8 * 8))
    get_settings.cache_clear()
    assert jobs.get_data(spec).n_train == 8
