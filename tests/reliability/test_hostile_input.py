"""Hostile and broken input at the API: study specs at the edges, CSV uploads and artefact paths.
Every rejection is a 4xx naming the field, and nothing is stored by a rejected request."""

from __future__ import annotations

import copy
import csv
import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.db.models import Artefact, Run
from backend.db.session import session_scope
from backend.settings import Settings
from tests.reliability.conftest import API, DEMO_SPEC, row_counts


def _client(settings: Settings) -> Iterator[TestClient]:
    from backend.api import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def client(sqlite_settings: Settings) -> Iterator[TestClient]:
    yield from _client(sqlite_settings)


def _spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(DEMO_SPEC)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = spec
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return spec


def _locs(response) -> list[list[Any]]:  # noqa: ANN001
    return [item["loc"] for item in response.json()["detail"]]


def _names(loc: list[Any], field: str) -> bool:
    """`field` (dotted) appears in `loc` in order, e.g. "grid.size" in ["body", "grid", "size"]."""
    wanted = field.split(".")
    text = [str(p) for p in loc]
    return any(text[i : i + len(wanted)] == wanted for i in range(len(text)))


BAD_SPECS = {
    # name: (spec, field the 422 must name)
    "grid above the cap": (_spec(grid__size=11), "grid.size"),
    "runs above the cap": (_spec(grid__size=9, repeats=100), "grid.size"),
    "lr range above the cap": (_spec(grid__lr_range=[-30, 30]), "grid.lr_range"),
    "negative weight decay": (_spec(grid__wd_centre=-1e-4), "grid.wd_centre"),
    "zero learning rate": (_spec(grid__lr_centre=0), "grid.lr_centre"),
    "negative step": (_spec(grid__step=-0.2), "grid.step"),
    "huge step": (_spec(grid__step=1e300), "grid.step"),
    "negative repeats": (_spec(repeats=-1), "repeats"),
    "even grid": (_spec(grid__size=4), "grid.size"),
    "name too long": (_spec(name="x" * 5000), "name"),
    "empty name": (_spec(name="   "), "name"),
    "unicode variant name": (_spec(variants__1__name="ünïcødé-☃"), "name"),
    "path in variant name": (_spec(variants__1__name="../../etc"), "name"),
    "unknown top-level key": ({**DEMO_SPEC, "gpu": "all"}, "gpu"),
    "unknown grid key": (_spec(grid__bogus=1), "grid.bogus"),
    "unknown variant key": (_spec(variants__1__shell="rm -rf /"), "shell"),
    "size as text": (_spec(grid__size="three"), "grid.size"),
    "variants not a list": (_spec(variants="base"), "variants"),
    "grid as a list": (_spec(grid=[1, 2, 3]), "grid"),
    "epochs as float": (_spec(recipe__epochs=2.5), "recipe.epochs"),
    "unknown kind": (_spec(variants__1__kind="magic"), "variants.1"),
    "unknown model": (_spec(model={"name": "gpt5"}), "model.name"),
    "duplicate variant names": (_spec(variants__1__name="q8"), "variants"),
    "no base": (_spec(variants=[{"name": "q8", "kind": "int8", "source": "base"}]), "variants"),
    "missing source": (_spec(variants__2__source="ghost"), "variants"),
    "source cycle": (
        _spec(
            variants=[
                {"name": "base", "kind": "base"},
                {"name": "qa", "kind": "int8", "source": "qb"},
                {"name": "qb", "kind": "fp16", "source": "qa"},
            ]
        ),
        "variants",
    ),
    "self source": (_spec(variants__2__source="q8"), "variants"),
    "missing dataset path": (_spec(dataset={"name": "cifar10", "path": "/nonexistent/cifar"}), "dataset"),
}


