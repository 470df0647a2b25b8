"""The worker confines a stored spec's dataset path to its own data roots and caps the data's size,
from its settings (issue 13): a study stored before the roots changed, or written straight into the
database, cannot make a worker read elsewhere. Through the real path: settings -> load_input ->
RunInput -> the job's data."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from backend.db.models import Run, Study
from backend.db.session import get_engine
from backend.services.study_creation import create_study
from backend.spec import parse_spec
from tests.workers.conftest import TINY_SPEC, sqlite_settings
from workers.engine.catalog import CIFAR10_FILES
from workers.engine.errors import DataError
from workers.jobs import common
from workers.tasks import load_input


def write_cifar(root, n=2):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((n, 3072), np.uint8), b"labels": [1] * n}, f)
    return root


def _run_input(settings, dataset):
    """The RunInput a worker with `settings` builds for the first train run of a study whose stored
    dataset is `dataset` (written into the row, as a study stored before a settings change is)."""
    from backend.db.migrate import upgrade

    upgrade(settings)
    make = sessionmaker(bind=get_engine(settings))
    with make() as s:
        study_id = create_study(s, parse_spec(TINY_SPEC), settings).id
        study = s.get(Study, study_id)
        study.spec = {**study.spec, "dataset": dataset}
        s.commit()
        run_id = s.scalar(sa.select(Run.id).where(Run.study_id == study_id, Run.kind == "train").limit(1))
        return load_input(s, run_id, settings)


@pytest.fixture(autouse=True)
def _fresh_data_cache():
    common._data_cache.clear()
    yield
    common._data_cache.clear()


def test_a_worker_reads_inside_its_roots_and_refuses_outside(tmp_path):
    settings = sqlite_settings(tmp_path / "data", data_roots=[tmp_path / "shared"])
    write_cifar(tmp_path / "shared" / "cifar")
    write_cifar(tmp_path / "elsewhere")
    assert common.get_data(_run_input(settings, {"name": "cifar10", "path": "cifar"})).n_train == 10
    outside = _run_input(settings, {"name": "cifar10", "path": str(tmp_path / "elsewhere")})
    with pytest.raises(DataError, match="outside the allowed data roots.*PRUNESCAPE_DATA_ROOTS"):
        common.get_data(outside)
    with pytest.raises(DataError, match="never expanded"):
        common.get_data(_run_input(settings, {"name": "cifar10", "path": "~/cifar"}))


def test_a_worker_caps_the_data_it_loads_from_its_settings(tmp_path):
    spec = {"name": "synthetic", "synthetic_shape": [3, 8, 8], "synthetic_size": 10}
    capped = sqlite_settings(tmp_path / "a", max_dataset_bytes=10 * 3 * 8 * 8 - 1)
    with pytest.raises(DataError, match="above the cap of 1919 bytes"):
        common.get_data(_run_input(capped, spec))
    enough = sqlite_settings(tmp_path / "b", max_dataset_bytes=10 * 3 * 8 * 8)
    assert common.get_data(_run_input(enough, spec)).n_train == 8
