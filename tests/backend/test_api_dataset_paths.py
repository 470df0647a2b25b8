"""Dataset paths and sizes at the API (issue 13): a spec may name only data inside the allowed data
roots (the data directory plus PRUNESCAPE_DATA_ROOTS), `~` is never expanded, error bodies name the
field and the setting but no server directory, and absurd synthetic shapes are 422 before anything
is planned. SQLite and Postgres, through POST /studies and its dry run POST /studies/plan."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from backend.settings import Settings
from backend.spec import parse_spec
from tests.backend.conftest import DEMO_SPEC
from workers.engine.catalog import CIFAR10_FILES

API = "/api/v1"
ENDPOINTS = ["/studies", "/studies/plan"]
OK = {"/studies": 201, "/studies/plan": 200}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """data_dir tmp/data, one listed root tmp/shared; tmp/elsewhere holds data no spec may name."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        artifact_dir=tmp_path / "artifacts",
        data_roots=[tmp_path / "shared"],
    )


def cifar_dir(path: Path) -> Path:
    """The CIFAR layout with empty files (the API checks names, it never opens them)."""
    folder = path / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name in CIFAR10_FILES:
        (folder / name).write_bytes(b"")
    return path


def cifar_spec(path: str) -> dict:
    spec = copy.deepcopy(DEMO_SPEC)
    spec["dataset"] = {"name": "cifar10", "path": path}
    spec["model"] = {"name": "resnet20"}
    return spec


def study_count(client) -> int:
    return client.get(f"{API}/studies").json()["total"]


def only_error(response) -> dict:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    return error


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_paths_inside_a_root_are_accepted(client, tmp_path, endpoint):
    cifar_dir(tmp_path / "shared" / "cifar")
    cifar_dir(tmp_path / "data" / "cifar-local")
    for path in [str(tmp_path / "shared" / "cifar"), "cifar", str(tmp_path / "data" / "cifar-local")]:
        response = client.post(f"{API}{endpoint}", json=cifar_spec(path))
        assert response.status_code == OK[endpoint], (path, response.text)
        if endpoint == "/studies":
            # the spec keeps what the user wrote; the worker resolves it again under its own roots
            assert response.json()["spec"]["dataset"]["path"] == path
    assert study_count(client) == (3 if endpoint == "/studies" else 0)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_path_outside_every_root_is_422_naming_the_field_and_the_setting(client, tmp_path, endpoint):
    elsewhere = cifar_dir(tmp_path / "elsewhere")  # a valid data set, just not in a root
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "link").symlink_to(elsewhere)
    for path in [str(elsewhere), str(tmp_path / "shared" / ".." / "elsewhere"), "../elsewhere",
                 str(tmp_path / "shared" / "link"), "/etc"]:  # fmt: skip
        error = only_error(client.post(f"{API}{endpoint}", json=cifar_spec(path)))
        assert error["loc"] == ["body", "dataset", "path"], path
        assert "outside the allowed data roots" in error["msg"] and "PRUNESCAPE_DATA_ROOTS" in error["msg"]
        shown = error["msg"].replace(path, "")  # the user's own text may be echoed, nothing else
        for server_path in (tmp_path / "shared", tmp_path / "data", elsewhere):
            assert str(server_path) not in shown, (path, error["msg"])
    assert study_count(client) == 0


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_home_directories_are_never_expanded(client, endpoint):
    for path in ["~root/x", "~/cifar", "~nosuchuser/cifar"]:
        response = client.post(f"{API}{endpoint}", json=cifar_spec(path))
        error = only_error(response)
        assert error["loc"] == ["body", "dataset", "path"]
        assert "never expanded" in error["msg"]
        home = os.path.expanduser(path.split("/")[0])
        if home != path.split("/")[0]:  # the user exists here: its home must not show
            assert home not in response.text
    assert study_count(client) == 0


def test_missing_files_inside_a_root_are_named_as_the_user_wrote_them(client, tmp_path):
    folder = cifar_dir(tmp_path / "shared" / "cifar") / "cifar-10-batches-py"
    (folder / "data_batch_3").unlink()
    (tmp_path / "shared" / "alias").symlink_to(tmp_path / "shared" / "cifar")
    for path in ["cifar", "alias"]:
        error = only_error(client.post(f"{API}/studies", json=cifar_spec(path)))
        assert error["loc"] == ["body", "dataset", "path"]
        assert f"{path}/cifar-10-batches-py/data_batch_3 is missing" in error["msg"], error["msg"]
        assert str(tmp_path) not in error["msg"]
    assert study_count(client) == 0