@pytest.mark.parametrize("case", list(BAD_SPECS), ids=list(BAD_SPECS))
def test_bad_spec_is_422_naming_the_field_and_stores_nothing(case: str, client, sqlite_settings) -> None:
    spec, field = BAD_SPECS[case]
    before = row_counts(sqlite_settings)
    response = client.post(f"{API}/studies", json=spec)
    assert response.status_code == 422, response.text
    assert any(_names(loc, field) for loc in _locs(response)), (field, response.json())
    assert row_counts(sqlite_settings) == before


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_422(literal: str, client, sqlite_settings) -> None:
    # Python's JSON parser accepts NaN / Infinity and 1e999 overflows to inf: the model must refuse them.
    body = json.dumps(DEMO_SPEC).replace('"lr_centre": 0.1', f'"lr_centre": {literal}')
    before = row_counts(sqlite_settings)
    response = client.post(f"{API}/studies", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert any(_names(loc, "grid.lr_centre") for loc in _locs(response))
    assert row_counts(sqlite_settings) == before


def test_unicode_and_nul_in_names(database_settings) -> None:
    """A unicode study name is kept verbatim; a NUL byte (which Postgres text cannot hold) is a 422."""
    for client in _client(database_settings):
        name = "étude 研究 🚀 " + "ß" * 150
        created = client.post(f"{API}/studies", json=_spec(name=name))
        assert created.status_code == 201, created.text
        assert client.get(f"{API}/studies/{created.json()['id']}").json()["name"] == name
        before = row_counts(database_settings)
        response = client.post(f"{API}/studies", json=_spec(name="a\x00b"))
        assert response.status_code == 422, response.text
        assert any(_names(loc, "name") for loc in _locs(response))
        csv_nul = "variant,lr,wd,seed,top1\nbase,0.1,0.0001,0,90\nba\x00se,0.1,0.0001,0,90\n"
        response = client.post(f"{API}/studies/import", files={"file": ("r.csv", csv_nul, "text/csv")})
        assert response.status_code == 422, response.text
        assert row_counts(database_settings) == before


@pytest.fixture(params=["sqlite", "postgres"])
def database_settings(request, sqlite_settings: Settings) -> Settings:
    if request.param == "sqlite":
        return sqlite_settings
    url = request.getfixturevalue("pg_schema_url")
    return sqlite_settings.model_copy(update={"database_url": url})


# --- CSV import -------------------------------------------------------------------------------------
def _import(client: TestClient, content: bytes | str, name: str = "r.csv"):
    return client.post(f"{API}/studies/import", files={"file": (name, content, "text/csv")})


@pytest.mark.parametrize(
    "content",
    [
        "variant,lr,wd,seed,top1\nbase,0.1,0.0001,0,90\n".encode("utf-16"),
        "variant,lr,wd,seed,top1\nbasé,0.1,0.0001,0,90\n".encode("latin-1"),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
        b"",
        b"variant,lr,wd,seed,top1\nbase,0.1,0.0001,0,NaN\n",
        b"variant,lr,wd,seed,top1\nbase,-0.1,0.0001,0,90\n",
        b"variant,lr,wd,seed,top1\nbase,inf,0.0001,0,90\n",
        b'variant,lr,wd,seed,top1\n"base,0.1,0.0001,0,90\n',
    ],
    ids=["utf16", "latin1", "binary", "empty", "nan-top1", "negative-lr", "inf-lr", "open-quote"],
)
def test_broken_csv_is_422_on_the_file_field(content: bytes, client, sqlite_settings) -> None:
    before = row_counts(sqlite_settings)
    response = _import(client, content)
    assert response.status_code == 422, response.text
    assert ["body", "file"] in _locs(response)
    assert row_counts(sqlite_settings) == before


def test_import_without_multipart_or_file_is_422(client) -> None:
    assert client.post(f"{API}/studies/import", json={"file": "x"}).status_code == 422
    response = client.post(f"{API}/studies/import", data={"name": "no file"}, files={"other": ("a", b"b")})
    assert response.status_code == 422 and ["body", "file"] in _locs(response)


def test_100k_rows_are_refused_cleanly_and_quickly(tmp_path, sqlite_settings) -> None:
    """100,000 rows (about 3 MB, inside the default 20 MB upload cap) are more runs than a study may
    hold: a 422 naming the file, no rows written, no 5xx."""
    settings = sqlite_settings.model_copy(
        update={"max_upload_bytes": 20 * 1024 * 1024, "max_runs_per_study": 20000}
    )
    lines = ["variant,lr,wd,seed,top1"]
    lines += [
        f"base,{0.1 * 10 ** (0.2 * (k % 9 - 4)):.6g},{1e-4 * 10 ** (0.2 * (k // 9 % 9 - 4)):.6g},{k // 81},90.5"
        for k in range(100_000)
    ]
    content = ("\n".join(lines) + "\n").encode()
    assert len(content) < settings.max_upload_bytes
    for client in _client(settings):
        before = row_counts(settings)
        started = time.perf_counter()
        response = _import(client, content)
        seconds = time.perf_counter() - started
        print(f"100k-row CSV ({len(content) / 1e6:.1f} MB): {response.status_code} in {seconds:.2f} s")
        assert response.status_code == 422, response.text
        assert ["body", "file"] in _locs(response)
        # refused while it streams, by line count, before anything parses it
        assert "20000 runs per study" in response.json()["detail"][0]["msg"]
        assert row_counts(settings) == before
        assert seconds < 30


def test_scattered_lr_values_are_refused(client, sqlite_settings) -> None:
    """An lr x wd landscape over 250 distinct lr values is not a grid (and would be
    lrs x wds points to draw): refused with a message, not a hung request."""
    rows = ["variant,lr,wd,seed,top1"] + [
        f"base,{0.001 + k * 1e-6:.9f},{1e-4 + k * 1e-9:.12f},0,50" for k in range(250)
    ]
    started = time.perf_counter()
    response = _import(client, "\n".join(rows) + "\n")
    assert response.status_code == 422, response.text
    assert "distinct values" in response.json()["detail"][0]["msg"]
    assert time.perf_counter() - started < 20


def test_formula_cells_are_escaped_on_export(client) -> None:
    hostile = ["=cmd|' /C calc'!A0", "+SUM(A1:A9)", "-2+3", '@HYPERLINK("http://x")']
    upload = io.StringIO()
    writer = csv.writer(upload)
    writer.writerow(["variant", "lr", "wd", "seed", "top1"])
    writer.writerows([[name, 0.1, 1e-4, 0, 80 + k] for k, name in enumerate(["base", *hostile])])
    imported = _import(client, upload.getvalue())
    assert imported.status_code == 201, imported.text
    exported = client.get(f"{API}/studies/{imported.json()['id']}/export?format=csv")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    variants = [row["variant"] for row in csv.DictReader(io.StringIO(exported.text))]
    for name in hostile:
        assert "'" + name in variants
    assert not any(v.startswith(("=", "+", "-", "@")) for v in variants)
    # JSON export carries the names verbatim (no spreadsheet involved)
    as_json = client.get(f"{API}/studies/{imported.json()['id']}/export?format=json").json()
    assert {r["variant"] for r in as_json["rows"]} >= set(hostile)


# --- artefacts ----------------------------------------------------------------------------------------
def test_artefact_downloads_stay_inside_the_artefact_dir(client, sqlite_settings, tmp_path) -> None:
    root = sqlite_settings.artifact_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "ok.bin").write_bytes(b"model bytes")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (root / "link").symlink_to(secret)
    created = client.post(f"{API}/studies", json=DEMO_SPEC)
    study_id = created.json()["id"]
    stored = ["ok.bin", "../secret.txt", str(secret), "link", "sub/../../secret.txt", "", ".", "missing.bin"]
    with session_scope(sqlite_settings) as session:
        run = session.query(Run).filter_by(study_id=study_id).first()
        ids = []
        for path in stored:
            artefact = Artefact(run_id=run.id, variant_id=run.variant_id, kind="model", path=path, bytes=1)
            session.add(artefact)
            session.flush()
            ids.append(artefact.id)
    ok = client.get(f"{API}/artefacts/{ids[0]}")
    assert ok.status_code == 200 and ok.content == b"model bytes"
    for artefact_id, path in zip(ids[1:], stored[1:], strict=True):
        response = client.get(f"{API}/artefacts/{artefact_id}")
        assert response.status_code == 404, (path, response.status_code)
        assert "top secret" not in response.text
    for bad in ("999999", "0", "-1", "abc", "..%2F..%2Fsecret.txt", "9" * 30):
        response = client.get(f"{API}/artefacts/{bad}")
        assert response.status_code in (404, 422), (bad, response.status_code)
        assert "top secret" not in response.text
    assert client.get(f"{API}/artefacts/999999").status_code == 404
    # deleting the study removes its own files but never one outside the artefact directory
    assert client.delete(f"{API}/studies/{study_id}").status_code == 204
    assert secret.read_text() == "top secret"
    assert not (root / "ok.bin").exists()


