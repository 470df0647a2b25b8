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


def test_a_foreign_checkpoint_at_a_runs_path_is_discarded_and_the_run_trains_from_scratch(tmp_path):
    """The train job finds a checkpoint written by another run at its path (a study deleted while
    its run still wrote, before ids were never reused): it does not resume from it; it discards it
    and trains its own run from epoch 1, and says so in the run's result."""
    from backend.artefact_layout import checkpoint_rel
    from workers.engine.models import build_model
    from workers.engine.training import Recipe, train
    from workers.jobs.inputs import JobHooks
    from workers.jobs.train import run_train

    settings = sqlite_settings(tmp_path / "data")
    inp = _run_input(settings, {"name": "digits"})
    path = inp.artifact_root / checkpoint_rel(inp.study_id, inp.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = {
        "study_id": inp.study_id,
        "run_id": inp.run_id + 1000,
        "variant": "base",
        "dataset": {"name": "digits"},
    }
    recipe = Recipe(epochs=2, batch_size=64, lr=inp.lr, weight_decay=inp.wd)
    train(build_model("digits_cnn", num_classes=10), common.get_data(inp), recipe, checkpoint_path=path,
          checkpoint_identity=stale, device="cpu")  # fmt: skip
    epochs: list[int] = []
    result = run_train(
        inp,
        JobHooks(on_epoch=lambda m: epochs.append(m.epoch)),
    )
    assert result.status == "succeeded" and epochs == [1, 2]  # the TINY_SPEC recipe: 2 epochs from scratch
    assert "not resumed" in result.result["discarded_checkpoint"]