def test_without_existence_checks_paths_are_still_confined(settings, fake_dispatch, tmp_path):
    from fastapi.testclient import TestClient

    from backend.api import create_app

    unchecked = settings.model_copy(update={"check_dataset_paths": False})
    with TestClient(create_app(unchecked)) as client:
        created = client.post(f"{API}/studies", json=cifar_spec("not-there-yet"))
        assert created.status_code == 201, created.text
        error = only_error(client.post(f"{API}/studies", json=cifar_spec(str(tmp_path / "elsewhere"))))
        assert error["loc"] == ["body", "dataset", "path"] and "outside" in error["msg"]


def synthetic_spec(**dataset) -> dict:
    spec = copy.deepcopy(DEMO_SPEC)
    spec["dataset"] = {"name": "synthetic", **dataset}
    spec["model"] = {"name": "resnet20"}
    return spec


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_absurd_synthetic_shapes_are_422_at_once(client, endpoint):
    error = only_error(
        client.post(f"{API}{endpoint}", json=synthetic_spec(synthetic_shape=[3, 100000, 100000]))
    )
    assert error["loc"] == ["body", "dataset", "synthetic_shape"]
    assert "<= 4096" in error["msg"]
    big = synthetic_spec(synthetic_shape=[3, 4096, 4096], synthetic_size=10_000_000)
    error = only_error(client.post(f"{API}{endpoint}", json=big))
    assert error["loc"][:2] == ["body", "dataset"]
    assert "10000000 x 3 x 4096 x 4096" in error["msg"] and "above the cap" in error["msg"]
    fine = client.post(
        f"{API}{endpoint}", json=synthetic_spec(synthetic_shape=[3, 32, 32], synthetic_size=64)
    )
    assert fine.status_code == OK[endpoint], fine.text
    assert study_count(client) == (1 if endpoint == "/studies" else 0)


def test_the_operator_cap_on_dataset_bytes_applies_to_synthetic_specs(settings, fake_dispatch):
    from fastapi.testclient import TestClient

    from backend.api import create_app

    small = settings.model_copy(update={"max_dataset_bytes": 64 * 3 * 32 * 32 - 1})
    with TestClient(create_app(small)) as client:
        spec = synthetic_spec(synthetic_shape=[3, 32, 32], synthetic_size=64)
        error = only_error(client.post(f"{API}/studies/plan", json=spec))
        assert error["loc"] == ["body", "dataset", "synthetic_size"]
        assert "PRUNESCAPE_MAX_DATASET_BYTES" in error["msg"]
        spec["dataset"]["synthetic_size"] = 63
        assert client.post(f"{API}/studies/plan", json=spec).status_code == 200


def test_the_spec_model_checks_format_not_files(tmp_path):
    # A stored spec must parse whatever the server's roots are now; the files are the API's and the
    # worker's business (backend/services/dataset_paths.py, workers/jobs/common.py: get_data).
    assert parse_spec(cifar_spec(str(tmp_path / "gone"))).dataset.path == str(tmp_path / "gone")
    with pytest.raises(ValidationError, match="dataset.path is required"):
        parse_spec(cifar_spec(""))


def test_data_roots_setting_reads_a_path_list_or_json(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNESCAPE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PRUNESCAPE_DATA_ROOTS", os.pathsep.join(["/srv/cifar", "", "/mnt/fashion"]))
    settings = Settings()
    assert settings.data_roots == [Path("/srv/cifar"), Path("/mnt/fashion")]
    # the data directory is always allowed, after the listed roots (relative paths use the first)
    assert settings.dataset_roots == [Path("/srv/cifar"), Path("/mnt/fashion"), (tmp_path / "data").resolve()]
    monkeypatch.setenv("PRUNESCAPE_DATA_ROOTS", '["/srv/a", "/srv/b"]')
    assert Settings().data_roots == [Path("/srv/a"), Path("/srv/b")]
    monkeypatch.delenv("PRUNESCAPE_DATA_ROOTS")
    assert Settings().dataset_roots == [(tmp_path / "data").resolve()]