@pytest.mark.parametrize(
    "path",
    ["/studies/999999", "/studies/999999/runs", "/studies/999999/analysis", "/studies/999999/landscape",
     "/studies/999999/compare", "/studies/999999/variants", "/studies/999999/export", "/runs/999999"],
)  # fmt: skip
def test_unknown_ids_are_404(path: str, client) -> None:
    response = client.get(API + path)
    assert response.status_code == 404
    assert "999999" in response.json()["detail"]


# --- issue 13, items 5, 6 and 8: numbers bounded before anything is built from them ---------------
@pytest.mark.parametrize("route", ["/studies", "/studies/plan"])
@pytest.mark.parametrize(
    "grid, field",
    [
        ({"size": 10_000_001}, "grid.size"),  # built a 10-million-entry list before the cap: 1 s, 600 MB
        ({"size": 10**30 + 1}, "grid.size"),  # OverflowError -> 500
        ({"lr_range": [-(10**30), 10**30]}, "grid.lr_range"),  # OverflowError -> 500
        ({"wd_range": [-4, 10**12]}, "grid.wd_range"),
    ],
    ids=["ten-million", "1e30+1", "range-1e30", "range-1e12"],
)
def test_huge_grid_numbers_are_422_at_once_and_cost_nothing(
    route, grid, field, client, sqlite_settings
) -> None:
    import tracemalloc

    spec = _spec(**{f"grid__{k}": v for k, v in grid.items()})
    before = row_counts(sqlite_settings)
    tracemalloc.start()
    started = time.perf_counter()
    response = client.post(API + route, json=spec)
    elapsed = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert response.status_code == 422, response.text
    assert any(_names(loc, field) for loc in _locs(response)), response.json()
    assert peak < 20 * 2**20, f"the refusal allocated {peak / 2**20:.0f} MiB"
    assert elapsed < 2.0
    assert row_counts(sqlite_settings) == before


@pytest.mark.parametrize(
    "grid, field",
    [
        ({"lr_centre": 1e308, "wd_centre": 5e-324, "step": 3}, "grid"),  # lr = inf, wd = 0 at the edges
        ({"lr_centre": 1e300, "step": 3, "size": 9}, "grid"),  # 1e300 * 10**12 = inf
        ({"wd_centre": 1e-320, "step": 0.2}, "grid"),  # a subnormal centre underflows to 0 off-centre
    ],
    ids=["inf-and-zero", "overflow-at-edge", "underflow"],
)
def test_grid_values_that_overflow_or_underflow_are_422(grid, field, client, sqlite_settings) -> None:
    """A grid whose values are not finite and > 0 at every point would store lr = Infinity (invalid
    JSON in the runs list, 500 on /landscape and the JSON export)."""
    before = row_counts(sqlite_settings)
    response = client.post(f"{API}/studies", json=_spec(**{f"grid__{k}": v for k, v in grid.items()}))
    assert response.status_code == 422, response.text
    assert any(_names(loc, field) for loc in _locs(response)), response.json()
    assert "finite" in response.text
    assert row_counts(sqlite_settings) == before


def test_extending_a_grid_past_representable_values_is_422_not_500(client) -> None:
    spec = _spec(grid__lr_centre=1e290, grid__step=3.0, grid__size=3)
    created = client.post(f"{API}/studies", json=spec)
    assert created.status_code == 201, created.text
    response = client.post(f"{API}/studies/{created.json()['id']}/extend", json={"lr_high": 10})
    assert response.status_code == 422, response.text
    assert "finite" in response.text


@pytest.mark.parametrize("offset", ["9223372036854775808", "99999999999999999999999", "-1"])
def test_out_of_range_offsets_are_422(offset, client) -> None:
    for path in ("/studies", "/studies/1/runs"):
        response = client.get(f"{API}{path}", params={"offset": offset})
        assert response.status_code in (404, 422), (path, response.text)
        assert response.status_code != 500
    assert client.get(f"{API}/studies", params={"offset": offset}).status_code == 422
